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


START = timezone.now()


def historical_key(GatewayKey, team, gateway, label: str, n: int, *, revoked: bool = False):
    """A key row of the migration's own model (no secret: the data migrations read labels only), made n s apart."""
    return GatewayKey.objects.create(
        team=team,
        gateway=gateway,
        label=label,
        masked="sk-…",
        fingerprint=f"f{n}",
        created_at=START + timedelta(seconds=n),
        revoked_at=START if revoked else None,
    )


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

    def key(team, label, n, revoked=False):
        return historical_key(GatewayKey, team, gateway, label, n, revoked=revoked).pk

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


NAMES_BEFORE = [("gateways", "0011_revoked_keys_need_no_vault_key"), ("portal", "0019_team_names_in_reading_order")]
NAMES_AFTER = [("gateways", "0012_names_in_one_spelling"), ("portal", "0020_team_names_in_one_spelling")]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_names_stored_in_a_decomposed_spelling_are_rewritten_in_nfc(migrator):
    executor = migrator
    executor.migrate(NAMES_BEFORE)
    apps = executor.loader.project_state(NAMES_BEFORE).apps
    Team, Gateway, GatewayKey, Device, User = (
        apps.get_model(*name)
        for name in (
            ("portal", "Team"),
            ("gateways", "Gateway"),
            ("gateways", "GatewayKey"),
            ("gateways", "Device"),
            ("auth", "User"),
        )
    )
    decomposed, composed = "Cafe\u0301", "Caf\u00e9"
    team = Team.objects.create(name=f"{decomposed} team", slug="cafe")
    gateway = Gateway.objects.get(slug="tokaify")
    now = timezone.now()

    def key(label, n, revoked=False):
        return historical_key(GatewayKey, team, gateway, label, n, revoked=revoked)

    older_decomposed = key(decomposed, 1)  # older, but its spelling is not the stored one: it is the one numbered
    kept = key(composed, 2)
    alone = key(f"Laptop {decomposed}", 3)
    revoked = key(decomposed, 4, revoked=True)
    lengthened = "\u0958" * 100  # each is two characters in NFC: 200 would not fit the column
    at_the_limit = key(lengthened, 5)
    long_team = Team.objects.create(name=lengthened, slug="long")
    user = User.objects.create(username="bob")
    device = Device.objects.create(
        user=user,
        key=alone,
        name=f"{decomposed} laptop",
        platform="linux",
        install_lookup_id="lookup",
        install_digest="0" * 64,
        install_expires_at=now,
    )

    MigrationExecutor(connection).migrate(NAMES_AFTER)
    apps = MigrationExecutor(connection).loader.project_state(NAMES_AFTER).apps
    labels = dict(apps.get_model("gateways", "GatewayKey").objects.values_list("pk", "label"))
    assert labels[kept.pk] == composed
    assert labels[older_decomposed.pk] == f"{composed} (2)"  # two live keys may not share a label
    assert labels[alone.pk] == f"Laptop {composed}"
    assert labels[revoked.pk] == composed  # a revoked key gives its label up, so it may share it
    assert apps.get_model("gateways", "Device").objects.get(pk=device.pk).name == f"{composed} laptop"
    assert apps.get_model("portal", "Team").objects.get(pk=team.pk).name == f"{composed} team"
    assert labels[at_the_limit.pk] == lengthened  # kept as stored, still valid
    assert apps.get_model("portal", "Team").objects.get(pk=long_team.pk).name == lengthened


# --- Presets: 0002 is the pattern a later preset's migration follows ------------------------------------------


def test_the_presets_migration_leaves_a_gateway_staff_made_under_a_preset_slug_alone(api, staff, monkeypatch):
    import importlib

    from django.apps import apps as django_apps

    from gateways.models import Gateway

    presets = importlib.import_module("gateways.migrations.0002_presets")
    made = {
        "slug": "litellm",
        "name": "Our LiteLLM",
        "base_url": "https://llm.corp.example",
        "auth_scheme": "x-api-key",
    }
    assert api(staff).post("/api/v1/gateways/", made, format="json").status_code == 201
    later = {"slug": "litellm", "name": "LiteLLM proxy", "base_url": "https://litellm.example.com"}
    monkeypatch.setattr(presets, "PRESETS", [*presets.PRESETS, later])
    presets.add_presets(django_apps, None)
    kept = Gateway.objects.get(slug="litellm")
    assert (kept.name, kept.base_url, kept.is_preset) == ("Our LiteLLM", "https://llm.corp.example", False)
    presets.remove_presets(django_apps, None)  # rolling the preset back
    assert Gateway.objects.filter(slug="litellm").exists()
    assert not Gateway.objects.filter(slug="tokaify").exists()  # a preset no key uses goes, as before
