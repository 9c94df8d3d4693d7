"""Live keys in real headless Chromium: a developer installs a device from My set-up, an admin follows the rollout.

bob makes the install command on My set-up and copies it; it is run for real (`curl … | sh` into a
scratch HOME), so the device is installed and fetches from the running portal. After alice rotates
the key, one of bob's two devices fetches again: the key page and Connections show who holds the
new secret, and the rollout line counts the static copy bob's page view left.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import expect

from gateways.models import Device, Gateway
from gateways.services import assign_key, rotate_key_secret, store_key
from tests.test_browser import SCREENSHOTS, browser, people, sign_in  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SECRET = "sk-browser-live-0123456789"
NEW_SECRET = "sk-browser-live-rotated-9876"


def run_install(command: str, home: Path) -> None:
    home.mkdir()
    result = subprocess.run(
        ["sh", "-c", command],
        env={"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def run_helper(home: Path) -> subprocess.CompletedProcess:
    helper = home / ".claude" / "portal-key-helper.sh"
    return subprocess.run(
        ["sh", str(helper)], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}
    )


def make_device_in_the_page(page, live_server, name: str) -> str:
    page.goto(f"{live_server.url}/setup/")
    card = page.locator("section.card").first
    card.get_by_label("Device name").fill(name)
    card.get_by_label("System").select_option("linux")
    card.get_by_role("button", name="Make the install command").click()
    box = page.locator("[data-install-command]")
    expect(box).to_contain_text("curl -fsSL -H 'Accept: text/x-shellscript' '")
    box.get_by_role("button", name="Copy").click()
    expect(box.get_by_role("button", name="Copied")).to_be_visible()
    command = page.evaluate("navigator.clipboard.readText()").strip()
    assert command == box.locator("pre").inner_text().strip()
    return command


def test_devices_and_the_rollout_on_the_key_page_and_connections(live_server, browser, people, tmp_path):  # noqa: F811
    team, alice, _ = people
    key = store_key(
        team=team, gateway=Gateway.objects.get(slug="tokenbay"), label="Web team key", secret=SECRET, actor=alice
    )
    assign_key(key=key, username="bob", actor=alice)

    context = browser.new_context(user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/156")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    console = []
    page.on("console", lambda message: console.append(message.text))
    sign_in(page, live_server, "bob", "pw-bob")
    live = page.get_by_role("heading", name="Install on a new device")
    static = page.get_by_role("heading", name="Without the portal (static key)")
    assert live.bounding_box()["y"] < static.bounding_box()["y"]  # offered first
    # Copying the static snippet fetches the key (viewing the page does not): bob holds a static copy too.
    copy = page.locator("[data-snippet] [data-copy]:visible").first
    copy.click()
    expect(page.locator("[data-snippet] [data-copy]:visible").first).to_have_text("Copied")
    laptop, desktop = tmp_path / "laptop", tmp_path / "desktop"
    run_install(make_device_in_the_page(page, live_server, "bob laptop"), laptop)
    run_install(make_device_in_the_page(page, live_server, "bob desktop"), desktop)
    page.goto(f"{live_server.url}/devices/")
    expect(page.locator("tr", has_text="bob laptop").locator("[data-device-state]")).to_have_text("live")
    assert not [line for line in console if "Content Security Policy" in line], console
    context.close()

    rotate_key_secret(key=key, secret=NEW_SECRET, actor=alice)
    assert run_helper(laptop).stdout == NEW_SECRET + "\n"  # the laptop's Claude Code asked again

    page = browser.new_page()
    sign_in(page, live_server, "alice", "pw-alice")
    page.goto(f"{live_server.url}/keys/{key.id}/")
    expect(page.locator("[data-rollout]")).to_contain_text(
        "1 of 2 live devices has the new secret; 1 developer holds a static copy and must download again."
    )
    devices = page.locator("section", has=page.get_by_role("heading", name="Devices holding it live"))
    expect(devices.locator("tr", has_text="bob laptop")).to_contain_text("fetched")
    expect(devices.locator("tr", has_text="bob desktop")).to_contain_text("not yet")
    if SCREENSHOTS:
        page.screenshot(path=str(SCREENSHOTS / "key-devices.png"), full_page=True)

    page.goto(f"{live_server.url}/connections/")
    row = page.locator("tr", has_text="bob")
    expect(row.locator("[data-live-devices]")).to_have_attribute("data-live-devices", "2")
    expect(row.locator("div", has_text="bob laptop")).to_contain_text("new secret")
    expect(row.locator("div", has_text="bob desktop")).to_contain_text("old secret")

    page.goto(f"{live_server.url}/keys/{key.id}/")
    devices.get_by_text("Remove bob desktop").first.click()  # asks first, like every removal
    devices.get_by_role("button", name="Remove bob desktop").click()
    expect(page.get_by_role("status")).to_contain_text("bob desktop is removed")
    expect(devices.locator("tr", has_text="bob desktop")).to_have_count(0)
    expect(page.locator("[data-rollout]")).to_contain_text("1 of 1 live device has the new secret")
    refused = run_helper(desktop)
    assert refused.returncode == 1 and "removed from the portal by alice" in refused.stderr
    assert Device.objects.get(name="bob desktop").revoked_by == alice
    page.close()
