"""Data migrations, run for real: forward from the migration before them, on rows they must fix."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

# portal as it stood when gateways 0007 was written, on both sides; the `migrator` fixture brings every app
# back to its latest migration afterwards.
BEFORE = [("gateways", "0006_rotation_and_probe_claims"), ("portal", "0010_channel_actions")]
AFTER = [("gateways", "0007_unique_label_per_team"), ("portal", "0010_channel_actions")]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_labels_shared_before_the_constraint_are_numbered_in_creation_order(migrator):
    executor = migrator
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    Team, Gateway, GatewayKey = (
        apps.get_model(*name) for name in (("portal", "Team"), ("gateways", "Gateway"), ("gateways", "GatewayKey"))
    )
    web, data = Team.objects.create(name="Web", slug="web"), Team.objects.create(name="Data", slug="data")
    gateway = Gateway.objects.get(slug="tokaify")
    now = timezone.now()

    def key(team, label, n, revoked=False):
        return GatewayKey.objects.create(
            team=team,
            gateway=gateway,
            label=label,
            masked="sk-…",
            fingerprint=f"f{n}",
            created_at=now + timedelta(seconds=n),
            revoked_at=now if revoked else None,
        ).pk

    first, second, third = key(web, "CI", 1), key(web, "CI", 2), key(web, "CI", 3)
    taken = key(web, "CI (2)", 4)  # the obvious new name is taken already
    revoked = key(web, "Laptop", 5, revoked=True)
    live = key(web, "Laptop", 6)
    other_team = key(data, "CI", 7)

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    labels = dict(apps.get_model("gateways", "GatewayKey").objects.values_list("pk", "label"))
    assert labels[first] == "CI" and labels[taken] == "CI (2)"
    assert {labels[second], labels[third]} == {"CI (3)", "CI (4)"} and labels[second] == "CI (3)"
    assert labels[revoked] == "Laptop" and labels[live] == "Laptop"  # a revoked key does not count
    assert labels[other_team] == "CI"  # unique per team only
