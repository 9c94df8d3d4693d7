"""An account made from an invitation link carries an address nobody has shown to be theirs: single sign-on does
not enter it by that address until its owner confirms it (a mailed link, a password reset, or staff).

Otherwise whoever held another person's link could prepare the account that person's first SSO sign-in lands in,
and keep its password. Mail goes through a real SMTP server; the SSO answers are the signed ID tokens of
tests/portal/test_sso_hardening.py, checked by the portal's real callback.
"""

from __future__ import annotations

from datetime import timedelta
from html import unescape

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from gateways.devices import create_device, install_device
from gateways.services import assign_key
from portal.mail import wait_for_mails_after_response
from portal.models import AccessToken, Action, AuditEvent, ExternalIdentity, UnconfirmedEmail
from tests.conftest import confirm_password
from tests.portal.sso_answers import signed_in, sso_sign_in
from tests.portal.test_invitations import URL, create_account_through, path_of
from tests.smtp_server import link_in

pytestmark = pytest.mark.django_db
ERIN = "erin@example.com"


@pytest.fixture
def erin_link(api, alice) -> str:
    """alice invites erin@example.com to web; the link, as shown to alice and mailed to erin."""
    return api(alice).post(URL, {"email": ERIN}, format="json").json()["accept_url"]


def made_from_link(link: str, username: str = "erin") -> Client:
    """Whoever holds the link makes an account with it; returns their browser, signed in."""
    browser = Client()
    response = create_account_through(browser, link, username)
    assert response.status_code == 302, response.content.decode()
    return browser


def confirmation_mail(smtp):
    [mail] = [m for m in smtp.to(ERIN) if m["Subject"].startswith("Confirm your address")]
    return mail


def test_sso_does_not_enter_an_account_someone_made_from_the_owners_invitation_link(erin_link, provider, client):
    made_from_link(erin_link, "mallory")  # the link was forwarded, and mallory got there first

    response = sso_sign_in(client, provider, sub="erin-at-the-provider", email=ERIN)

    assert response.status_code == 403
    page = response.content.decode()
    assert "it was made from an invitation link and its address is not confirmed yet" in page
    assert signed_in(client) is None
    assert not ExternalIdentity.objects.exists()
    refusal = AuditEvent.objects.get(action=Action.SIGN_IN_FAILED)
    assert refusal.target == "mallory" and refusal.details["via"] == "sso"


def test_the_mailed_link_confirms_the_address_then_sso_signs_in_to_the_account(erin_link, provider, smtp, client):
    erins_browser = made_from_link(erin_link)
    link = link_in(confirmation_mail(smtp))
    erin = get_user_model().objects.get(username="erin")

    page = erins_browser.get(path_of(link))
    assert page.status_code == 200
    assert f"Confirm {ERIN}" in page.content.decode()
    assert UnconfirmedEmail.objects.filter(user=erin).exists(), "opening the link (a mail scanner) confirms nothing"

    confirmed = erins_browser.post(path_of(link), follow=True)
    assert f"{ERIN} is confirmed" in confirmed.content.decode()
    assert not UnconfirmedEmail.objects.filter(user=erin).exists()
    event = AuditEvent.objects.get(action=Action.EMAIL_CONFIRMED)
    assert (event.actor, event.target, event.details) == (erin, "erin", {"email": ERIN, "via": "mailed link"})

    assert sso_sign_in(client, provider, sub="erin-at-the-provider", email=ERIN).status_code == 302
    assert signed_in(client) == "erin"


def test_a_confirmation_link_works_only_whole_in_time_and_for_its_own_account(erin_link, provider, smtp, bob):
    erins_browser = made_from_link(erin_link)
    link = path_of(link_in(confirmation_mail(smtp)))
    erin = get_user_model().objects.get(username="erin")

    bobs_browser = Client()
    bobs_browser.force_login(bob)
    for browser, url, sentence in [
        (bobs_browser, link, "This link confirms another account's address. Sign out, then sign in as that account"),
        (erins_browser, link[:-3] + "xyz/", "This confirmation link is not valid: check that it was copied whole"),
    ]:
        response = browser.post(url)
        assert response.status_code == 400
        assert sentence in unescape(response.content.decode())
    with time_machine.travel(timedelta(days=8)):
        late = erins_browser.post(link)
    assert late.status_code == 400 and "This confirmation link has expired" in late.content.decode()
    erin.email = "erin@elsewhere.example"
    erin.save(update_fields=["email"])
    moved = erins_browser.post(link)
    assert moved.status_code == 400 and "an address this account no longer uses" in moved.content.decode()
    assert UnconfirmedEmail.objects.filter(user=erin).exists()
    assert not AuditEvent.objects.filter(action=Action.EMAIL_CONFIRMED).exists()

    anonymous = Client().get(link)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")


def test_the_account_page_sends_the_link_again_but_not_every_minute(erin_link, provider, smtp):
    erins_browser = made_from_link(erin_link)  # the first link went out with the new account
    page = erins_browser.get("/account/").content.decode()
    assert "not confirmed" in page and "Send me the link that confirms it" in page

    too_soon = erins_browser.post("/account/confirm-email/", follow=True).content.decode()
    assert f"A link went to {ERIN} less than 5 minutes ago" in too_soon
    with time_machine.travel(timedelta(minutes=6)):
        again = erins_browser.post("/account/confirm-email/", follow=True).content.decode()
    assert f"A link went to {ERIN}. Open it while signed in as erin" in again
    assert len([m for m in smtp.to(ERIN) if m["Subject"].startswith("Confirm your address")]) == 2


def test_without_mail_staff_confirm_the_address_in_sudo_mode(erin_link, provider, settings, staff, bob, client):
    settings.EMAIL_CONFIGURED = False
    erins_browser = made_from_link(erin_link)
    assert "ask staff to confirm your address" in erins_browser.get("/account/").content.decode()
    erin = get_user_model().objects.get(username="erin")

    bobs_browser = Client()
    bobs_browser.force_login(bob)
    assert bobs_browser.post("/users/erin/confirm-email/").status_code == 403

    client.force_login(staff)
    assert "Confirm address" in client.get("/users/").content.decode()
    asked = client.post("/users/erin/confirm-email/")
    assert asked.status_code == 302 and asked["Location"].startswith("/sudo/")
    assert UnconfirmedEmail.objects.filter(user=erin).exists()
    confirm_password(client, staff)
    client.post("/users/erin/confirm-email/")
    assert not UnconfirmedEmail.objects.filter(user=erin).exists()
    event = AuditEvent.objects.get(action=Action.EMAIL_CONFIRMED)
    assert (event.actor, event.target, event.details["via"]) == (staff, "erin", "staff")
    assert "Confirm address" not in client.get("/users/").content.decode()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the reset mail goes in a thread of its own
def test_a_password_reset_through_the_address_confirms_it_and_takes_back_what_the_links_holder_set_up(
    erin_link, provider, smtp, tokenbay_key, alice
):
    made_from_link(erin_link, "mallory")
    mallory = get_user_model().objects.get(username="mallory")
    # What mallory prepares while holding the account: a token, an authenticator, a device with the team's key.
    _, raw = AccessToken.issue(mallory, name="kept for later")
    TOTPDevice.objects.create(user=mallory, name="authenticator", confirmed=True)
    assignment = assign_key(key=tokenbay_key, username="mallory", actor=alice)
    _, code = create_device(assignment=assignment, name="mallory's laptop", platform="linux", actor=mallory)
    device, device_token = install_device(code=code, request=None, render=lambda d, t: t)
    browser = Client()
    browser.post("/password_reset/", {"email": ERIN})
    wait_for_mails_after_response()
    [reset] = [m for m in smtp.to(ERIN) if "reset" in m["Subject"].lower()]
    form = browser.get(path_of(link_in(reset)), follow=True)
    assert form.status_code == 200
    password = "erins-own-new-password-42"
    done = browser.post(form.redirect_chain[-1][0], {"new_password1": password, "new_password2": password})
    assert done.status_code == 302
    mallory.refresh_from_db()
    assert mallory.check_password(password)  # erin holds the account now, and mallory's password is gone
    assert not UnconfirmedEmail.objects.filter(user=mallory).exists()
    confirmed = AuditEvent.objects.get(action=Action.EMAIL_CONFIRMED).details
    assert confirmed["via"] == "password reset" and confirmed["access_tokens_revoked"] == 1
    assert confirmed["second_factor_removed"] is True and confirmed["devices_removed"] == [device.pk]
    token_client = APIClient()
    token_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert token_client.get("/api/v1/me/configs/").status_code == 401
    assert not TOTPDevice.objects.filter(user=mallory).exists()
    assert Client().get("/api/v1/device/key", HTTP_AUTHORIZATION=f"Bearer {device_token}").status_code == 403
    assert sso_sign_in(Client(), provider, sub="erin-at-the-provider", email=ERIN).status_code == 302  # erin's now


def test_accounts_made_by_staff_or_by_sso_need_no_confirming(provider, client, alice, erin_link):
    assert sso_sign_in(client, provider, sub="alice-sub", email="alice@example.com").status_code == 302
    assert sso_sign_in(Client(), provider, sub="erin-sub", email=ERIN).status_code == 302  # made for the invitation
    assert not UnconfirmedEmail.objects.exists()
