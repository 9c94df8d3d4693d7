"""A team admin's slips with keys, and the way back: what the key page and a live device say afterwards."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from gateways import devices
from gateways.models import Assignment, GatewayKey
from gateways.services import rotate_key_secret
from portal.models import Action, AuditEvent
from portal.times import written_time
from tests.conftest import TOKENBAY_SECRET, confirm_password
from tests.page_forms import form_on

REVOKE_CONFIRM = re.compile(r'<summary class="button danger">Revoke.*?</details>', re.S)


def _download(client, user, assignment_id) -> None:
    client.force_login(user)
    assert client.get(f"/setup/{assignment_id}/settings.json").status_code == 200
    client.logout()


def _text(response) -> str:
    """The page as a person reads it: tags dropped, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


def _revoke_confirmation(client, key) -> str:
    page = client.get(f"/keys/{key.pk}/").content.decode()
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", REVOKE_CONFIRM.search(page).group(0))).split())


def test_revoking_a_key_taken_back_from_a_holder_of_its_secret_counts_their_copy(client, alice, bob, bob_assignment):
    key = bob_assignment.key
    _download(client, bob, bob_assignment.pk)
    client.force_login(alice)
    confirm_password(client, alice)
    assert client.post(f"/assignments/{bob_assignment.pk}/remove/").status_code == 302

    row = AuditEvent.objects.filter(action=Action.ASSIGNMENT_REMOVED).get()
    assert row.details["static_copies"] == [
        {"id": str(key.pk), "team": "web", "key": key.short_fingerprint, "label": "Bob laptop"}
    ]
    assert "1 developer holds a static copy" in _revoke_confirmation(client, key)

    said = _text(client.post(f"/keys/{key.pk}/revoke/", follow=True))
    assert GatewayKey.objects.get(pk=key.pk).revoked_at is not None
    assert "1 developer holds a static copy that TokenBay still accepts" in said
    assert "delete or disable the key in the TokenBay console" in said


def test_taking_back_a_key_never_downloaded_or_since_rotated_counts_no_copy(client, alice, bob, bob_assignment):
    key = bob_assignment.key
    _download(client, bob, bob_assignment.pk)
    key = rotate_key_secret(key=key, secret="sk-tb-" + "n" * 40, actor=alice)  # bob's copy holds the old secret
    client.force_login(alice)
    client.post(f"/assignments/{bob_assignment.pk}/remove/")
    row = AuditEvent.objects.filter(action=Action.ASSIGNMENT_REMOVED).get()
    assert "static_copies" not in row.details
    assert devices.copies_out(key) == 0
    assert "static copy" not in _revoke_confirmation(client, key)


def test_a_holder_taken_back_then_given_the_key_again_is_counted_once(client, alice, bob, bob_assignment):
    key = bob_assignment.key
    _download(client, bob, bob_assignment.pk)
    client.force_login(alice)
    client.post(f"/assignments/{bob_assignment.pk}/remove/")
    client.post(f"/keys/{key.pk}/assign/", {"username": "bob"})
    again = Assignment.objects.get(key=key, user=bob)
    _download(client, bob, again.pk)
    assert devices.copies_out(key) == 1


def test_the_take_back_confirmation_does_not_promise_that_revoking_stops_a_downloaded_copy(
    client, alice, bob, bob_assignment
):
    _download(client, bob, bob_assignment.pk)
    client.force_login(alice)
    page = client.get(f"/keys/{bob_assignment.key_id}/").content.decode()
    confirm = re.search(r"<p>Take <strong>.*?</p>", page, re.S).group(0)
    confirm = " ".join(html.unescape(re.sub(r"<[^>]+>", "", confirm)).split())
    assert "stops working once the key is rotated or revoked" not in confirm
    assert "A live device of theirs stops at its next fetch." in confirm, confirm
    assert (
        "A copy they downloaded still works where they saved it until the key is rotated, or deleted in the " in confirm
    )
    assert "TokenBay console: revoking destroys only the portal's copy." in confirm, confirm


def test_the_revoke_confirmation_says_the_secret_can_never_be_stored_in_the_team_again(client, api, alice, web):
    client.force_login(alice)
    wrong = api(alice).post(
        "/api/v1/teams/web/keys/", {"gateway": "tokaify", "label": "CI", "secret": TOKENBAY_SECRET}, format="json"
    )
    key = GatewayKey.objects.get(pk=wrong.json()["id"])
    confirm = _revoke_confirmation(client, key)
    assert "This cannot be undone: this secret can never be stored in Web again" in confirm, confirm
    # Not "from Tokaify": the slip may be the gateway itself, and the new key come from another.
    assert "the way back is to issue a new key at the gateway, store it here and assign it to each holder again" in (
        confirm
    ), confirm

    confirm_password(client, alice)
    client.post(f"/keys/{key.pk}/revoke/")
    again = api(alice).post(
        "/api/v1/teams/web/keys/", {"gateway": "tokenbay", "label": "CI", "secret": TOKENBAY_SECRET}, format="json"
    )
    assert again.status_code == 400, "the rule stands: a revoked secret is refused for good"
    assert "a revoked secret is not taken back" in str(again.json())


def test_saving_an_expiry_in_the_past_says_the_key_has_expired(client, alice, bob, bob_assignment):
    key = bob_assignment.key
    client.force_login(alice)
    action = f"/keys/{key.pk}/settings/"
    fields = form_on(client.get(f"/keys/{key.pk}/"), action)
    fields["expires_at"] = (timezone.localtime() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    said = _text(client.post(action, fields, follow=True))
    key = GatewayKey.objects.get(pk=key.pk)
    assert key.state == "expired"
    assert "next downloads use them" not in said
    assert (
        f"the key expired at {written_time(key.expires_at)}: it yields no set-up and live devices are refused "
        "until you set a later expiry" in said
    ), said

    client.force_login(bob)
    assert client.get(f"/setup/{bob_assignment.pk}/settings.json").status_code != 200


def test_saving_a_future_expiry_still_says_the_next_downloads_use_it(client, alice, bob_assignment):
    key = bob_assignment.key
    client.force_login(alice)
    action = f"/keys/{key.pk}/settings/"
    fields = form_on(client.get(f"/keys/{key.pk}/"), action)
    fields["expires_at"] = (timezone.localtime() + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    said = _text(client.post(action, fields, follow=True))
    assert "Key settings saved; developers' next downloads use them." in said
    assert "expired" not in said


def _live_device(assignment, user) -> str:
    _, code = devices.create_device(assignment=assignment, name="laptop", platform="linux", actor=user)
    _, token = devices.install_device(code=code, request=None, render=lambda device, token: token)
    devices.fetch_key(raw_token=token, request=None)
    return token


@pytest.mark.parametrize("way", ["member removed and added back", "assignment removed and made again"])
def test_a_device_installed_before_the_key_was_taken_back_and_given_again_says_to_install_again(
    client, settings, alice, bob, bob_assignment, way
):
    settings.PORTAL_NAME = "Acme portal"
    key = bob_assignment.key
    token = _live_device(bob_assignment, bob)
    client.force_login(alice)
    if way == "member removed and added back":
        client.post("/teams/web/members/bob/remove/")
        client.post("/teams/web/members/", {"username": "bob", "role": "member"})
    else:
        client.post(f"/assignments/{bob_assignment.pk}/remove/")
    client.post(f"/keys/{key.pk}/assign/", {"username": "bob"})
    assert Assignment.objects.filter(key=key, user=bob).exists()

    with pytest.raises(devices.DeviceRefused) as refused:
        devices.fetch_key(raw_token=token, request=None)
    assert str(refused.value) == (
        "This device was installed before the key 'Bob laptop' was taken back from you in Acme portal; it is "
        "yours again: run the install command again from My set-up."
    )
    assert refused.value.status == 403


def test_a_device_whose_key_is_still_taken_back_says_it_is_no_longer_assigned(client, settings, alice, bob_assignment):
    settings.PORTAL_NAME = "Acme portal"
    token = _live_device(bob_assignment, bob_assignment.user)
    client.force_login(alice)
    client.post(f"/assignments/{bob_assignment.pk}/remove/")
    with pytest.raises(devices.DeviceRefused, match="is no longer assigned to you in Acme portal"):
        devices.fetch_key(raw_token=token, request=None)


@pytest.mark.parametrize("then", ["revoked", "disabled"])
def test_a_device_of_a_key_given_again_then_revoked_or_disabled_is_told_why_not_to_install_again(
    client, settings, alice, bob, bob_assignment, then
):
    settings.PORTAL_NAME = "Acme portal"
    key = bob_assignment.key
    token = _live_device(bob_assignment, bob)
    client.force_login(alice)
    client.post(f"/assignments/{bob_assignment.pk}/remove/")
    client.post(f"/keys/{key.pk}/assign/", {"username": "bob"})
    assert Assignment.objects.filter(key=key, user=bob).exists()
    confirm_password(client, alice)
    if then == "revoked":
        client.post(f"/keys/{key.pk}/revoke/")
    else:
        client.post(f"/keys/{key.pk}/toggle/", {"enabled": "0"})
    key.refresh_from_db()
    assert key.state == then

    # A new install cannot work while the key is revoked or disabled.
    new = Assignment.objects.get(key=key, user=bob)
    with pytest.raises(devices.DeviceRefused):
        devices.create_device(assignment=new, name="laptop 2", platform="linux", actor=bob)

    with pytest.raises(devices.DeviceRefused) as refused:
        devices.fetch_key(raw_token=token, request=None)
    # The device must not be told "it is yours again: run the install command again".
    assert "install command again" not in str(refused.value), str(refused.value)
    assert then in str(refused.value)
