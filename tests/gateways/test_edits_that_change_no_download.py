"""Edits that change nothing a download sets, or a probe tested: a key's label or expiry, a gateway's name, notes
or probe settings. A failing key stays failing (its latest probe still tells the truth about it), and a file
downloaded before is byte for byte what a download now gives, so nobody is told to download or install again.
Only a rotation, a key's overrides and its gateway's INSTALLED_GATEWAY_FIELDS stamp config_changed_at.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from gateways.dashboard import dashboard_for
from gateways.devices import create_device, fetch_key, install_device
from gateways.models import GatewayKey
from gateways.services import assign_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def failing_key(tokenbay_key, alice, bob):
    assign_key(key=tokenbay_key, username="bob", actor=alice)
    GatewayKey.objects.filter(pk=tokenbay_key.pk).update(last_probe_verdict="auth_failed", last_probe_at=timezone.now())
    return GatewayKey.objects.get(pk=tokenbay_key.pk)


def failing_seen(api, alice, key) -> dict:
    failing = next(s for s in dashboard_for(alice) if s.slug == "failing")
    rows = api(alice).get("/api/v1/connections/", {"state": "failing"}).json()["results"]
    [row] = api(alice).get("/api/v1/connections/", {"team": "web"}).json()["results"]
    return {
        "dashboard": [k.pk for k in failing.rows] == [key.pk],
        "connections_failing": len(rows) == 1,
        "latest_verdict": row["latest_verdict"],
        "is_failing": GatewayKey.objects.get(pk=key.pk).is_failing,
    }


TRUE = {"dashboard": True, "connections_failing": True, "latest_verdict": "auth_failed", "is_failing": True}


def test_a_failing_key_is_seen_failing(api, alice, failing_key):
    assert failing_seen(api, alice, failing_key) == TRUE


def test_relabelling_a_failing_key_keeps_it_failing(api, alice, failing_key):
    answer = api(alice).patch(f"/api/v1/keys/{failing_key.id}/", {"label": "Bob old laptop"}, format="json")
    assert answer.status_code == 200, answer.content
    assert failing_seen(api, alice, failing_key) == TRUE


def test_renewing_the_expiry_of_a_failing_key_keeps_it_failing(api, alice, failing_key):
    later = (timezone.now() + timedelta(days=200)).isoformat()
    answer = api(alice).patch(f"/api/v1/keys/{failing_key.id}/", {"expires_at": later}, format="json")
    assert answer.status_code == 200, answer.content
    assert failing_seen(api, alice, failing_key) == TRUE


def test_renaming_the_gateway_keeps_its_failing_keys_failing(api, alice, staff, failing_key):
    answer = api(staff).patch("/api/v1/gateways/tokenbay/", {"name": "TokenBay (EU)"}, format="json")
    assert answer.status_code == 200, answer.content
    assert failing_seen(api, alice, failing_key) == TRUE


FORMATS = ["settings.json", "bash", "install.sh"]


def downloads(client, assignment) -> dict:
    return {f: client.get(f"/api/v1/me/configs/{assignment.id}/{f}").content for f in FORMATS}


def told(api, alice, bob) -> dict:
    [config] = api(bob).get("/api/v1/me/configs/").json()["results"]
    stale = api(alice).get("/api/v1/connections/", {"state": "stale"}).json()["results"]
    return {"notice": config["notice"], "stale": [row["user"] for row in stale]}


@pytest.mark.parametrize(
    "change",
    ["expiry", "probe_interval"],
)
def test_a_change_no_file_holds_leaves_the_download_current(api, alice, bob, staff, bob_assignment, change):
    as_bob = api(bob)
    before = downloads(as_bob, bob_assignment)
    assert told(api, alice, bob) == {"notice": None, "stale": []}

    if change == "expiry":
        later = (timezone.now() + timedelta(days=365)).isoformat()
        answer = api(alice).patch(f"/api/v1/keys/{bob_assignment.key.id}/", {"expires_at": later}, format="json")
    else:
        answer = api(staff).patch("/api/v1/gateways/tokenbay/", {"probe_interval_minutes": 30}, format="json")
    assert answer.status_code == 200, answer.content

    result = told(api, alice, bob)  # read before downloading again, which would clear it
    # The files are the same as before the change ...
    assert downloads(api(bob), bob_assignment) == before
    # ... so nothing asks the holder to fetch them again.
    assert result == {"notice": None, "stale": []}


def test_a_relabel_does_not_tell_the_holder_to_reinstall_a_device_that_needs_nothing(api, alice, bob, bob_assignment):
    """A label change asks no device to install again (README, Live keys), on My devices and My set-up alike."""
    as_bob = api(bob)
    assert as_bob.get(f"/api/v1/me/configs/{bob_assignment.id}/bash").status_code == 200
    _, code = create_device(assignment=bob_assignment, name="work laptop", platform="linux", actor=bob)
    _, token = install_device(code=code, request=None, render=lambda d, t: t)
    fetch_key(raw_token=token, request=None)

    answer = api(alice).patch(f"/api/v1/keys/{bob_assignment.key.id}/", {"label": "Bob old laptop"}, format="json")
    assert answer.status_code == 200, answer.content

    [listed] = as_bob.get("/api/v1/devices/").json()["results"]
    assert listed["needs_reinstall"] is False  # My devices: nothing to do
    [config] = as_bob.get("/api/v1/me/configs/").json()["results"]
    sentence = (config["notice"] or {}).get("sentence", "")
    assert "run the install command again" not in sentence, sentence


def test_a_change_of_an_override_still_makes_the_download_stale_and_voids_the_verdict(api, alice, failing_key):
    answer = api(alice).patch(f"/api/v1/keys/{failing_key.id}/", {"timeout_ms": 600000}, format="json")
    assert answer.status_code == 200, answer.content
    key = GatewayKey.objects.get(pk=failing_key.pk)
    assert not key.is_failing  # the probe tested other settings: no verdict counts until the next probe
    assert key.config_changed_at > key.last_probe_at
