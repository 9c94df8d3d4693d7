"""Single sign-on through a real OpenID Connect provider (npm oidc-provider on 127.0.0.1), in headless Chromium.

The provider's own login and consent pages are driven like a person would; its account's groups live in a file
the provider reads at every sign-in, so a test can take a group away between two sign-ins.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from portal import oidc
from portal.models import AuditEvent, ExternalIdentity, Membership, Team
from tests.reverse_proxy import reverse_proxy

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_DIR = Path(os.environ.get("OIDC_PROVIDER_DIR", ROOT / ".cache/oidc-provider"))
CLIENT_ID, CLIENT_SECRET = "gateway-portal", "tests-only-client-secret"
CAROL = {"email": "carol@example.com", "email_verified": True, "name": "Carol Jones", "groups": ["eng"]}


@contextmanager
def running_provider(tmp_path: Path, redirect_uri: str, **options):
    """Start tests/oidc_provider.mjs; yields its issuer and a way to rewrite its accounts."""
    if not (PROVIDER_DIR / "node_modules/oidc-provider/package.json").exists():
        pytest.fail(f"oidc-provider is not installed in {PROVIDER_DIR}; `make test` installs it (make oidc-provider).")
    accounts_file = tmp_path / f"accounts-{time.monotonic_ns()}.json"
    accounts_file.write_text(json.dumps({"carol": CAROL}))
    env = {
        **os.environ,
        "OIDC_PROVIDER_DIR": str(PROVIDER_DIR),
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "REDIRECT_URI": redirect_uri,
        "ACCOUNTS_FILE": str(accounts_file),
        **options,
    }
    process = subprocess.Popen(
        ["node", str(ROOT / "tests/oidc_provider.mjs")],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("listening "), f"the provider did not start: {line!r}"
        port = int(line.split()[1])
        issuer = options.get("ADVERTISED_ISSUER", options.get("ISSUER", "http://127.0.0.1:{port}"))

        def set_claims(login: str, **claims) -> None:
            accounts = json.loads(accounts_file.read_text())
            accounts[login] = {**accounts.get(login, {}), **claims}
            accounts_file.write_text(json.dumps(accounts))

        yield SimpleNamespace(port=port, issuer=issuer.replace("{port}", str(port)), set_claims=set_claims)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def browser(chromium):
    """The suite's headless Chromium (tests/conftest.py), under the name these browser tests use."""
    return chromium


@pytest.fixture
def sso(settings, live_server, tmp_path):
    """Configure the portal for a provider: `with sso(**provider_options) as idp:`."""

    @contextmanager
    def configured(**options):
        with running_provider(tmp_path, f"{live_server.url}/oidc/callback/", **options) as idp:
            settings.OIDC_ISSUER = idp.issuer
            settings.OIDC_CLIENT_ID = CLIENT_ID
            settings.OIDC_CLIENT_SECRET = CLIENT_SECRET
            settings.OIDC_SCOPES = "openid email profile groups"
            oidc._discovered.clear()
            yield idp
        oidc._discovered.clear()

    return configured


@pytest.fixture
def web_with_groups(db):
    return Team.objects.create(name="Web", slug="web", sso_member_group="eng", sso_admin_group="eng-leads")


def sign_in_at_provider(page, live_server, login: str = "carol") -> None:
    """From the portal's sign-in page through the provider's own login and consent pages."""
    page.goto(f"{live_server.url}/login/")
    page.get_by_role("link", name="Sign in with SSO").click()
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any password: the provider's dev login ignores it")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()


def test_first_sign_in_creates_the_account_and_groups_decide_membership(
    browser, live_server, sso, web_with_groups, settings
):
    with sso() as idp:
        context = browser.new_context()
        page = context.new_page()
        sign_in_at_provider(page, live_server)
        page.wait_for_url("**/setup/")
        expect(page.get_by_role("link", name="carol")).to_be_visible()  # the header names the new account
        context.close()

        carol = get_user_model().objects.get(email="carol@example.com")
        assert carol.username == "carol"
        assert not carol.has_usable_password()
        assert ExternalIdentity.objects.get(user=carol).issuer == idp.issuer
        membership = Membership.objects.get(team=web_with_groups, user=carol)
        assert (membership.role, membership.via_sso) == ("member", True)
        added = AuditEvent.objects.get(action="member.added", team_slug="web", target="carol")
        assert added.details["via"] == "sso"
        assert AuditEvent.objects.filter(action="account.created", target="carol").exists()

        # The IdP promotes her: the next sign-in makes her admin.
        idp.set_claims("carol", groups=["eng", "eng-leads"])
        context = browser.new_context()
        page = context.new_page()
        sign_in_at_provider(page, live_server)
        page.wait_for_url("**/dashboard/")  # an admin starts on the dashboard
        context.close()
        assert Membership.objects.get(team=web_with_groups, user=carol).role == "admin"

        # The IdP takes both groups away: the next sign-in removes her from the team, and says so in the trail
        # (the team keeps an admin: the groups never remove its last one).
        dana = get_user_model().objects.create_user("dana", "dana@example.com", "pw-dana")
        Membership.objects.create(team=web_with_groups, user=dana, role="admin")
        idp.set_claims("carol", groups=["sales"])
        context = browser.new_context()
        page = context.new_page()
        sign_in_at_provider(page, live_server)
        page.wait_for_url("**/setup/")
        page.goto(f"{live_server.url}/teams/")
        expect(page.get_by_text("You are not in a team yet.")).to_be_visible()
        context.close()
    assert not Membership.objects.filter(team=web_with_groups, user=carol).exists()
    removed = AuditEvent.objects.get(action="member.removed", team_slug="web", target="carol")
    assert removed.details["via"] == "sso"
    assert get_user_model().objects.filter(email="carol@example.com").count() == 1  # the same account each time


def _refused_page(page, live_server, rewrite):
    """Sign in, let `rewrite` change the provider's answer on its way to the portal; return the portal's response."""
    sign_in_at_provider(page, live_server)
    answer = page.locator("#callback").get_attribute("href")  # the provider holds its answer (HOLD_CALLBACK)
    response = page.goto(rewrite(answer))
    assert "/oidc/callback/" in response.url
    return response


def _with_query(url: str, **changes) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return parts._replace(query=urlencode({k: v for k, v in query.items() if v is not None})).geturl()


def test_behind_a_proxy_that_drops_the_port_the_provider_is_sent_back_to_portal_url(
    browser, live_server, settings, tmp_path, web_with_groups
):
    """nginx's usual `Host $host` drops the public port: the redirect URI the provider has registered is at
    PORTAL_URL (port included), in the sign-in and in the code exchange, which the provider checks are the same."""
    with reverse_proxy(live_server.url, host="127.0.0.1") as public:
        settings.PORTAL_URL = public
        with running_provider(tmp_path, f"{public}/oidc/callback/") as idp:
            settings.OIDC_ISSUER, settings.OIDC_CLIENT_ID, settings.OIDC_CLIENT_SECRET = (
                idp.issuer,
                CLIENT_ID,
                CLIENT_SECRET,
            )
            settings.OIDC_SCOPES = "openid email profile groups"
            oidc._discovered.clear()
            context = browser.new_context()
            page = context.new_page()
            sign_in_at_provider(page, SimpleNamespace(url=public))
            page.wait_for_url(f"{public}/setup/")
            expect(page.get_by_role("link", name="carol")).to_be_visible()
            context.close()
        oidc._discovered.clear()
    assert Membership.objects.filter(team=web_with_groups, user__email="carol@example.com").exists()


def test_a_tampered_state_is_refused_with_a_sentence(browser, live_server, sso, web_with_groups):
    with sso(HOLD_CALLBACK="1"):
        page = browser.new_page()
        response = _refused_page(page, live_server, lambda url: _with_query(url, state="forged-by-someone-else"))
        assert response.status == 400
        expect(page.get_by_role("alert")).to_contain_text("does not belong to a sign-in started in this browser")
        page.close()
    assert not get_user_model().objects.filter(email="carol@example.com").exists()
    failed = AuditEvent.objects.get(action="auth.sign_in_failed")
    assert "state does not match" in failed.details["reason"]


@pytest.mark.parametrize("drop_iss_parameter", [True, False], ids=["id-token-iss", "iss-parameter"])
def test_an_answer_from_another_issuer_is_refused(browser, live_server, sso, web_with_groups, drop_iss_parameter):
    # A second provider whose discovery document claims the trusted issuer, but whose tokens carry its own.
    with sso(ISSUER="http://localhost:{port}", ADVERTISED_ISSUER="http://127.0.0.1:{port}", HOLD_CALLBACK="1") as idp:
        page = browser.new_page()
        rewrite = (lambda url: _with_query(url, iss=None)) if drop_iss_parameter else (lambda url: url)
        response = _refused_page(page, live_server, rewrite)
        assert response.status == 403
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text(f"http://localhost:{idp.port}")
        expect(alert).to_contain_text("The sign-in is refused")
        if drop_iss_parameter:  # then only the ID token names its issuer
            expect(alert).to_contain_text("The ID token was issued by")
        page.close()
    assert not get_user_model().objects.filter(email="carol@example.com").exists()


def test_an_expired_code_is_refused_with_a_sentence(browser, live_server, sso, web_with_groups):
    def late(url: str) -> str:
        time.sleep(2.5)  # the provider's codes live one second here: let this one expire on its way
        return url

    with sso(CODE_TTL="1", HOLD_CALLBACK="1"):
        page = browser.new_page()
        response = _refused_page(page, live_server, late)
        assert response.status == 400
        expect(page.get_by_role("alert")).to_contain_text("it has expired or was already used")
        page.close()
    assert not get_user_model().objects.filter(email="carol@example.com").exists()


def test_sso_needs_an_invitation_or_a_group_then_the_invitation_link_works(browser, live_server, sso, settings):
    from portal.invitations import create_invitation

    team = Team.objects.create(name="Data", slug="data")  # no SSO groups
    admin = get_user_model().objects.create_user("dana", "dana@example.com", "pw-dana")
    Membership.objects.create(team=team, user=admin, role="admin")  # an invitation grants what its maker may
    with sso():
        page = browser.new_page()
        sign_in_at_provider(page, live_server)
        expect(page.get_by_role("alert")).to_contain_text("no invitation for it")
        assert not get_user_model().objects.filter(email="carol@example.com").exists()
        page.close()

        invitation, raw = create_invitation(team=team, email="carol@example.com", role="admin", actor=admin)
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{live_server.url}/invitations/{raw}/")
        expect(page.get_by_role("heading", name="Join Data")).to_be_visible()
        page.get_by_role("link", name="Sign in with SSO").click()
        page.locator("input[name=login]").fill("carol")
        page.locator("input[name=password]").fill("any")
        page.get_by_role("button", name="Sign-in").click()
        page.get_by_role("button", name="Continue").click()
        page.wait_for_url("**/teams/data/")
        expect(page.get_by_role("heading", name="Data")).to_be_visible()
        context.close()
    carol = get_user_model().objects.get(email="carol@example.com")
    assert Membership.objects.get(team=team, user=carol).role == "admin"
    invitation.refresh_from_db()
    assert invitation.state == "accepted" and invitation.accepted_by == carol


def team_key(team, admin):
    """A key of the team's, for sudo-mode tests: rotating it asks to confirm it is you."""
    from gateways.models import Gateway
    from gateways.services import store_key

    tokenbay = Gateway.objects.get(slug="tokenbay")
    return store_key(team=team, gateway=tokenbay, label="Team key", secret="sk-sso-sudo-0123456789", actor=admin)


def test_an_sso_account_confirms_sudo_mode_by_signing_in_at_the_provider_again(
    browser, live_server, sso, web_with_groups
):
    with sso() as idp:
        idp.set_claims("carol", groups=["eng-leads"])
        context = browser.new_context()
        page = context.new_page()
        sign_in_at_provider(page, live_server)
        page.wait_for_url("**/dashboard/")  # an admin starts on the dashboard
        carol = get_user_model().objects.get(email="carol@example.com")
        key = team_key(web_with_groups, carol)
        page.goto(f"{live_server.url}/keys/{key.id}/rotate/")
        page.wait_for_url("**/sudo/?next=*")
        page.get_by_role("link", name="confirm by signing in with SSO again").click()
        # prompt=login: the provider asks again even though its session is alive.
        page.locator("input[name=login]").fill("carol")
        page.locator("input[name=password]").fill("any")
        page.get_by_role("button", name="Sign-in").click()
        page.wait_for_url(lambda url: "/interaction/" in url or f"/keys/{key.id}/rotate/" in url)
        if "/interaction/" in page.url:
            page.get_by_role("button", name="Continue").click()
        page.wait_for_url(f"**/keys/{key.id}/rotate/")
        expect(page.get_by_role("heading", name="Rotate")).to_be_visible()
        context.close()


def test_a_provider_whose_discovery_names_another_issuer_is_not_trusted(client, sso, settings):
    with sso(ADVERTISED_ISSUER="https://idp.attacker.example") as liar:
        settings.OIDC_ISSUER = f"http://127.0.0.1:{liar.port}"  # where the portal was told to look
        oidc._discovered.clear()
        response = client.get("/oidc/authenticate/")
    assert response.status_code == 502
    assert "calls itself 'https://idp.attacker.example'" in response.context["message"]


def test_an_unreachable_provider_is_a_page_not_a_500(client, settings):
    from tests.smtp_server import free_port

    settings.OIDC_ISSUER = f"http://127.0.0.1:{free_port()}"
    settings.OIDC_CLIENT_ID, settings.OIDC_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
    oidc._discovered.clear()
    response = client.get("/oidc/authenticate/")
    assert response.status_code == 502
    assert "cannot be read right now" in response.content.decode()
    callback = client.get("/oidc/callback/?code=abc&state=never-started")
    assert callback.status_code == 400
    assert "does not belong to a sign-in started in this browser" in callback.content.decode()
