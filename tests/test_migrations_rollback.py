"""Migrations an operator may run backwards (rolling back one release) or forward over old data.

A reverse that would lose what a later upgrade cannot rebuild (a nonce under an event's hash, a mark that an
address is not confirmed) is refused with a sentence and leaves the schema as it was; a data migration over
old rows finishes whatever the rows hold.
"""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from gateways import devices
from gateways.models import GatewayKey
from gateways.services import rotate_key_secret
from portal import audit, audit_chain
from portal.models import Action, AuditEvent, UnconfirmedEmail
from tests.conftest import TOKENBAY_SECRET
from tests.test_migrations import historical_key

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

BEFORE_NONCES = [("portal", "0016_audit_rows_outlive_users")]
BEFORE_MARKS = [("portal", "0013_audit_drop_fk_indexes")]
BEFORE_FINGERPRINTS = [("gateways", "0016_expiries_within_the_calendar")]


def applied(app: str, name: str) -> bool:
    return (app, name) in MigrationExecutor(connection).loader.applied_migrations


def test_going_back_before_the_nonces_is_refused_while_an_event_carries_one(migrator, alice, web, capsys):
    event = audit.new_event(Action.MEMBER_REMOVED, actor=alice, team=web, target="bob")
    audit._queued(event, audit_chain.canonical_json(audit_chain.content_of(event)), audit_chain.get_keyring()).save()
    assert audit.seal_pending() == 1  # chained, its nonce under its hash
    with pytest.raises(CommandError, match="Cannot go back before portal 0017: 1 chained and 0 queued"):
        migrator.migrate(BEFORE_NONCES)
    assert applied("portal", "0017_queued_event_nonce")
    assert AuditEvent.objects.filter(nonce__isnull=False).count() == 1
    call_command("verify_audit")
    assert "intact" in capsys.readouterr().out


def test_going_back_before_the_nonces_works_when_no_event_was_ever_queued(migrator, alice):
    audit.record(Action.SIGN_IN, actor=alice)  # chained at once: no nonce
    migrator.migrate(BEFORE_NONCES)
    assert not applied("portal", "0017_queued_event_nonce")


def test_going_back_before_the_unconfirmed_marks_is_refused_while_one_stands(migrator, dave):
    dave.email = "dave@example.com"
    dave.save()
    UnconfirmedEmail.objects.create(user=dave, email=dave.email)
    with pytest.raises(CommandError, match=r"the e-mail address of 1 account\(s\) is not confirmed \(dave\)"):
        migrator.migrate(BEFORE_MARKS)
    assert applied("portal", "0014_unconfirmed_email")
    assert UnconfirmedEmail.objects.filter(user=dave).exists()


def _rotation_undone(client, bob, alice, assignment):
    """bob downloads the key's secret, which a mistaken rotation and a rotation back make its present one again."""
    client.force_login(bob)
    assert client.get(f"/api/v1/me/configs/{assignment.pk}/settings.json").status_code == 200
    key = rotate_key_secret(key=assignment.key, secret="sk-tokenbay-alice-rotated-0123456789", actor=alice)
    return rotate_key_secret(key=key, secret=TOKENBAY_SECRET, actor=alice)


def test_going_back_before_download_fingerprints_is_refused_while_one_decides_a_holder(
    migrator, client, bob, alice, bob_assignment
):
    """Only the fingerprint tells that bob's download, older than the last rotation, holds the present secret."""
    key = _rotation_undone(client, bob, alice, bob_assignment)
    assert devices.copies_out(key) == 1
    with pytest.raises(CommandError, match=r"Cannot go back before gateways 0017: 1 holder\(s\) downloaded a secret"):
        migrator.migrate(BEFORE_FINGERPRINTS)
    assert applied("gateways", "0017_assignment_download_fingerprint")
    assert devices.copies_out(GatewayKey.objects.get(pk=key.pk)) == 1


def test_going_back_before_download_fingerprints_works_when_the_times_say_the_same(
    migrator, client, bob, alice, bob_assignment
):
    _rotation_undone(client, bob, alice, bob_assignment)
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert client.get(f"/api/v1/me/configs/{bob_assignment.pk}/bash").status_code == 200  # after the rotations
    migrator.migrate(BEFORE_FINGERPRINTS)
    assert not applied("gateways", "0017_assignment_download_fingerprint")


class Hung(Exception):
    pass


@pytest.mark.parametrize("length", [100, 98])
def test_live_keys_sharing_a_long_label_are_numbered_without_hanging(migrator, length):
    """gateways 0007 numbered "label (2)"[:100], the label itself at 97 to 100 characters: migrate never ended."""
    before = [("gateways", "0006_rotation_and_probe_claims"), ("portal", "0010_channel_actions")]
    after = [("gateways", "0007_unique_label_per_team"), ("portal", "0010_channel_actions")]
    migrator.migrate(before)
    apps = migrator.loader.project_state(before).apps
    team = apps.get_model("portal", "Team").objects.create(name="Web", slug="web")
    gateway = apps.get_model("gateways", "Gateway").objects.get(slug="tokaify")
    GatewayKey, label = apps.get_model("gateways", "GatewayKey"), "x" * length
    ids = [historical_key(GatewayKey, team, gateway, label, n).pk for n in (1, 2, 3)]

    def hung(signum, frame):
        raise Hung("gateways 0007 was still numbering labels after 20 s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        MigrationExecutor(connection).migrate(after)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    labels = [GatewayKey.objects.get(pk=pk).label for pk in ids]
    assert labels[0] == label
    assert labels[1:] == ["x" * (100 - 4) + " (2)", "x" * (100 - 4) + " (3)"]
