"""The pages in real headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from gateways.devices import create_device, install_device
from gateways.models import Device, Gateway
from gateways.services import assign_key, store_key
from portal.invitations import create_invitation
from portal.models import AccessToken, AuditEvent, Membership, Team
from tests.gateway_emulator import GatewayRules, running_emulator

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SECRET = "sk-browser-0123456789abcd"
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", "")) if os.environ.get("SCREENSHOT_DIR") else None


@pytest.fixture
def browser(chromium):
    """The suite's headless Chromium (tests/conftest.py), under the name these browser tests use."""
    return chromium


@pytest.fixture
def people(django_user_model):
    alice = django_user_model.objects.create_user("alice", password="pw-alice")
    bob = django_user_model.objects.create_user("bob", password="pw-bob")
    team = Team.objects.create(name="Web", slug="web")
    Membership.objects.create(team=team, user=alice, role="admin")
    Membership.objects.create(team=team, user=bob, role="member")
    return team, alice, bob


def sign_in(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login/" not in url)  # admins land on the dashboard, others on My set-up


def test_setup_page_tabs_copy_and_download(live_server, browser, people, tmp_path):
    team, alice, _ = people
    key = store_key(
        team=team, gateway=Gateway.objects.get(slug="tokenbay"), label="Bob laptop", secret=SECRET, actor=alice
    )
    assign_key(key=key, username="bob", actor=alice)

    context = browser.new_context(user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/156", accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    console = []
    page.on("console", lambda message: console.append(message.text))
    sign_in(page, live_server, "bob", "pw-bob")

    # The tab is preselected from the user agent: Linux -> bash.
    expect(page.get_by_role("tab", name="bash", exact=True)).to_have_attribute("aria-selected", "true")
    bash_panel = page.locator("[data-panel=bash]")
    expect(bash_panel).to_be_visible()
    expect(bash_panel.locator("pre")).to_contain_text("export ANTHROPIC_API_KEY=''")

    page.get_by_role("tab", name="fish").click()
    fish_panel = page.locator("[data-panel=fish]")
    expect(fish_panel).to_be_visible()
    expect(bash_panel).to_be_hidden()
    expect(fish_panel.locator("pre")).to_contain_text("set -gx ANTHROPIC_AUTH_TOKEN")

    fish_panel.get_by_role("button", name="Copy").click()
    expect(fish_panel.get_by_role("button", name="Copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.strip() == fish_panel.locator("pre").inner_text().strip()
    assert f"set -gx ANTHROPIC_AUTH_TOKEN '{SECRET}'" in copied

    page.get_by_role("tab", name="settings.json").click()
    with page.expect_download() as info:
        page.locator("[data-panel=settings]").get_by_role("link", name="Download settings.json").click()
    download = info.value
    assert download.suggested_filename == "settings.json"
    saved = tmp_path / "settings.json"
    download.save_as(saved)
    assert json.loads(saved.read_text())["env"]["ANTHROPIC_AUTH_TOKEN"] == SECRET
    assert not [line for line in console if "Content Security Policy" in line], console
    if SCREENSHOTS:
        page.get_by_role("tab", name="macOS/Linux zsh").click()
        page.screenshot(path=str(SCREENSHOTS / "setup.png"), full_page=True)
    context.close()

    downloads = AuditEvent.objects.filter(action="config.downloaded", actor_username="bob")
    assert sorted(downloads.values_list("details__format", flat=True)) == ["copy", "settings.json"]


def test_probe_button_shows_the_result_without_a_reload(live_server, browser, people):
    team, alice, _ = people
    with running_emulator(GatewayRules(auth_scheme="bearer", keys={"sk-other-key-000"})) as gw:
        gateway = Gateway.objects.get(slug="tokenbay")
        gateway.base_url = gw.base_url
        gateway.save()
        key = store_key(team=team, gateway=gateway, label="Broken", secret=SECRET, actor=alice)
        page = browser.new_page()
        sign_in(page, live_server, "alice", "pw-alice")
        page.goto(f"{live_server.url}/keys/{key.id}/")
        page.evaluate("window.notReloaded = true")
        page.get_by_role("button", name="Probe now").click()
        result = page.locator(f"#probe-result-{key.id}")
        expect(result.locator("[data-verdict]")).to_have_text("auth_failed")
        expect(result).to_contain_text("ANTHROPIC_API_KEY must be")
        assert page.evaluate("window.notReloaded") is True
        if SCREENSHOTS:
            page.screenshot(path=str(SCREENSHOTS / "key.png"), full_page=True)
        page.close()


def fetches(user: str) -> list[str]:
    """The formats of the user's recorded configuration fetches, oldest first."""
    rows = AuditEvent.objects.filter(action="config.downloaded", actor_username=user).order_by("id")
    return list(rows.values_list("details__format", flat=True))


def test_my_setup_masks_the_key_and_reveal_or_copy_record_exactly_one_fetch(live_server, browser, people):
    team, alice, _ = people
    key = store_key(
        team=team, gateway=Gateway.objects.get(slug="tokenbay"), label="Bob laptop", secret=SECRET, actor=alice
    )
    assignment = assign_key(key=key, username="bob", actor=alice)
    context = browser.new_context(user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/156")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    sign_in(page, live_server, "bob", "pw-bob")
    page.reload()
    bash = page.locator("[data-panel=bash]")
    expect(bash.locator("pre")).to_contain_text("export ANTHROPIC_AUTH_TOKEN='sk-...abcd'")
    assert SECRET not in page.content()
    assert fetches("bob") == []  # looking at the page twice fetched nothing

    bash.get_by_role("button", name="Copy").click()
    expect(bash.get_by_role("button", name="Copied")).to_be_visible()
    assert f"export ANTHROPIC_AUTH_TOKEN='{SECRET}'" in page.evaluate("navigator.clipboard.readText()")
    expect(bash.locator("pre")).to_contain_text(SECRET)
    assert fetches("bob") == ["copy"]
    # The card now holds the key: copying another tab fetches nothing more.
    page.get_by_role("tab", name="fish").click()
    fish = page.locator("[data-panel=fish]")
    fish.get_by_role("button", name="Copy").click()
    expect(fish.get_by_role("button", name="Copied")).to_be_visible()
    assert f"set -gx ANTHROPIC_AUTH_TOKEN '{SECRET}'" in page.evaluate("navigator.clipboard.readText()")
    assert fetches("bob") == ["copy"]

    page.reload()  # masked again; Reveal is the other way to the key
    page.get_by_role("tab", name="fish").click()
    expect(page.locator("[data-panel=fish] pre")).to_contain_text("sk-...abcd")
    page.locator("[data-panel=fish]").get_by_role("button", name="Reveal key").click()
    expect(page.locator("[data-panel=fish] pre")).to_contain_text(SECRET)
    expect(page.locator("[data-panel=fish]").get_by_role("button", name="Reveal key")).to_be_hidden()
    assert fetches("bob") == ["copy", "reveal"]
    context.close()

    # Without JavaScript, Reveal posts and the page comes back with the key: one fetch again.
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    sign_in(page, live_server, "bob", "pw-bob")
    page.locator(f"#assignment-{assignment.id} [data-panel=zsh]").get_by_role("button", name="Reveal key").click()
    expect(page.locator("[data-panel=zsh] pre")).to_contain_text(SECRET)
    assert fetches("bob") == ["copy", "reveal", "reveal"]
    context.close()


def test_revoke_remove_member_and_remove_assignment_ask_once_then_act(live_server, browser, people):
    """Without JavaScript, as the confirmations need none; the password prompt completes the revoke.

    Withdrawing an invitation and revoking an access token ask the same way.
    """
    team, alice, bob = people
    key = store_key(
        team=team, gateway=Gateway.objects.get(slug="tokenbay"), label="Bob laptop", secret=SECRET, actor=alice
    )
    assign_key(key=key, username="bob", actor=alice)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    sign_in(page, live_server, "alice", "pw-alice")

    page.goto(f"{live_server.url}/keys/{key.id}/")
    page.get_by_text("Remove bob's assignment").first.click()  # opens the confirmation, does nothing yet
    confirm = page.get_by_role("button", name="Remove bob's assignment")
    expect(confirm).to_be_visible()
    assert key.assignments.count() == 1
    confirm.click()
    expect(page.get_by_role("status")).to_contain_text("bob no longer has this key")
    assert key.assignments.count() == 0

    page.get_by_text("Revoke…").click()
    expect(page.get_by_text("This cannot be undone")).to_be_visible()
    key.refresh_from_db()
    assert key.state == "active"
    page.get_by_role("button", name="Revoke this key").click()
    expect(page.get_by_role("heading", name="Confirm your password")).to_be_visible()
    expect(page.get_by_text("To revoke the key 'Bob laptop'")).to_be_visible()
    page.get_by_label("Password").fill("pw-alice")
    page.get_by_role("button", name="Confirm and continue").click()
    # Back on the key page, revoked: no second click.
    page.wait_for_url(f"**/keys/{key.id}/")
    expect(page.get_by_role("status")).to_contain_text("Key revoked")
    key.refresh_from_db()
    assert key.state == "revoked"
    assert AuditEvent.objects.filter(action="key.revoked").count() == 1

    page.goto(f"{live_server.url}/teams/web/")
    page.get_by_text("Remove bob from Web").first.click()
    page.get_by_role("button", name="Remove bob").click()
    expect(page.get_by_role("status")).to_contain_text("bob was removed from Web")
    assert not Membership.objects.filter(team=team, user=bob).exists()

    invitation, _ = create_invitation(team=team, email="erin@example.com", role="member", actor=alice)
    page.goto(f"{live_server.url}/teams/web/invitations/")
    page.get_by_text("Withdraw").first.click()  # opens the confirmation, does nothing yet
    confirm = page.get_by_role("button", name="Withdraw the invitation for erin@example.com")
    expect(confirm).to_be_visible()
    invitation.refresh_from_db()
    assert invitation.state == "pending"
    confirm.click()
    expect(page.get_by_role("status")).to_contain_text("The invitation for erin@example.com is withdrawn")
    invitation.refresh_from_db()
    assert invitation.state == "withdrawn"

    token, _ = AccessToken.issue(alice, name="ci runner")
    page.goto(f"{live_server.url}/tokens/")
    page.get_by_text("Revoke…").first.click()  # opens the confirmation, does nothing yet
    confirm = page.get_by_role("button", name="Revoke this token")
    expect(confirm).to_be_visible()
    token.refresh_from_db()
    assert token.revoked_at is None
    confirm.click()
    expect(page.get_by_role("status")).to_contain_text("Token ci runner revoked")
    token.refresh_from_db()
    assert token.revoked_at is not None
    context.close()


@pytest.mark.parametrize("where", ["My devices", "the key page"])
def test_removing_a_device_asks_once_then_acts(live_server, browser, people, where):
    """Like the other removals, without JavaScript: the first click only opens the confirmation."""
    team, alice, bob = people
    key = store_key(
        team=team, gateway=Gateway.objects.get(slug="tokenbay"), label="Bob laptop", secret=SECRET, actor=alice
    )
    device, code = create_device(
        assignment=assign_key(key=key, username="bob", actor=alice), name="bob desktop", platform="linux", actor=bob
    )
    install_device(code=code, request=None, render=lambda d, t: t)  # installed: listed on the key page too
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    if where == "My devices":
        sign_in(page, live_server, "bob", "pw-bob")
        page.goto(f"{live_server.url}/devices/")
    else:
        sign_in(page, live_server, "alice", "pw-alice")
        page.goto(f"{live_server.url}/keys/{key.id}/")
    page.get_by_text("Remove bob desktop").first.click()  # opens the confirmation, does nothing yet
    confirm = page.get_by_role("button", name="Remove bob desktop")
    expect(confirm).to_be_visible()
    expect(page.get_by_text("Its next key fetch is refused")).to_be_visible()
    device.refresh_from_db()
    assert device.revoked_at is None
    confirm.click()
    expect(page.get_by_role("status")).to_contain_text("bob desktop is removed")
    assert Device.objects.get(pk=device.pk).revoked_at is not None
    context.close()


def test_a_probe_refreshes_the_latest_verdict_chart_and_history_in_place(live_server, browser, people):
    team, alice, _ = people
    with running_emulator(GatewayRules(auth_scheme="bearer", keys={SECRET}, delay=2.2)) as gw:
        gateway = Gateway.objects.get(slug="tokenbay")
        gateway.base_url = gw.base_url
        gateway.save()
        key = store_key(team=team, gateway=gateway, label="Live", secret=SECRET, actor=alice)
        page = browser.new_page()
        sign_in(page, live_server, "alice", "pw-alice")
        page.goto(f"{live_server.url}/keys/{key.id}/")
        expect(page.locator("#probe-latest")).to_contain_text("not probed")
        expect(page.locator("#latency-chart")).to_contain_text("No probes yet")
        page.evaluate("window.notReloaded = true")
        page.get_by_role("button", name="Probe now").click()
        result = page.locator(f"#probe-result-{key.id}")
        expect(result).to_contain_text("Probing… 1 s")  # the elapsed time counts while the gateway thinks
        expect(result.locator("[data-verdict]")).to_have_text("ok", timeout=10_000)
        # Without a reload, the page's own regions show the new probe.
        expect(page.locator("#probe-latest [data-verdict]")).to_have_text("ok")
        expect(page.locator("#latency-chart svg")).to_have_attribute("aria-label", re.compile(r"last 1 probes"))
        expect(page.locator("#recent-probes tbody tr")).to_have_count(1)
        assert page.evaluate("window.notReloaded") is True
        page.close()
