"""A queued audit event is chained once: a copy of its queue row, made in the database, is refused and named.

On PostgreSQL an event is queued (PendingAuditEvent) while another writer holds the chain's head; the
tests that need that run there. The others queue an event the way such a writer does (audit._queued),
which SQLite can do as well.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from portal import audit, audit_chain
from portal.models import Action, AuditChainHead, AuditEvent, PendingAuditEvent

ON_POSTGRESQL = os.getenv("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
NEEDS_POSTGRESQL = pytest.mark.skipif(
    not ON_POSTGRESQL,
    reason="a queue needs a head held by another connection: SQLite has one writer; CI runs this on PostgreSQL",
)

pytestmark = pytest.mark.django_db

QUEUE = PendingAuditEvent._meta.db_table
EVENTS = AuditEvent._meta.db_table


def sql(statement, params=()):
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def queue_columns(*, without=()) -> str:
    return ", ".join(
        f.column for f in PendingAuditEvent._meta.concrete_fields if f.column != "id" and f.column not in without
    )


def queue(event: AuditEvent) -> PendingAuditEvent:
    """Queue an event exactly as a writer that found the head taken does."""
    keyring = audit_chain.get_keyring()
    row = audit._queued(event, audit_chain.canonical_json(audit_chain.content_of(event)), keyring)
    row.save()
    return row


def copy_queued(row_id: int, *, without=()) -> PendingAuditEvent:
    """What an insider with the database (not the audit key) can do: INSERT … SELECT the queued row."""
    columns = queue_columns(without=without)
    sql(f"INSERT INTO {QUEUE} ({columns}) SELECT {columns} FROM {QUEUE} WHERE id = %s", [row_id])
    return PendingAuditEvent.objects.order_by("-id").first()


def verify_fails(match: str) -> None:
    with pytest.raises(CommandError, match=match):
        call_command("verify_audit")


def chained(action: str) -> int:
    return AuditEvent.objects.filter(action=action).count()


@pytest.fixture
def queued(alice, web):
    audit.record(Action.SIGN_IN, actor=alice)
    return queue(audit.new_event(Action.MEMBER_REMOVED, actor=alice, team=web, target="bob"))


def test_each_queued_event_has_a_nonce_of_its_own_that_goes_into_the_chain(alice, web, capsys):
    audit.record(Action.SIGN_IN, actor=alice)
    rows = [queue(audit.new_event(Action.MEMBER_REMOVED, actor=alice, team=web, target="bob")) for _ in range(3)]
    nonces = [row.nonce for row in rows]
    assert len(set(nonces)) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", n) for n in nonces)
    call_command("verify_audit")
    assert "3 more wait to be chained" in capsys.readouterr().out
    assert audit.seal_pending() == 3
    assert list(AuditEvent.objects.order_by("id").values_list("nonce", flat=True)) == [None, *nonces]
    call_command("verify_audit")
    assert "intact: 4 event(s)" in capsys.readouterr().out


def test_a_whole_copy_of_a_queued_row_is_refused_by_the_database(queued):
    with pytest.raises(IntegrityError), transaction.atomic():
        copy_queued(queued.id)
    assert PendingAuditEvent.objects.count() == 1


def test_a_copy_without_its_nonce_is_named_and_never_chained(queued):
    copy = copy_queued(queued.id, without=("nonce",))
    verify_fails(rf"queue row {copy.id}\) does not hold: it carries no nonce")
    assert audit.seal_pending() == 1
    assert chained(Action.MEMBER_REMOVED) == 1
    assert list(PendingAuditEvent.objects.values_list("id", "rejected")) == [(copy.id, True)]
    verify_fails(rf"queue row {copy.id}\) does not hold: it was refused on its way into the chain")


def test_a_copy_made_after_dropping_the_unique_index_is_named_and_chained_once(queued):
    sql("DROP INDEX pending_audit_nonce_once")  # the insider owns the database: the index is no proof
    copy = copy_queued(queued.id)
    assert copy.nonce == queued.nonce
    verify_fails(rf"queue row {copy.id}\) does not hold: its nonce is also on queue row {queued.id}")
    assert audit.seal_pending() == 1
    assert chained(Action.MEMBER_REMOVED) == 1
    assert list(PendingAuditEvent.objects.values_list("id", "rejected")) == [(copy.id, True)]
    event = AuditEvent.objects.get(action=Action.MEMBER_REMOVED)
    verify_fails(rf"queue row {copy.id}\) does not hold: .*its nonce is already on chained event {event.id}")


def test_a_queued_row_put_back_after_it_was_chained_is_refused_and_named(queued):
    columns = queue_columns()
    with connection.cursor() as cursor:  # what an insider reading the queue keeps
        cursor.execute(f"SELECT {columns} FROM {QUEUE} WHERE id = %s", [queued.id])
        kept = cursor.fetchone()
    assert audit.seal_pending() == 1
    call_command("verify_audit")
    placeholders = ", ".join(["%s"] * len(kept))
    sql(f"INSERT INTO {QUEUE} ({columns}) VALUES ({placeholders})", list(kept))
    put_back = PendingAuditEvent.objects.get()
    event = AuditEvent.objects.get(action=Action.MEMBER_REMOVED)
    verify_fails(rf"queue row {put_back.id}\) does not hold: its nonce is already on chained event {event.id}")
    assert audit.seal_pending() == 0
    assert chained(Action.MEMBER_REMOVED) == 1
    assert PendingAuditEvent.objects.get().rejected
    verify_fails(rf"queue row {put_back.id}\) does not hold: it was refused .*already on chained event {event.id}")


def test_a_queued_rows_nonce_cannot_be_changed_without_the_key(queued):
    sql(f"UPDATE {QUEUE} SET nonce = %s WHERE id = %s", ["0" * 32, queued.id])
    verify_fails(rf"queue row {queued.id}\) does not hold: its signature does not match")
    assert audit.seal_pending() == 0
    assert chained(Action.MEMBER_REMOVED) == 0


def test_a_chained_events_nonce_is_covered_by_its_hash(queued):
    audit.seal_pending()
    event = AuditEvent.objects.get(action=Action.MEMBER_REMOVED)
    sql(f"UPDATE {EVENTS} SET nonce = NULL WHERE id = %s", [event.id])
    verify_fails(f"broken at event {event.id}: its content no longer matches its hash")
    sql(f"UPDATE {EVENTS} SET nonce = %s WHERE id = %s", [queued.nonce, event.id])
    call_command("verify_audit")
    first = AuditEvent.objects.get(action=Action.SIGN_IN)  # chained directly: no nonce, and none may be added
    assert first.nonce is None
    sql(f"UPDATE {EVENTS} SET nonce = %s WHERE id = %s", ["1" * 32, first.id])
    verify_fails(f"broken at event {first.id}: its content no longer matches its hash")


def test_an_event_without_a_nonce_hashes_as_before_nonces_existed():
    event = AuditEvent(
        created_at=datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=UTC),
        actor_id=7,
        actor_username="bob",
        action=Action.CONFIG_DOWNLOADED,
        team_id=3,
        team_slug="web",
        gateway_slug="tokaify",
        target="abcd1234",
        ip_address="203.0.113.9",
        user_agent="curl/8.0",
        details={"format": "bash", "label": "laptop"},
        prev_hash="0" * 64,
    )
    # Computed by the code before queued events had nonces.
    assert event.compute_hash() == "a31dfa375bdb8763c98ed3545bada04baad06aee655e03de0184aef1246874cf"


# --- Upgrading: the chain and the queue as the code before nonces left them ----------------------------

BEFORE_NONCES = ("portal", "0016_audit_rows_outlive_users")


def legacy_pending_signature(keyring, content_text: str) -> tuple[str, str]:
    """A queued row's signature as the code before nonces made it (frozen here): over its content alone."""
    return audit_chain.sign(keyring, hashlib.sha256(content_text.encode()).hexdigest(), audit_chain.PENDING_CONTEXT)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_chain_and_queue_from_before_nonces_verify_and_seal_after_the_upgrade(capsys, migrator):
    executor = migrator
    executor.migrate([BEFORE_NONCES])
    old = executor.loader.project_state([BEFORE_NONCES]).apps
    Event, Pending, Head = (
        old.get_model("portal", name) for name in ("AuditEvent", "PendingAuditEvent", "AuditChainHead")
    )
    keyring = audit_chain.get_keyring()
    prev = ""
    for n in range(3):  # a chain written as the code before nonces wrote it
        event = Event(created_at=timezone.now(), action=Action.SIGN_IN, actor_username="alice", details={"n": n})
        event.prev_hash = prev
        event.hash = prev = audit_chain.link_hash(prev, audit_chain.content_of(event))
        event.signature, event.signing_key_id = audit_chain.sign(keyring, event.hash)
        event.save()
    Head.objects.create(pk=1, last_hash=prev)

    def legacy_queued(target, *, chained_copy_of=None):
        row = Pending(created_at=timezone.now(), action=Action.MEMBER_REMOVED, actor_username="alice", target=target)
        if chained_copy_of is not None:
            for name in ("created_at", "action", "actor_username", "target", "details"):
                setattr(row, name, getattr(chained_copy_of, name))
        row.signature, row.signing_key_id = legacy_pending_signature(
            keyring, audit_chain.canonical_json(audit_chain.content_of(row))
        )
        row.save()
        return row.id

    waiting = legacy_queued("bob")
    copy = Pending.objects.get(pk=waiting)  # a copy made before the upgrade: same content, same signature
    copy.pk = None
    copy.save()
    forged = legacy_queued("carol")
    Pending.objects.filter(pk=forged).update(target="mallory")
    replayed = legacy_queued("", chained_copy_of=Event.objects.order_by("id").last())

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    rows = {row.id: row for row in PendingAuditEvent.objects.all()}
    assert rows[waiting].nonce and not rows[waiting].rejected
    assert [rows[pk].rejected for pk in (copy.pk, forged, replayed)] == [True, True, True]
    assert audit.seal_pending() == 1
    assert AuditEvent.objects.filter(action=Action.MEMBER_REMOVED).get().nonce == rows[waiting].nonce
    assert set(PendingAuditEvent.objects.values_list("id", flat=True)) == {copy.pk, forged, replayed}
    PendingAuditEvent.objects.all().delete()  # the refused rows looked into and cleared: the rest holds
    call_command("verify_audit")
    assert "intact: 4 event(s)" in capsys.readouterr().out


# --- On PostgreSQL: a download queued behind a held head ------------------------------------------


@NEEDS_POSTGRESQL
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_download_queued_behind_a_held_head_is_chained_once_however_its_row_is_copied(api, bob, bob_assignment):
    client = api(bob)
    assert client.get(f"/api/v1/me/configs/{bob_assignment.id}/bash").status_code == 200
    downloads = chained(Action.CONFIG_DOWNLOADED)
    holding, release = threading.Event(), threading.Event()

    def hold_the_head():
        with transaction.atomic():
            AuditChainHead.objects.select_for_update().get(pk=1)
            holding.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold_the_head)
    holder.start()
    assert holding.wait(10)
    try:
        assert client.get(f"/api/v1/me/configs/{bob_assignment.id}/zsh").status_code == 200
        row = PendingAuditEvent.objects.get(action=Action.CONFIG_DOWNLOADED)
        assert re.fullmatch(r"[0-9a-f]{32}", row.nonce)
        columns = queue_columns()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {columns} FROM {QUEUE} WHERE id = %s", [row.id])
            kept = cursor.fetchone()
        copy = copy_queued(row.id, without=("nonce",))
        verify_fails(rf"queue row {copy.id}\) does not hold: it carries no nonce")
    finally:
        release.set()
        holder.join(10)
    assert audit.seal_pending() == 1
    assert chained(Action.CONFIG_DOWNLOADED) == downloads + 1
    PendingAuditEvent.objects.filter(pk=copy.id).delete()
    call_command("verify_audit")
    placeholders = ", ".join(["%s"] * len(kept))
    sql(f"INSERT INTO {QUEUE} ({columns}) VALUES ({placeholders})", list(kept))
    # The next download's after-commit seal meets the row put back, and refuses it.
    assert client.get(f"/api/v1/me/configs/{bob_assignment.id}/fish").status_code == 200
    assert chained(Action.CONFIG_DOWNLOADED) == downloads + 2
    assert PendingAuditEvent.objects.get().rejected
    verify_fails("its nonce is already on chained event")


# --- A queue row whose writer died, carried to SQLite by a move -------------------------------------------------

ROLLED_AUDIT_KEY = base64.urlsafe_b64encode(b"m" * 32).decode()


def test_a_queue_row_whose_writer_died_is_chained_by_the_next_writer_after_a_move(
    alice, web, settings, capsys, django_capture_on_commit_callbacks
):
    """On PostgreSQL the seal after each commit chains it; SQLite runs none, so its next writer chains it."""
    with django_capture_on_commit_callbacks(execute=True):  # the test's transaction never commits
        audit.record(Action.SIGN_IN, actor=alice)
        left = queue(audit.new_event(Action.MEMBER_REMOVED, actor=alice, team=web, target="bob"))  # then it died
        audit.record(Action.SIGN_OUT, actor=alice)
    assert not PendingAuditEvent.objects.exists()
    assert AuditEvent.objects.get(action=Action.MEMBER_REMOVED).nonce == left.nonce
    if not ON_POSTGRESQL:  # one writer, in its own transaction: the older event first
        assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
            Action.SIGN_IN,
            Action.MEMBER_REMOVED,
            Action.SIGN_OUT,
        ]
    call_command("verify_audit")
    checked = capsys.readouterr().out
    assert "intact: 3 event(s)" in checked and "wait to be chained" not in checked

    if ON_POSTGRESQL:  # the command counts what waits after its commit, which the seal follows there
        return
    # An audit key rotation finishes too: the queue it looks at is empty, not "a server on the old keyring".
    queue(audit.new_event(Action.MEMBER_REMOVED, actor=alice, team=web, target="carol"))
    settings.PORTAL_AUDIT_KEYS = f"{ROLLED_AUDIT_KEY},{settings.PORTAL_AUDIT_KEYS}"
    call_command("rotate_audit_key")
    assert "now signed with audit key" in capsys.readouterr().out
    assert not PendingAuditEvent.objects.exists()
