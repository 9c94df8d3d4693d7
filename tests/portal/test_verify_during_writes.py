"""verify_audit run while the portal is in use reports an intact chain as intact.

README ("Audit trail") says to run it on a schedule and keep its head, so it reads the chain while
downloads chain events. It reads the head first and walks the events after: an event chained
between the two is no break, nor is a queued event chained while it reads the queue. Deleting the
newest events, or moving the head back, still shows.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx
import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from portal import audit, audit_chain
from portal.models import Action, AuditChainHead, AuditEvent, PendingAuditEvent
from tests.test_concurrency import SEED_DEVELOPERS, manage, portal  # noqa: F401 (portal: a fixture)

HEAD_TABLE = AuditChainHead._meta.db_table
EVENT_TABLE = AuditEvent._meta.db_table
QUEUE_TABLE = PendingAuditEvent._meta.db_table


def sql(statement: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


@contextmanager
def before_statement(after: Callable[[str], bool], write: Callable[[], object], *, times: int = 1) -> Iterator[None]:
    """Run `write` (another server's commit, as it were) just before the statement that follows one `after` matches.

    Whatever statements verify_chain uses, `write` lands in the gap between them, where another writer's
    commit can fall in production.
    """
    state = {"armed": False, "busy": False, "left": times}

    def wrapper(execute, sql, params, many, context):
        if state["busy"]:  # the write's own statements
            return execute(sql, params, many, context)
        if state["armed"] and state["left"]:
            state.update(armed=False, busy=True)
            try:
                write()
            finally:
                state["busy"] = False
                state["left"] -= 1
        result = execute(sql, params, many, context)
        if after(sql):
            state["armed"] = True
        return result

    with connection.execute_wrapper(wrapper):
        yield
    assert state["left"] == 0, "the write never ran: the statement it follows was not seen"


def reads(table: str, sql: str) -> bool:
    return sql.lstrip().upper().startswith("SELECT") and table in sql


def reads_the_head(sql: str) -> bool:
    return reads(HEAD_TABLE, sql)


def walks_the_chain(sql: str) -> bool:
    return reads(EVENT_TABLE, sql) and "ORDER BY" in sql.upper() and QUEUE_TABLE not in sql


def verify(capsys, *args: str) -> str:
    call_command("verify_audit", *args)
    return capsys.readouterr().out


def head_in(out: str) -> str:
    return out.split("Head: ")[1].strip()


@pytest.fixture
def chain(alice):
    for _ in range(3):
        audit.record(Action.TOKEN_ISSUED, actor=alice)
    return list(AuditEvent.objects.order_by("id"))


@pytest.mark.django_db
def test_an_event_chained_right_after_the_head_is_read_is_no_break(chain, alice, capsys):
    with before_statement(reads_the_head, lambda: audit.record(Action.SIGN_IN, actor=alice)):
        out = verify(capsys)
    assert "The audit chain is intact: 3 event(s) checked." in out
    assert "1 event(s) chained while it ran follow the head below" in out
    assert head_in(out) == chain[-1].hash  # the head it read, which the walk reached
    again = verify(capsys)  # the next run reaches the newer event
    assert "intact: 4 event(s) checked." in again and "while it ran" not in again
    assert head_in(again) == AuditEvent.objects.order_by("-id").first().hash


@pytest.mark.django_db
def test_a_kept_head_still_verifies_while_events_are_chained(chain, alice, capsys):
    kept = head_in(verify(capsys))
    audit.record(Action.SIGN_IN, actor=alice)
    with before_statement(reads_the_head, lambda: audit.record(Action.SIGN_IN, actor=alice)):
        out = verify(capsys, "--expect-head", kept)
    assert "intact: 4 event(s) checked." in out and "1 event(s) chained while it ran follow the head below" in out


@pytest.mark.django_db
def test_deleting_the_newest_event_right_after_the_head_is_read_still_shows(chain):
    """The head names an event the walk never reaches: that is events missing, not events chained meanwhile."""

    def delete_the_newest() -> None:
        sql(f"DELETE FROM {EVENT_TABLE} WHERE id = %s", [chain[-1].id])

    missing = "at the end of the chain: events at the end of the chain are missing"
    with before_statement(reads_the_head, delete_the_newest), pytest.raises(CommandError, match=missing):
        call_command("verify_audit")


@pytest.mark.django_db
def test_an_unsigned_event_added_after_the_head_still_shows(chain, alice):
    """An insider without the key adds an event and leaves the head: it is walked, and its signature fails."""
    forged = audit.new_event(Action.SIGN_IN, actor=alice)
    forged.prev_hash = chain[-1].hash
    forged.hash = forged.compute_hash()
    forged.signature, forged.signing_key_id = "0" * 64, chain[-1].signing_key_id
    forged.save()
    with pytest.raises(CommandError, match=f"broken at event {forged.id}"):
        call_command("verify_audit")


@pytest.mark.django_db
def test_moving_the_head_back_still_shows(chain):
    AuditChainHead.objects.filter(pk=1).update(last_hash=chain[0].hash)
    with pytest.raises(CommandError, match=r"broken at the end of the chain: its head is behind its newest events"):
        call_command("verify_audit")


@pytest.mark.django_db
def test_a_prune_committed_right_after_the_head_is_read_is_no_break(alice, tmp_path, capsys):
    """prune_audit moves the chain's start while verify_audit runs (both from cron, at the same minute)."""
    with time_machine.travel(timezone.now() - timedelta(days=400), tick=False):
        for _ in range(3):
            audit.record(Action.SIGN_IN, actor=alice)
    audit.record(Action.SIGN_OUT, actor=alice)
    cutoff = (timezone.now() - timedelta(days=30)).date().isoformat()

    def prune() -> None:
        call_command("prune_audit", "--before", cutoff, "--output", str(tmp_path / "old.jsonl"), stdout=io.StringIO())

    with before_statement(reads_the_head, prune):
        out = verify(capsys)
    assert "The audit chain is intact: 2 event(s) checked." in out  # what the prune left: sign-out, audit.pruned
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == ["auth.sign_out", "audit.pruned"]


def queue(event: AuditEvent) -> PendingAuditEvent:
    """Queue an event as a writer that found the head taken does (on PostgreSQL, under load)."""
    keyring = audit_chain.get_keyring()
    row = audit._queued(event, audit_chain.canonical_json(audit_chain.content_of(event)), keyring)
    row.save()
    return row


@pytest.mark.django_db
@pytest.mark.parametrize("moment", ["after-the-head-is-read", "after-the-chain-is-walked", "between-the-queue-reads"])
def test_a_queued_event_chained_while_verify_runs_is_no_copy_and_not_missing(chain, alice, web, capsys, moment):
    """The queue's sealer commits between two of verify's reads: the event is in the chain or the queue, once."""
    queue(audit.new_event(Action.MEMBER_REMOVED, actor=alice, team=web, target="bob"))
    queue_reads = []

    def after(sql: str) -> bool:
        if moment == "after-the-head-is-read":
            return reads_the_head(sql)
        if moment == "after-the-chain-is-walked":
            return walks_the_chain(sql)
        if reads(QUEUE_TABLE, sql):
            queue_reads.append(sql)
            return len(queue_reads) == 1
        return False

    with before_statement(after, audit.seal_pending):
        out = verify(capsys)
    assert PendingAuditEvent.objects.count() == 0 and AuditEvent.objects.count() == 4  # it was sealed meanwhile
    assert "The audit chain is intact: 3 event(s) checked." in out
    assert "wait to be chained" not in out


@pytest.mark.django_db
def test_a_queued_event_waiting_is_counted_as_before(chain, alice, web, capsys):
    queue(audit.new_event(Action.MEMBER_REMOVED, actor=alice, team=web, target="bob"))
    out = verify(capsys)
    assert "intact: 3 event(s) checked." in out and "1 more wait to be chained" in out


# --- For real: gunicorn with production settings, developers downloading, verify_audit from cron ------------

VERIFY_WHILE_DOWNLOADING = """
import io, json, time
from django.core.management import CommandError, call_command
failures, runs, deadline = [], 0, time.monotonic() + {seconds}
while time.monotonic() < deadline:
    runs += 1
    try:
        call_command("verify_audit", stdout=io.StringIO())
    except CommandError as exc:
        failures.append(str(exc))
print("VERIFIED " + json.dumps({{"runs": runs, "failures": failures[:3], "failed": len(failures)}}))
"""


@pytest.mark.concurrency
def test_verify_audit_while_developers_download_finds_the_chain_intact(portal):  # noqa: F811
    """gunicorn as deployed, four developers downloading over and over, verify_audit run again and again meanwhile."""
    base, _, env = portal
    seeded = manage(
        "shell", "-c", SEED_DEVELOPERS.format(base_url="http://127.0.0.1:9", developers=4, probed_keys=0), env=env
    )
    developers = json.loads(seeded.split("SEEDED ", 1)[1])
    stop = threading.Event()
    statuses: list[int] = []

    def download(developer) -> None:
        assignment, token = developer
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            while not stop.is_set():
                statuses.append(client.get(f"/api/v1/me/configs/{assignment}/settings.json").status_code)

    threads = [threading.Thread(target=download, args=(developer,)) for developer in developers]
    for thread in threads:
        thread.start()
    try:
        verified = json.loads(
            manage("shell", "-c", VERIFY_WHILE_DOWNLOADING.format(seconds=6), env=env).split("VERIFIED ", 1)[1]
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert statuses and set(statuses) == {200}
    assert verified["runs"] > 10 and verified["failed"] == 0, verified
    assert "The audit chain is intact" in manage("verify_audit", env=env)  # and quiet once downloads stop
