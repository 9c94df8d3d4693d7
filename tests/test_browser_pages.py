"""Every page in real headless Chromium at phone width (390 px) and checked by axe-core.

No page may scroll sideways at 390 px, with the menu closed or open, and axe-core (vendored in
tests/vendor/axe-core/, injected into the page) may find no serious or critical violation, in the
light and the dark colour scheme.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.core import signing
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from alerts.services import create_channel
from gateways.devices import create_device, install_device
from gateways.models import Gateway, GatewayKey, ProbeResult
from gateways.services import assign_key, revoke_key, store_key
from portal.email_confirmation import CONFIRMATION_SALT
from portal.invitations import create_invitation
from portal.models import Membership, Role, Team, UnconfirmedEmail
from portal.sudo import SUDO_SESSION_KEY

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"
# For the failure message: the elements that reach past the window's right edge.
WIDEST = """[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth)
  .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)).slice(-5)"""


@pytest.fixture
def chromium(world, chromium):
    """The suite's Chromium (tests/conftest.py), started after `world`: a connection opened while Playwright's
    event loop runs is another object, without the test database's saved rows to restore."""
    return chromium


@pytest.fixture
def world():
    """A team with an admin, a member, staff, two live keys (one probed), a revoked one, an assignment."""
    users = get_user_model().objects
    alice = users.create_user("alice", "alice@example.com", "pw-alice")
    bob = users.create_user("bob", "bob@example.com", "pw-bob")
    staff = users.create_user("root", "root@example.com", "pw-root", is_staff=True, is_superuser=True)
    team = Team.objects.create(name="Web platform", slug="web")
    Membership.objects.create(team=team, user=alice, role=Role.ADMIN)
    Membership.objects.create(team=team, user=bob, role=Role.MEMBER)
    tokenbay, tokaify = Gateway.objects.get(slug="tokenbay"), Gateway.objects.get(slug="tokaify")
    key = store_key(
        team=team, gateway=tokenbay, label="Bob laptop", secret="sk-tokenbay-bob-0123456789abcdef", actor=alice
    )
    ci = store_key(team=team, gateway=tokaify, label="CI runner", secret="sk-tokaify-ci-0123456789abcdef", actor=alice)
    # The dashboard lists it as failing; the team hears of that on an e-mail channel (Deliveries).
    GatewayKey.objects.filter(pk=ci.pk).update(last_probe_verdict="timeout", last_probe_at=timezone.now())
    create_channel(team=team, kind="email", target="ops@example.com", actor=alice)
    old = store_key(team=team, gateway=tokaify, label="Old", secret="sk-tokaify-old-0123456789abcdef", actor=alice)
    revoke_key(key=old, actor=alice)
    assign_key(key=key, username="bob", actor=alice)
    for verdict, latency in [("ok", 420), ("timeout", None), ("ok", 380)]:
        ProbeResult.objects.create(
            key=key,
            gateway=tokenbay,
            verdict=verdict,
            status_code=200 if latency else None,
            latency_ms=latency,
            hint="The gateway answered like Claude Code expects." if latency else "The gateway did not answer.",
        )
    _, code = create_device(assignment=key.assignments.get(), name="bob laptop", platform="linux", actor=bob)
    install_device(code=code, request=None, render=lambda d, t: t)
    create_device(assignment=key.assignments.get(), name="bob desktop", platform="macos", actor=bob)
    _, invitation = create_invitation(team=team, email="newcomer@example.com", role=Role.MEMBER, actor=alice)
    # carol has an authenticator: her session waits at the second step of signing in.
    carol = users.create_user("carol", "carol@example.com", "pw-carol")
    TOTPDevice.objects.create(user=carol, name="authenticator", confirmed=True)
    reset = f"{urlsafe_base64_encode(force_bytes(bob.pk))}/{default_token_generator.make_token(bob)}"
    # bob made his account from an invitation link: his address waits for him to confirm it.
    UnconfirmedEmail.objects.create(user=bob, email=bob.email)
    confirm = signing.dumps([bob.pk, bob.email], salt=CONFIRMATION_SALT)
    return {
        "alice": alice,
        "bob": bob,
        "root": staff,
        "carol": carol,
        "key": key,
        "invite": invitation,
        "reset": reset,
        "confirm": confirm,
    }


def address_of(world, address: str) -> str:
    return address.format(key=world["key"].id, invite=world["invite"], reset=world["reset"], confirm=world["confirm"])


def session_cookie(live_server, user, *, sudo: bool = False) -> dict:
    client = Client()
    client.force_login(user)
    if sudo:
        session = client.session
        session[SUDO_SESSION_KEY] = time.time() + 600
        session.save()
    return {
        "name": django_settings.SESSION_COOKIE_NAME,
        "value": client.cookies["sessionid"].value,
        "url": live_server.url,
    }


# (who, address, what must be on it): every page a person can reach, signed in as someone who may see it.
PAGES = [
    (None, "/login/", "Sign in"),
    ("bob", "/setup/", "My Claude Code set-up"),
    ("bob", "/teams/", "Teams"),
    ("bob", "/gateways/", "Gateway catalogue"),
    ("bob", "/gateways/tokenbay/", "Rules for Claude Code"),
    ("bob", "/tokens/", "Personal access tokens"),
    ("bob", "/api/v1/docs/", "API"),
    ("alice", "/teams/web/", "Members"),
    ("alice", "/keys/{key}/", "Latency history"),
    ("alice", "/keys/{key}/rotate/", "Rotate the secret"),
    ("alice", "/teams/web/keys/new/?gateway=tokenbay", "Add a key"),
    ("alice", "/connections/", "Who is connected where"),
    ("alice", "/audit/", "Audit trail"),
    ("alice", "/sudo/?next=/tokens/", "Confirm your password"),
    ("root", "/gateways/new/", "Add a gateway"),
    ("root", "/gateways/tokaify/edit/", "Edit Tokaify"),
    ("root", "/no-such-page/", "Not found"),
    ("bob", "/logout/", "This address takes a form only"),  # a form's address opened as a page: its 405
    ("root", "/setup/", "assign a key to yourself"),
    ("root", "/teams/", "Teams"),
    ("bob", "/devices/", "bob laptop"),
    ("bob", "/account/", "Your account"),
    ("bob", "/account/two-factor/", "Set up two-factor authentication"),
    ("bob", "/account/confirm-email/{confirm}/", "Confirm bob@example.com"),
    ("carol", "/account/two-factor/verify/", "Two-factor code"),
    ("bob", "/password_change/", "Change your password"),
    ("bob", "/password_change/done/", "Password changed"),
    (None, "/password_reset/", "Reset your password"),
    (None, "/password_reset/done/", "Check your mail"),
    (None, "/reset/{reset}/", "Choose a new password"),
    (None, "/reset/done/", "Password saved"),
    (None, "/invitations/{invite}/", "Join Web platform"),
    (None, "/invitations/no-such-invitation/", "This invitation cannot be used"),
    ("alice", "/teams/web/invitations/", "newcomer@example.com"),
    ("alice", "/teams/web/members/bob/offboard/", "Offboard bob"),
    ("root", "/users/", "Users"),
    ("root", "/users/bob/offboard/", "Offboard bob"),
    ("alice", "/dashboard/", "CI runner"),
    ("root", "/dashboard/", "Dashboard"),
    ("alice", "/deliveries/", "Deliveries"),
]
# Routes that are not a page of their own to open: answers to a form (each page they answer with
# is checked by test_pages_after_a_form_fit_a_phone_and_pass_axe), downloads, redirects, machine
# endpoints, the invitation page its link redirects to, and the SSO round trip (an identity provider's pages; tests/portal/test_sso.py).
NOT_OPENED = {
    "healthz", "readyz", "home", "logout", "setup-reveal", "setup-download", "device-create", "device-remove",
    "team-create", "member-add", "member-remove", "key-settings", "key-toggle", "key-revoke", "key-assign",
    "key-probe", "assignment-remove", "token-revoke", "two-factor-remove", "recovery-codes",
    "oidc-start", "oidc-callback", "invitation-accept", "invitation-withdraw", "team-groups", "user-reset-link",
    "email-confirmation-send", "user-confirm-email",
    "channel-add", "channel-remove", "channel-test",
}  # fmt: skip


def open_page(browser, live_server, world, who, address, *, viewport, color_scheme="light"):
    context = browser.new_context(viewport=viewport, color_scheme=color_scheme, bypass_csp=True)
    if who:
        context.add_cookies([session_cookie(live_server, world[who], sudo="rotate" in address)])
    page = context.new_page()
    page.goto(live_server.url + address_of(world, address))
    return context, page


def serious_violations(page) -> list[str]:
    """What axe-core finds of serious or critical impact, one line per rule and element."""
    page.add_script_tag(path=str(AXE))
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {node['target']}"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
        for node in v["nodes"]
    ]


@pytest.mark.parametrize(("who", "address", "heading"), PAGES, ids=[p[1] for p in PAGES])
def test_every_page_fits_a_phone_and_passes_axe(live_server, chromium, world, who, address, heading):
    context, page = open_page(chromium, live_server, world, who, address, viewport=PHONE)
    expect(page.locator("main#main")).to_contain_text(heading)
    page.wait_for_load_state("networkidle")
    assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{address} is too wide at 390 px: {page.evaluate(WIDEST)}"
    assert serious_violations(page) == [], address
    menu = page.get_by_text("Menu", exact=True)
    if who:
        nav = page.get_by_role("navigation", name="Main")
        expect(nav).to_be_hidden()  # folded away on a phone
        menu.click()
        expect(nav.get_by_role("link", name="Connections")).to_be_visible()
        assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{address} scrolls sideways with the menu open"
        menu.click()
        expect(nav).to_be_hidden()
    context.close()

    context, page = open_page(chromium, live_server, world, who, address, viewport=DESKTOP, color_scheme="dark")
    page.wait_for_load_state("networkidle")
    assert serious_violations(page) == [], f"{address} in the dark colour scheme"
    if who:
        expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit")).to_be_visible()
    context.close()


def page_routes(resolver: URLResolver | None = None, prefix: str = "") -> dict[str, str]:
    """Every named route of the site outside the API and Django's admin: name -> pattern."""
    found = {}
    for entry in (resolver or get_resolver()).url_patterns:
        pattern = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if not pattern.startswith(("api/", "admin/")):
                found.update(page_routes(entry, pattern))
        elif isinstance(entry, URLPattern) and entry.name:
            found[entry.name] = pattern
    return found


def test_every_page_of_the_site_is_checked(world):
    """A new page has to join PAGES (or say in NOT_OPENED why it is not opened by itself)."""
    opened = set()
    for _, address, _ in PAGES:
        path = address_of(world, address).split("?")[0]
        if path not in ("/no-such-page/", "/invitations/no-such-invitation/", "/logout/"):  # refusals, not pages
            opened.add(resolve(path).url_name)
    routes = set(page_routes())
    assert routes - opened - NOT_OPENED == set(), "Open these pages in PAGES"
    assert routes >= NOT_OPENED and not NOT_OPENED & opened


def fits_and_passes(page, what: str) -> None:
    page.wait_for_load_state("networkidle")
    assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{what} is too wide at 390 px: {page.evaluate(WIDEST)}"
    assert serious_violations(page) == [], what


def test_pages_after_a_form_fit_a_phone_and_pass_axe(live_server, chromium, world):
    """The pages a form answers with: install command, password prompt with a pending action, links, codes."""
    context, page = open_page(chromium, live_server, world, "bob", "/setup/", viewport=PHONE)
    card = page.locator("[data-assignment]").first
    card.get_by_label("Device name").fill("work laptop")
    card.get_by_role("button", name="Make the install command").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Install on work laptop")
    fits_and_passes(page, "the install command")
    page.goto(f"{live_server.url}/setup/")
    page.locator("form[data-reveal] button:visible").first.click()
    expect(page.locator("pre:visible").first).to_contain_text("sk-tokenbay-bob-0123456789abcdef")
    fits_and_passes(page, "a revealed set-up")

    page.goto(f"{live_server.url}/account/two-factor/")
    device = TOTPDevice.objects.get(user=world["bob"], confirmed=False)
    page.get_by_label("Code").fill(str(TOTP(device.bin_key, device.step, device.t0, device.digits).token()).zfill(6))
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your recovery codes")
    fits_and_passes(page, "the recovery codes")
    context.close()

    context, page = open_page(chromium, live_server, world, "alice", f"/keys/{world['key'].id}/", viewport=PHONE)
    page.get_by_text("Revoke…").click()
    page.get_by_role("button", name="Revoke this key").click()
    expect(page.get_by_text("To revoke the key 'Bob laptop'")).to_be_visible()
    fits_and_passes(page, "the password prompt carrying an action")
    page.goto(f"{live_server.url}/teams/web/invitations/")
    page.get_by_label("E-mail address").fill("erin@example.com")
    page.get_by_role("button", name="Invite").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Invitation for erin@example.com")
    fits_and_passes(page, "a new invitation's link")
    context.close()

    context, page = open_page(chromium, live_server, world, "root", "/users/", viewport=PHONE)
    page.locator("tr[data-user=bob]").get_by_role("button", name="Reset link").click()
    page.get_by_label("Password or authenticator code").fill("pw-root")
    page.get_by_role("button", name="Confirm and continue").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Password reset link for bob")
    fits_and_passes(page, "a password reset link")
    context.close()


def test_the_lock_out_page_fits_a_phone_and_passes_axe(live_server, chromium, world, settings):
    settings.AXES_FAILURE_LIMIT = 2
    context = chromium.new_context(viewport=PHONE, bypass_csp=True)
    page = context.new_page()
    for password in ("guess", "guess", "pw-alice"):
        page.goto(f"{live_server.url}/login/")
        page.get_by_label("User name").fill("alice")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Too many failed sign-ins")
    expect(page.get_by_role("alert")).to_contain_text("Wait 60 minutes")
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    assert serious_violations(page) == []
    context.close()


def test_the_api_docs_run_within_the_content_security_policy(live_server, chromium, world):
    context = chromium.new_context(viewport=DESKTOP)  # the real policy this time
    context.add_cookies([session_cookie(live_server, world["bob"])])
    page = context.new_page()
    refused = []
    page.on(
        "console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None
    )
    page.goto(f"{live_server.url}/api/v1/docs/")
    # Swagger UI fetched the schema with the session and lists the operations.
    expect(page.get_by_text("/api/v1/me/configs/", exact=True).first).to_be_visible(timeout=15_000)
    assert refused == []
    context.close()
