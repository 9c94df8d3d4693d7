"""Reloading the answer to a form (F5) in headless Chromium acts once: no second token, device, offboarding or codes.

Each form posts, lands on a page that shows what was done, and a reload of that page shows it again or says it
was shown already, never a 404 and never the action a second time.
"""

from __future__ import annotations

import re

import pytest
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from gateways.models import Device
from portal.models import AccessToken, AuditEvent, Membership
from tests.test_browser import browser, sign_in  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def confirm_password(page, live_server, username: str, next_path: str) -> None:
    page.goto(f"{live_server.url}/sudo/?next={next_path}")
    page.get_by_label("Password").fill(f"pass-{username}")
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(f"{live_server.url}{next_path}")


def test_reloading_the_new_token_page_makes_no_second_token_and_hides_the_first(
    live_server,
    browser,  # noqa: F811
    bob,
):
    page = browser.new_page()
    sign_in(page, live_server, "bob", "pass-bob")
    confirm_password(page, live_server, "bob", "/tokens/")
    page.get_by_label("Name").fill("laptop script")
    page.get_by_role("button", name="Create token").click()
    shown = page.get_by_role("status").locator("pre")
    expect(shown).to_contain_text("ptl_")
    raw = shown.inner_text().strip()
    token = AccessToken.objects.get(user=bob)
    assert raw.startswith(f"ptl_{token.lookup_id}_") and token.name == "laptop script"

    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Personal access tokens")
    assert AccessToken.objects.filter(user=bob).count() == 1, "the reload made a second token"
    assert raw not in page.content(), "the token is shown once"
    expect(page.get_by_role("row", name=re.compile("laptop script"))).to_be_visible()


def test_reloading_the_install_page_makes_no_second_device(live_server, browser, bob, bob_assignment):  # noqa: F811
    page = browser.new_page()
    sign_in(page, live_server, "bob", "pass-bob")
    card = page.locator("section.card").first
    card.get_by_label("Device name").fill("new box")
    card.get_by_role("button", name="Make the install command").click()
    box = page.locator("[data-install-command]")
    expect(box).to_contain_text("/api/v1/device/install/")
    command = box.locator("pre").inner_text().strip()
    assert Device.objects.filter(assignment=bob_assignment).count() == 1

    page.reload()
    page.wait_for_load_state()
    assert Device.objects.filter(assignment=bob_assignment).count() == 1, "the reload made a second device"
    assert command not in page.content(), "the install command is shown once"
    expect(page.get_by_role("main")).to_contain_text("shown once")


def test_reloading_a_member_offboarded_page_shows_the_result_again(live_server, browser, alice, bob):  # noqa: F811
    page = browser.new_page()
    sign_in(page, live_server, "alice", "pass-alice")
    page.goto(f"{live_server.url}/teams/web/members/bob/offboard/")
    page.get_by_role("button", name="Offboard bob").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Offboarded bob from Web")
    assert not Membership.objects.filter(user=bob).exists()

    response = page.reload()
    assert response.status == 200, f"reloading the offboarded page answers {response.status}"
    expect(page.get_by_role("heading", level=1)).to_have_text("Offboarded bob from Web")
    assert AuditEvent.objects.filter(action="member.offboarded").count() == 1


def test_reloading_a_user_offboarded_page_does_not_offboard_again(live_server, browser, staff, bob):  # noqa: F811
    staff.set_password("pass-staff")
    staff.save()
    page = browser.new_page()
    sign_in(page, live_server, "staff", "pass-staff")
    page.goto(f"{live_server.url}/users/bob/offboard/")
    page.get_by_role("button", name="Offboard bob").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Offboarded bob")
    expect(page.get_by_label("Consequences")).to_contain_text("Teams left: Web (member)")

    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Offboarded bob")
    expect(page.get_by_label("Consequences")).to_contain_text("Teams left: Web (member)")
    assert AuditEvent.objects.filter(action="account.offboarded").count() == 1, "the reload offboarded bob again"


def recovery_codes(user) -> set[str]:
    return set(StaticToken.objects.filter(device__user=user).values_list("token", flat=True))


def test_reloading_the_recovery_codes_page_makes_no_second_set(live_server, browser, bob):  # noqa: F811
    page = browser.new_page()
    sign_in(page, live_server, "bob", "pass-bob")
    page.goto(f"{live_server.url}/account/two-factor/")
    device = TOTPDevice.objects.get(user=bob, confirmed=False)
    page.get_by_label("Code").fill(str(TOTP(device.bin_key, device.step, device.t0, device.digits).token()).zfill(6))
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your recovery codes")
    enrolled = recovery_codes(bob)
    assert len(enrolled) > 1 and all(code in page.content() for code in enrolled)
    page.reload()
    page.wait_for_load_state()
    assert recovery_codes(bob) == enrolled, "the reload made a second set of recovery codes"
    assert TOTPDevice.objects.filter(user=bob, confirmed=True).count() == 1

    confirm_password(page, live_server, "bob", "/account/")
    page.get_by_role("button", name="New recovery codes").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your recovery codes")
    renewed = recovery_codes(bob)
    assert renewed.isdisjoint(enrolled) and all(code in page.content() for code in renewed)
    page.reload()
    page.wait_for_load_state()
    assert recovery_codes(bob) == renewed, "the reload made a second set of recovery codes"
    assert not any(code in page.content() for code in renewed), "the codes are shown once"
