"""The dashboard in real headless Chromium: an admin lands on it and follows a row to its fix."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from gateways.models import Assignment, Gateway, GatewayKey
from gateways.services import assign_key, rotate_key_secret, store_key
from tests.test_browser import SCREENSHOTS, browser, people, sign_in  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_an_admin_lands_on_the_dashboard_and_follows_a_row_to_the_fix(live_server, browser, people):  # noqa: F811
    team, alice, _ = people
    gateway = Gateway.objects.get(slug="tokenbay")
    failing = store_key(team=team, gateway=gateway, label="Broken", secret="sk-browser-broken-0123456789", actor=alice)
    GatewayKey.objects.filter(pk=failing.pk).update(last_probe_verdict="auth_failed", last_probe_at=timezone.now())
    expiring = store_key(team=team, gateway=gateway, label="Ending", secret="sk-browser-ending-0123456789", actor=alice)
    GatewayKey.objects.filter(pk=expiring.pk).update(expires_at=timezone.now() + timedelta(days=3))
    rotated = store_key(team=team, gateway=gateway, label="Rolled", secret="sk-browser-rolled-0123456789", actor=alice)
    holder = assign_key(key=rotated, username="bob", actor=alice)
    Assignment.objects.filter(pk=holder.pk).update(last_download_at=timezone.now() - timedelta(days=1))
    rotate_key_secret(key=rotated, secret="sk-browser-rolled-new-0123456789", actor=alice)

    page = browser.new_page()
    console = []
    page.on("console", lambda message: console.append(message.text))
    sign_in(page, live_server, "alice", "pw-alice")
    expect(page).to_have_url(f"{live_server.url}/dashboard/")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    failing_section = page.get_by_role("region", name="Keys failing their last probe")
    expect(failing_section.locator("[data-count]")).to_have_text("1")
    expect(failing_section).to_contain_text("auth_failed")
    expect(page.get_by_role("region", name="Keys expiring within 14 days")).to_contain_text("Ending")
    rollouts = page.get_by_role("region", name="Rotations not yet rolled out")
    expect(rollouts).to_contain_text("1 of 1")
    expect(page.get_by_role("region", name="Assignments never downloaded").locator("[data-count]")).to_have_text("0")
    if SCREENSHOTS:
        page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

    failing_section.get_by_role("link", name="Broken").click()
    expect(page).to_have_url(f"{live_server.url}/keys/{failing.id}/")
    expect(page.get_by_role("button", name="Probe now")).to_be_visible()
    page.go_back()
    rollouts.get_by_role("link", name="Rolled").click()
    expect(page.get_by_role("heading", name="Assigned to")).to_be_visible()
    expect(page.locator("main#main")).to_contain_text("bob")
    assert not [line for line in console if "Content Security Policy" in line], console
    page.close()
