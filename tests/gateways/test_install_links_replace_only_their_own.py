"""A new install link replaces only a waiting link of the same set-up, device name and platform: never another
developer's, another machine's or another system's."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from gateways.models import Device
from gateways.services import assign_key

pytestmark = pytest.mark.django_db


def make_link(api, user, assignment, name="work laptop", platform="linux") -> dict:
    response = api(user).post(
        f"/api/v1/me/configs/{assignment.id}/devices/", {"name": name, "platform": platform}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def waiting(device: dict) -> bool:
    return Device.objects.filter(pk=device["id"], revoked_at__isnull=True).exists()


def test_another_developers_link_of_the_same_name_is_not_replaced(
    api, client, alice, bob, bob_assignment, tokenbay_key
):
    """bob and alice each make an install link called "work laptop" for Linux from the same key: both work."""
    alice_assignment = assign_key(key=tokenbay_key, username="alice", actor=alice)
    bobs = make_link(api, bob, bob_assignment)
    alices = make_link(api, alice, alice_assignment)
    assert waiting(alices)
    assert waiting(bobs), "alice's new link revoked bob's, which he has not run yet"
    assert client.get(urlsplit(bobs["install_url"]).path).status_code == 200


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param({"name": "work laptop"}, {"name": "desktop"}, id="two Linux machines at once"),
        pytest.param({"platform": "macos"}, {"platform": "windows"}, id="one dual-boot machine's two systems"),
    ],
)
def test_a_link_for_another_device_name_or_system_is_not_replaced(api, client, bob, bob_assignment, first, second):
    """bob sets up two machines, or both systems of one, at once: the second link does not kill the first."""
    earlier = make_link(api, bob, bob_assignment, **first)
    later = make_link(api, bob, bob_assignment, **second)
    assert waiting(later)
    assert waiting(earlier), "the first link was revoked by the second"
    assert client.get(urlsplit(earlier["install_url"]).path).status_code == 200
