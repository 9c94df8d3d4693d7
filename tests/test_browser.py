"""The pages in real headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.db import connections
from playwright.sync_api import expect, sync_playwright

from gateways.models import Gateway
from gateways.services import assign_key, store_key
from portal.models import AuditEvent, Membership, Team
from tests.gateway_emulator import GatewayRules, running_emulator

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
SECRET = "sk-browser-0123456789abcd"
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", "")) if os.environ.get("SCREENSHOT_DIR") else None


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API keeps an event loop running in this thread; the test's own ORM calls
    # are still synchronous, so Django's guard is lifted for the test process only.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()
        # Database work done while Playwright runs may open a connection in Playwright's context,
        # which the test's own teardown does not see: close it here, in that context.
        connections.close_all()


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
    assert set(downloads.values_list("details__format", flat=True)) == {"page", "settings.json"}


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
