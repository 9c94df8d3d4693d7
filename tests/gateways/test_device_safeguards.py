"""Devices: an install link mints one token, and a refused fetch tells the developer the true reason."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from gateways import devices as device_module
from gateways.models import Device
from gateways.services import assign_key, remove_assignment
from portal.models import AuditEvent, Membership, Role
from tests.api.test_devices import fetch, install, live_bob, make_device, path_of  # noqa: F401 (live_bob: fixture)
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_an_install_link_is_claimed_once_even_when_two_requests_read_it_unused(api, bob, bob_assignment, monkeypatch):
    """Two requests for one install link (`curl | sh` run twice, a proxy retrying) mint one token: the first
    installer's token keeps working and the second request is told the link was used.

    The race is simulated: the second request's first check of the link is made to find it unused, as a request
    that read the row before the first one claimed it would; only the claim itself can then refuse it.
    """
    made = make_device(api, bob, bob_assignment)
    first_token = install(Client(), made)
    real_check = device_module._install_refusal
    checks = []

    def as_if_read_before_the_first_claim(device, now):
        checks.append(device.pk)
        return None if len(checks) == 1 else real_check(device, now)

    monkeypatch.setattr(device_module, "_install_refusal", as_if_read_before_the_first_claim)
    second = Client().get(path_of(made["install_url"]))
    assert second.status_code == 410, second.content
    assert fetch(Client(), first_token).status_code == 200


def test_removing_a_removed_device_again_keeps_who_removed_it_first(api, client, alice, bob, live_bob):  # noqa: F811 (the fixture)
    """A second removal changes nothing: the trail and the device's refusal still name the person who removed it."""
    device, token = live_bob
    assert api(alice).delete(f"/api/v1/devices/{device.id}/").status_code == 204
    first = Device.objects.get(pk=device.pk)
    api(bob).delete(f"/api/v1/devices/{device.id}/")
    again = Device.objects.get(pk=device.pk)
    assert (again.revoked_by_username, again.revoked_at) == ("alice", first.revoked_at)
    assert AuditEvent.objects.filter(action="device.removed").count() == 1
    assert "removed from the portal by alice" in fetch(client, token).content.decode()


def test_a_device_whose_owner_lost_the_key_is_not_told_it_is_theirs_again(api, client, alice, bob, web, live_bob):  # noqa: F811 (the fixture)
    """When the key now goes to a teammate, bob's device is told the key is no longer his, not that it is his again."""
    device, token = live_bob
    erin = make_user("erin")
    Membership.objects.create(team=web, user=erin, role=Role.MEMBER)
    assign_key(key=device.key, username="erin", actor=alice)
    remove_assignment(assignment=device.assignment, actor=alice)
    refused = fetch(client, token)
    assert refused.status_code == 403
    text = refused.content.decode()
    assert "no longer assigned to you" in text
    assert "yours again" not in text


def test_a_removed_device_says_who_removed_it_even_after_the_owner_is_deactivated(api, client, alice, bob, live_bob):  # noqa: F811 (the fixture)
    """A device removed first and its owner deactivated later still says who removed it: that came first."""
    device, token = live_bob
    assert api(alice).delete(f"/api/v1/devices/{device.id}/").status_code == 204
    get_user_model().objects.filter(pk=bob.pk).update(is_active=False)
    refused = fetch(client, token)
    assert refused.status_code == 403
    assert "removed from the portal by alice" in refused.content.decode()
