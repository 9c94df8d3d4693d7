"""A key changes through one service per job: settings, secret, enabled; a PATCH combines them atomically."""

from __future__ import annotations

import inspect
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from gateways import devices, services
from gateways.models import GatewayKey
from gateways.probes.probe import ProbeOutcome
from gateways.probes.runner import save_outcome
from portal.models import Action, AuditEvent
from tests.conftest import TOKAIFY_SECRET

pytestmark = pytest.mark.django_db

JOBS = [services.update_key_settings, services.rotate_key_secret, services.set_key_enabled]


@pytest.mark.parametrize("job", JOBS, ids=lambda f: f.__name__)
def test_each_key_job_takes_keyword_arguments_only(job):
    parameters = inspect.signature(job).parameters.values()
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters)
    assert not hasattr(services, "update_key")


def key_events(key) -> list[str]:
    return list(
        AuditEvent.objects.filter(gateway_slug=key.gateway.slug, action__startswith="key.")
        .exclude(action=Action.KEY_CREATED)
        .order_by("id")
        .values_list("action", flat=True)
    )


def test_one_patch_disables_rotates_and_relabels_in_that_order(api, alice, tokenbay_key):
    response = api(alice).patch(
        f"/api/v1/keys/{tokenbay_key.id}/",
        {"is_enabled": False, "secret": "sk-tokenbay-new-0000000000", "label": "Renamed"},
        format="json",
    )
    assert response.status_code == 200
    key = GatewayKey.objects.get(pk=tokenbay_key.pk)
    assert (key.is_enabled, key.label, key.reveal_secret()) == (False, "Renamed", "sk-tokenbay-new-0000000000")
    assert key_events(key) == [Action.KEY_DISABLED, Action.KEY_ROTATED, Action.KEY_UPDATED]


def test_a_patch_refused_in_one_part_changes_nothing(api, alice, tokenbay_key, tokaify_key):
    before = GatewayKey.objects.get(pk=tokenbay_key.pk)
    response = api(alice).patch(
        f"/api/v1/keys/{tokenbay_key.id}/",
        {"is_enabled": False, "label": "Renamed", "secret": TOKAIFY_SECRET},  # that secret is stored already
        format="json",
    )
    assert response.status_code == 400 and response.json()["field"] == "secret"
    after = GatewayKey.objects.get(pk=tokenbay_key.pk)
    assert (after.is_enabled, after.label, after.fingerprint) == (True, before.label, before.fingerprint)
    assert key_events(after) == []


def test_settings_that_do_not_change_leave_downloads_fresh(alice, tokenbay_key):
    stamp = tokenbay_key.config_changed_at
    key = services.update_key_settings(key=tokenbay_key, changes={"label": tokenbay_key.label}, actor=alice)
    assert key.config_changed_at == stamp and key_events(key) == []
    key = services.set_key_enabled(key=key, enabled=False, actor=alice)
    assert key.config_changed_at == stamp  # disabling stops downloads; it does not change a config
    key = services.rotate_key_secret(key=key, secret="sk-tokenbay-other-000000000", actor=alice)
    assert key.config_changed_at > stamp


def _jsonl(response) -> list[dict]:
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def test_every_row_about_a_key_names_its_id_and_a_rotation_names_the_fingerprint_it_replaced(
    client, staff, alice, bob, tokenbay_key
):
    """An auditor follows one key through the export: each row's target names the secret in force then, which a
    rotation changes, and the label changes with a relabel, so every row about the key carries its id."""
    key = tokenbay_key
    first_fingerprint = key.short_fingerprint
    assignment = services.assign_key(key=key, username="bob", actor=alice)
    services.deliver_config(assignment=assignment, format_name="bash")
    device, code = devices.create_device(assignment=assignment, name="bob mac", platform="macos", actor=bob)
    _device, device_token = devices.install_device(code=code, request=None, render=lambda _device, raw: raw)
    devices.fetch_key(raw_token=device_token, request=None)
    save_outcome(key, ProbeOutcome(verdict="ok", status_code=200), trigger="api", user=alice)
    services.set_key_enabled(key=key, enabled=False, actor=alice)
    assignment.key.refresh_from_db()
    with pytest.raises(services.ConfigUnavailable):
        services.usable_config(assignment=assignment, format_name="bash")
    with pytest.raises(devices.DeviceRefused):
        devices.fetch_key(raw_token=device_token, request=None)
    services.set_key_enabled(key=key, enabled=True, actor=alice)
    key = services.rotate_key_secret(key=key, secret="sk-tokenbay-new-0000000000", actor=alice)
    devices.fetch_key(raw_token=device_token, request=None)  # the first fetch of the new secret: a row
    key = services.update_key_settings(key=key, changes={"label": "CI main"}, actor=alice)
    own = services.assign_key(key=key, username="alice", actor=alice)
    services.remove_assignment(assignment=own, actor=alice)
    devices.remove_device(device=device, actor=alice)
    GatewayKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert services.record_expirations() == 1
    services.revoke_key(key=GatewayKey.objects.get(pk=key.pk), actor=alice)

    client.force_login(staff)
    rows = [r for r in _jsonl(client.get("/audit/?export=jsonl")) if r["gateway"] == "tokenbay"]
    assert {r["action"] for r in rows} >= {
        "key.created",
        "assignment.created",
        "config.downloaded",
        "device.created",
        "device.installed",
        "device.key_fetched",
        "probe.run",
        "key.disabled",
        "config.refused",
        "device.fetch_refused",
        "key.enabled",
        "key.rotated",
        "key.updated",
        "assignment.self_assigned",
        "assignment.removed",
        "device.removed",
        "key.expired",
        "key.revoked",
    }
    assert [(r["action"], r["target"]) for r in rows if r["details"].get("key_id") != str(key.pk)] == []
    assert {r["target"] for r in rows} == {first_fingerprint, key.short_fingerprint}
    [rotated] = [r for r in rows if r["action"] == "key.rotated"]
    assert rotated["target"] == key.short_fingerprint != first_fingerprint
    assert rotated["details"]["previous_fingerprint"] == first_fingerprint
    assert rotated["details"]["from"] != rotated["details"]["to"]  # the masked forms, as before
