"""The auditor's view of live devices: Connections (API, CSV) and the devices list agree with what devices do.

A device installs through its real install script and fetches through /api/v1/device/key, as its helper does.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from gateways.dashboard import incomplete_rollouts, never_downloaded
from gateways.models import Assignment, Device, GatewayKey
from gateways.services import revoke_key, rotate_key_secret, set_key_enabled

pytestmark = pytest.mark.django_db

NEW = "sk-tokenbay-rotated-0123456789abcdef"


def live_device(api, client, bob, assignment) -> tuple[Device, str]:
    """bob makes a device and runs its install script's request; returns the device and its token."""
    made = api(bob).post(
        f"/api/v1/me/configs/{assignment.id}/devices/", {"name": "work laptop", "platform": "linux"}, format="json"
    )
    assert made.status_code == 201
    script = client.get(urlsplit(made.json()["install_url"]).path).content.decode()
    token = re.search(r"(pkf_[0-9a-f]+_[\w-]+)", script).group(1)
    return Device.objects.get(pk=made.json()["id"]), token


def fetch(client, token):
    return client.get("/api/v1/device/key", HTTP_AUTHORIZATION=f"Bearer {token}")


def users_in(api, viewer, state: str) -> list[str]:
    return [row["user"] for row in api(viewer).get(f"/api/v1/connections/?state={state}").json()["results"]]


def test_a_holder_fetching_live_is_not_listed_as_never_downloaded(api, client, alice, bob, dave, bob_assignment):
    assert users_in(api, dave, "never_downloaded") == ["bob"]
    _, token = live_device(api, client, bob, bob_assignment)
    assert fetch(client, token).status_code == 200
    assert users_in(api, dave, "never_downloaded") == []  # as the dashboard, whose section links here
    assert list(never_downloaded(Assignment.objects.all(), timezone.now())) == []


def test_a_live_holder_still_on_the_old_secret_is_in_the_stale_list_the_rollout_links_to(
    api, client, alice, bob, dave, bob_assignment, tokenbay_key
):
    Assignment.objects.filter(pk=bob_assignment.pk).update(created_at=timezone.now() - timedelta(days=1))
    _, token = live_device(api, client, bob, bob_assignment)
    assert fetch(client, token).status_code == 200
    assert users_in(api, dave, "stale") == []
    rotate_key_secret(key=tokenbay_key, secret=NEW, actor=alice)
    assert list(incomplete_rollouts(GatewayKey.objects.all())) == [tokenbay_key]  # the dashboard: bob is pending
    assert users_in(api, dave, "stale") == ["bob"]
    assert fetch(client, token).content.decode() == NEW
    assert users_in(api, dave, "stale") == []


def test_connections_api_and_csv_say_when_a_live_device_last_fetched(api, client, dave, bob, bob_assignment):
    [row] = api(dave).get("/api/v1/connections/").json()["results"]
    assert row["last_live_fetch_at"] is None
    device, token = live_device(api, client, bob, bob_assignment)
    assert fetch(client, token).status_code == 200
    seen = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
    Device.objects.filter(pk=device.pk).update(last_seen_at=seen)
    [row] = api(dave).get("/api/v1/connections/").json()["results"]
    assert row["last_live_fetch_at"] == "2026-03-04T05:06:00Z"
    body = b"".join(api(dave).get("/api/v1/connections/?export=csv").streaming_content).decode()
    [csv_row] = list(csv.DictReader(io.StringIO(body)))
    assert csv_row["last_live_fetch_at"].startswith("2026-03-04")


@pytest.mark.parametrize("action", ["revoke", "disable", "expire"])
def test_a_device_whose_every_fetch_is_refused_is_not_reported_live(
    api, client, alice, bob, dave, bob_assignment, tokenbay_key, action
):
    _, token = live_device(api, client, bob, bob_assignment)
    assert fetch(client, token).status_code == 200
    if action == "revoke":
        revoke_key(key=tokenbay_key, actor=alice)
    elif action == "disable":
        set_key_enabled(key=tokenbay_key, enabled=False, actor=alice)
    else:
        GatewayKey.objects.filter(pk=tokenbay_key.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert fetch(client, token).status_code == 403
    [row] = api(dave).get("/api/v1/devices/?team=web").json()["results"]
    expected_state = {"revoke": "revoked", "disable": "disabled", "expire": "expired"}[action]
    assert (row["state"], row["key_state"]) == ("refused", expected_state)
    [connection] = api(dave).get("/api/v1/connections/").json()["results"]
    assert connection["live_devices"] == 0
    assert not Device.objects.live().exists()
    client.force_login(bob)
    assert f"refused: key {expected_state}" in client.get("/devices/").content.decode()


def test_a_device_that_has_not_fetched_yet_does_not_make_a_never_rotated_row_stale(
    api, client, bob, dave, bob_assignment
):
    live_device(api, client, bob, bob_assignment)  # installed; its first fetch is still to come
    assert users_in(api, dave, "stale") == []
