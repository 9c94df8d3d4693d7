"""A key changes through one service per job: settings, secret, enabled; a PATCH combines them atomically."""

from __future__ import annotations

import inspect

import pytest

from gateways import services
from gateways.models import GatewayKey
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
