"""The hot paths under load: a download's queries and locks, stamps written once a minute, the audit queue."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from datetime import datetime, timedelta

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from gateways.models import Assignment, GatewayKey, ProbeResult
from gateways.probes import runner
from gateways.probes.runner import probe_and_save, probe_keys_async, save_outcomes
from portal import audit, audit_chain, stamps
from portal.crypto import reveal
from portal.models import Action, AuditChainHead, AuditEvent, PendingAuditEvent
from tests.gateway_emulator import GatewayRules, running_emulator

ON_POSTGRESQL = os.getenv("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
NEEDS_POSTGRESQL = pytest.mark.skipif(
    not ON_POSTGRESQL,
    reason="row locks between connections: SQLite has none (its one writer serialises every write); CI runs this on PostgreSQL",
)

pytestmark = pytest.mark.django_db


def statements(queries: CaptureQueriesContext) -> list[str]:
    """What a client sent the database, but BEGIN and COMMIT (Django logs those too)."""
    return [q["sql"] for q in queries.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]


def download(client, assignment, name: str = "bash"):
    response = client.get(f"/api/v1/me/configs/{assignment.id}/{name}")
    assert response.status_code == 200, response.content
    return response


def test_a_download_costs_a_fixed_handful_of_queries(
    api, bob, bob_assignment, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    client = api(bob)
    download(client, bob_assignment)  # the token's and the assignment's stamps are fresh from here on
    # token, assignment with its key, team and gateway; the chain step (head, insert, head; on PostgreSQL the
    # insert moves the head). The queue check after commit (PostgreSQL) is counted in
    # test_a_download_goes_through_while_others_hold_the_head_and_the_assignment_row: this test's
    # transaction never commits.
    chain = 2 if connection.vendor == "postgresql" else 3
    with django_assert_max_num_queries(2 + chain), django_capture_on_commit_callbacks(execute=True):
        download(client, bob_assignment)


def test_a_token_request_skips_the_page_middleware_yet_keeps_the_host_check_and_the_https_redirect(
    api, bob, bob_assignment, settings
):
    client = api(bob)
    response = download(client, bob_assignment, "settings.json")
    # Answered before sessions, CSRF, messages and the pages' headers (config.middleware.TokenApiMiddleware).
    assert "Content-Security-Policy" not in response and "X-Frame-Options" not in response
    assert not response.cookies and "Cookie" not in response.get("Vary", "")
    assert response["Content-Type"].startswith("application/json") and response.json()["env"]
    assert client.get(f"/api/v1/me/configs/{bob_assignment.id}/bash", HTTP_HOST="evil.example").status_code == 400
    device = {"name": "ci runner", "platform": "linux"}  # a write needs no CSRF token with an access token
    assert client.post(f"/api/v1/me/configs/{bob_assignment.id}/devices/", device, format="json").status_code == 201
    refused = APIClient(HTTP_AUTHORIZATION="Bearer pat_not-a-token").get("/api/v1/me/configs/")
    assert refused.status_code == 401 and "invalid" in refused.json()["detail"]
    settings.SECURE_SSL_REDIRECT = True
    redirected = api(bob).get(f"/api/v1/me/configs/{bob_assignment.id}/bash")  # a new handler reads the setting
    assert redirected.status_code == 301 and redirected["Location"].startswith("https://")


def test_a_token_request_with_a_session_a_page_or_an_unknown_path_takes_the_usual_way(api, bob, bob_assignment):
    client = api(bob)
    client.force_login(bob)  # a session cookie as well: the session may matter, so every middleware runs
    assert "Content-Security-Policy" in download(client, bob_assignment)
    client = api(bob)
    docs = client.get("/api/v1/docs/")  # the API's one page: its policy holds whatever the credential
    assert docs.status_code == 200 and "Content-Security-Policy" in docs
    assert client.get("/api/v1/teams").status_code == 301  # APPEND_SLASH, as without a token
    missing = client.get("/api/v1/nothing-here/")
    assert missing.status_code == 404 and missing.json()["detail"]


@pytest.mark.parametrize("model", [AuditEvent, PendingAuditEvent])
def test_the_audit_tables_have_no_index_that_another_one_already_covers(model):
    """Every audited request writes every index of one of these tables: none may lead another's columns."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    indexes = {name: c["columns"] for name, c in constraints.items() if c["index"] and not c["primary_key"]}
    assert len(indexes) >= (1 if model is PendingAuditEvent else 9)  # the introspection does see them
    covered = [
        (a, b) for a, cols in indexes.items() for b, other in indexes.items() if a != b and other[: len(cols)] == cols
    ]
    assert covered == []


def test_a_download_takes_no_waiting_lock_on_a_row_shared_by_all_users(api, bob, bob_assignment):
    client = api(bob)
    download(client, bob_assignment)
    with CaptureQueriesContext(connection) as queries:
        download(client, bob_assignment)
    statements = [q["sql"].upper() for q in queries.captured_queries]
    # The chain's head is asked for with SKIP LOCKED: when another request holds it, the event is queued instead.
    assert [s for s in statements if "FOR UPDATE" in s and "SKIP LOCKED" not in s] == []
    # Within the minute, nothing is written to the assignment or the token.
    assert [s for s in statements if s.startswith("UPDATE") and ("ASSIGNMENT" in s or "ACCESSTOKEN" in s)] == []


def test_downloads_within_a_minute_stamp_the_assignment_once_and_are_each_audited(api, bob, bob_assignment):
    client = api(bob)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        download(client, bob_assignment, "zsh")
        clock.shift(timedelta(seconds=30))
        download(client, bob_assignment, "bash")
        first = Assignment.objects.get(pk=bob_assignment.pk)
        clock.shift(timedelta(seconds=31))
        download(client, bob_assignment, "fish")
    assignment = Assignment.objects.get(pk=bob_assignment.pk)
    assert (first.download_count, first.last_download_format) == (1, "zsh")
    assert (assignment.download_count, assignment.last_download_format) == (2, "fish")
    assert assignment.last_download_at - first.last_download_at == timedelta(seconds=61)
    formats = (
        AuditEvent.objects.filter(action=Action.CONFIG_DOWNLOADED).order_by("id").values_list("details", flat=True)
    )
    assert [d["format"] for d in formats] == ["zsh", "bash", "fish"]


def test_touch_writes_a_stale_stamp_once_even_when_two_saw_it_stale(bob_assignment, django_assert_num_queries):
    one, two = Assignment.objects.get(pk=bob_assignment.pk), Assignment.objects.get(pk=bob_assignment.pk)
    assert stamps.touch(one, "last_download_at", last_download_format="zsh")
    with django_assert_num_queries(1):  # the UPDATE's own test finds the stamp fresh
        assert not stamps.touch(two, "last_download_at", last_download_format="bash")
    with django_assert_num_queries(0):  # the loaded row is fresh: no query at all
        assert not stamps.touch(one, "last_download_at")
    assert Assignment.objects.get(pk=bob_assignment.pk).last_download_format == "zsh"


def test_a_download_right_after_a_rotation_is_stamped_even_within_the_minute(api, alice, bob, bob_assignment):
    from gateways.services import rotate_key_secret

    client = api(bob)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        download(client, bob_assignment, "zsh")
        clock.shift(timedelta(seconds=10))
        rotate_key_secret(key=bob_assignment.key, secret="sk-tokenbay-rotated-0123456789", actor=alice)
        clock.shift(timedelta(seconds=10))
        download(client, bob_assignment, "bash")
    assignment = Assignment.objects.select_related("key").get(pk=bob_assignment.pk)
    assert assignment.last_download_at > assignment.key.rotated_at
    assert (assignment.download_count, assignment.last_download_format) == (2, "bash")


# --- The audit queue: events written while another transaction holds the chain's head -------------


def queue(event: AuditEvent) -> PendingAuditEvent:
    """Queue an event exactly as a writer that found the head taken does."""
    keyring = audit_chain.get_keyring()
    row = audit._queued(event, audit_chain.canonical_json(audit_chain.content_of(event)), keyring)
    row.save()
    return row


def test_queued_events_are_chained_in_order_and_verify(alice, web, capsys):
    audit.record(Action.SIGN_IN, actor=alice)
    for n in range(3):
        queue(audit.new_event(Action.TEAM_CREATED, actor=alice, team=web, details={"n": n, "big": 1e20}))
    call_command("verify_audit")
    out = capsys.readouterr().out
    assert "intact: 1 event(s) checked" in out and "3 more wait to be chained" in out
    with CaptureQueriesContext(connection) as sealing:
        assert audit.seal_pending() == 3
    # Whatever the batch's size: is anything queued, the head, the rows taken off the queue as they are
    # read, the events' insert, the head moved (on PostgreSQL, by the insert); then is anything queued
    # still. (The test's own transaction makes the seal's a savepoint.)
    sent = [sql for sql in statements(sealing) if "SAVEPOINT" not in sql]
    assert len(sent) == (5 if ON_POSTGRESQL else 6), "\n".join(sql[:90] for sql in sent)
    assert not PendingAuditEvent.objects.exists()
    chained = AuditEvent.objects.order_by("id")
    assert [e.details.get("n") for e in chained] == [None, 0, 1, 2]
    call_command("verify_audit")
    assert "intact: 4 event(s)" in capsys.readouterr().out


def test_a_queued_row_forged_or_edited_without_the_key_is_never_chained(alice, web):
    audit.record(Action.SIGN_IN, actor=alice)
    edited = queue(audit.new_event(Action.TEAM_CREATED, actor=alice, team=web, target="web"))
    PendingAuditEvent.objects.filter(pk=edited.pk).update(target="forged")
    forged = PendingAuditEvent.objects.create(action=Action.SIGN_IN, actor_username="mallory", signature="0" * 64)
    forged.signing_key_id = edited.signing_key_id
    forged.save()
    kept = queue(audit.new_event(Action.SIGN_OUT, actor=alice))
    assert audit.seal_pending() == 1  # only the intact one
    assert list(AuditEvent.objects.values_list("action", flat=True).order_by("id")) == [Action.SIGN_IN, Action.SIGN_OUT]
    assert set(PendingAuditEvent.objects.values_list("id", "rejected")) == {(edited.id, True), (forged.id, True)}
    assert not PendingAuditEvent.objects.filter(pk=kept.pk).exists()
    with pytest.raises(CommandError, match=f"queue row {edited.id}.*refused on its way into the chain"):
        call_command("verify_audit")


def test_an_edited_queued_row_is_named_even_before_it_is_sealed(alice):
    row = queue(audit.new_event(Action.SIGN_IN, actor=alice))
    PendingAuditEvent.objects.filter(pk=row.pk).update(actor_username="mallory")
    with pytest.raises(CommandError, match=f"queue row {row.id}\\) does not hold: its signature does not match"):
        call_command("verify_audit")


@NEEDS_POSTGRESQL
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_writer_never_waits_for_the_head_and_its_event_is_chained_after_the_holder(alice):
    audit.record(Action.SIGN_IN, actor=alice)
    holding, release, held_until = threading.Event(), threading.Event(), {}

    def hold_the_head():
        with transaction.atomic():
            AuditChainHead.objects.select_for_update().get(pk=1)
            audit.record(Action.TEAM_CREATED, actor=alice)  # the holder's own event goes straight in
            holding.set()
            release.wait(10)
        held_until["done"] = True
        connection.close()

    holder = threading.Thread(target=hold_the_head)
    holder.start()
    assert holding.wait(10)
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '2s'")  # waiting for the head would fail here, not hang
    audit.record(Action.SIGN_OUT, actor=alice)  # committed at once, queued
    assert list(PendingAuditEvent.objects.values_list("action", flat=True)) == [Action.SIGN_OUT]
    release.set()
    holder.join(10)
    assert held_until == {"done": True}
    # The holder chained nothing of ours before its commit; the next sealer (any writer's after-commit step) does.
    audit.seal_pending()
    assert not PendingAuditEvent.objects.exists()
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        Action.SIGN_IN,
        Action.TEAM_CREATED,
        Action.SIGN_OUT,
    ]
    assert audit.verify_chain().broken is None


@NEEDS_POSTGRESQL
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_download_goes_through_while_others_hold_the_head_and_the_assignment_row(api, bob, bob_assignment):
    client = api(bob)
    download(client, bob_assignment)  # stamps fresh
    with CaptureQueriesContext(connection) as chained:
        download(client, bob_assignment)
    # Chained at once: token, assignment, the head, the insert that moves it; after commit, the queue.
    assert len(statements(chained)) <= 5, "\n".join(sql[:90] for sql in statements(chained))
    holding, release = threading.Event(), threading.Event()

    def hold_rows():
        with transaction.atomic():
            AuditChainHead.objects.select_for_update().get(pk=1)
            Assignment.objects.select_for_update().get(pk=bob_assignment.pk)
            holding.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold_rows)
    holder.start()
    try:
        assert holding.wait(10)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
        with CaptureQueriesContext(connection) as queries:
            download(client, bob_assignment)
    finally:
        release.set()
        holder.join(10)
    # Queued at no extra cost: token, assignment, the head (held), the queue's insert; after commit, the
    # queue and the head (held still). A download that chains costs as many (see above).
    assert len(statements(queries)) <= 6, "\n".join(sql[:90] for sql in statements(queries))
    audit.seal_pending()
    assert AuditEvent.objects.filter(action=Action.CONFIG_DOWNLOADED).count() == 3
    assert audit.verify_chain().broken is None


# --- A probe run's results, saved a batch at a time ------------------------------------------------


def many_keys(team, gateway, count: int) -> list[GatewayKey]:
    keys = []
    for n in range(count):
        key = GatewayKey(team=team, gateway=gateway, label=f"bulk {n:02d}")
        key.set_secret(f"sk-bulk-{n:04d}-0123456789abcdef")
        keys.append(key)
    GatewayKey.objects.bulk_create(keys)
    return list(GatewayKey.objects.filter(label__startswith="bulk ").select_related("gateway", "team"))


def test_probe_results_are_saved_a_batch_at_a_time_with_one_chain_step_each(
    web, tokaify, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    with running_emulator(GatewayRules(accept_any_key=True)) as gw:
        tokaify.base_url = gw.base_url
        tokaify.save()
        keys = many_keys(web, tokaify, 12)
        outcomes = asyncio.run(probe_keys_async(keys, concurrency=6))
    assert {outcome.verdict for _, outcome in outcomes} == {"ok"}
    audit.record(Action.SIGN_IN)  # the chain exists already, as it does on any running portal
    # Per batch of five: the results, one UPDATE per verdict, the chain step (head, events, head), and
    # here the savepoint pair of a transaction inside the test's own, and one write of what the probes saw
    # of the gateway's credential headers (one per gateway, not per key); then the queue, once, after commit.
    with django_assert_max_num_queries(3 * 8 + 1), django_capture_on_commit_callbacks(execute=True):
        results = save_outcomes(outcomes, trigger="command", batch_size=5)
    assert len({r.pk for r in results}) == 12
    assert set(GatewayKey.objects.filter(label__startswith="bulk ").values_list("last_probe_verdict", flat=True)) == {
        "ok"
    }
    runs = AuditEvent.objects.filter(action=Action.PROBE_RUN).order_by("id")
    assert [e.details["probe"] for e in runs] == [r.pk for r in results]
    assert audit.verify_chain().broken is None


# A run's probes in a thread of the command's process (PROBE_PROCESSES=0), or in child processes.
FAN_OUTS = pytest.mark.parametrize("processes", [0, 2], ids=["thread", "processes"])


@FAN_OUTS
def test_a_probe_run_stores_results_while_later_probes_are_still_waiting_for_answers(
    web, tokaify, settings, monkeypatch, processes
):
    settings.PROBE_PROCESSES = processes
    answered_at = []
    # Each save's time and size, as the run makes it: results and keys carry the time each probe
    # started (runner._probe_one), which says nothing of when, or in what batches, they were stored.
    saves: list[tuple[datetime, int]] = []
    save_outcomes = runner.save_outcomes

    def timed_save(outcomes, **options):
        saves.append((timezone.now(), len(outcomes)))
        return save_outcomes(outcomes, **options)

    monkeypatch.setattr(runner, "save_outcomes", timed_save)
    with running_emulator(GatewayRules(accept_any_key=True, delay=0.3)) as gw:
        tokaify.base_url = gw.base_url
        tokaify.save()
        keys = many_keys(web, tokaify, 6)
        # Three rounds of two probes, each answer 0.3 s away; results stored two at a time.
        results = probe_and_save(
            keys,
            trigger="command",
            concurrency=2,
            batch_size=2,
            on_done=lambda key, outcome: answered_at.append(timezone.now()),
        )
    assert sorted(r.key_id for r in results) == sorted(k.pk for k in keys)
    assert {r.verdict for r in results} == {"ok"}
    assert saves[0][0] < max(answered_at), "the first results waited for the last answer"
    assert [size for _, size in saves] == [2, 2, 2]  # a transaction, and one step of the audit chain, per batch of two
    assert AuditEvent.objects.filter(action=Action.PROBE_RUN).count() == 6
    assert audit.verify_chain().broken is None


@FAN_OUTS
def test_a_probe_run_whose_fan_out_breaks_raises_instead_of_waiting_forever(
    web, tokaify, monkeypatch, settings, processes
):
    settings.PROBE_PROCESSES = processes

    def broken_tls_context():
        raise OSError("no certificate store")

    monkeypatch.setattr(runner, "tls_context", broken_tls_context)
    with pytest.raises(OSError, match="no certificate store"):
        probe_and_save(many_keys(web, tokaify, 2), trigger="command")
    assert not ProbeResult.objects.exists()


def probes_sent(gateway) -> list:
    """The probes' messages (a credential-header check also posts to /v1/messages, with no messages)."""
    return [r for r in gateway.message_requests() if r.body and r.body.get("messages")]


def sent_key(request) -> str:
    return request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")


def test_a_probe_run_shared_by_processes_probes_and_stores_every_key_once(
    web, tokaify, settings, monkeypatch, tmp_path
):
    settings.PROBE_PROCESSES = 3
    monkeypatch.setattr(runner, "MIN_KEYS_PER_PROCESS", 1)
    child_fan_out = runner._child_fan_out

    def noting_its_process(*args):  # runs in the child: a file named after its process id
        (tmp_path / str(os.getpid())).touch()
        child_fan_out(*args)

    monkeypatch.setattr(runner, "_child_fan_out", noting_its_process)
    with running_emulator(GatewayRules(accept_any_key=True)) as gw:
        tokaify.base_url = gw.base_url
        tokaify.save()
        keys = many_keys(web, tokaify, 7)
        key_of = {reveal(key.reveal_secret()): key.pk for key in keys}
        # Seven keys dealt to three processes (3, 2, 2), five probes in flight between them (2, 2, 1).
        results = probe_and_save(keys, trigger="command", concurrency=5)
        probed = sorted(key_of.get(sent_key(r), "?") for r in probes_sent(gw))
    processes = {int(path.name) for path in tmp_path.iterdir()}
    assert len(processes) == 3 and os.getpid() not in processes
    assert probed == sorted(key_of.values())  # each key probed once, by whichever process had it
    assert sorted(r.key_id for r in results) == sorted(key_of.values())
    assert {r.verdict for r in results} == {"ok"}
    assert set(GatewayKey.objects.filter(pk__in=key_of.values()).values_list("last_probe_verdict", flat=True)) == {"ok"}
    runs = AuditEvent.objects.filter(action=Action.PROBE_RUN)
    assert sorted(e.details["probe"] for e in runs) == sorted(r.pk for r in results)
    assert audit.verify_chain().broken is None


def test_a_probe_process_that_dies_mid_run_is_named_and_what_came_back_is_kept(web, tokaify, settings, monkeypatch):
    settings.PROBE_PROCESSES = 2
    monkeypatch.setattr(runner, "MIN_KEYS_PER_PROCESS", 1)
    answered = []

    def kill_the_second_process(key, outcome):
        answered.append(key.pk)
        for child in multiprocessing.active_children():
            if child.name == "probes-2":
                os.kill(child.pid, signal.SIGKILL)

    with running_emulator(GatewayRules(accept_any_key=True, delay=0.3)) as gw:
        tokaify.base_url = gw.base_url
        tokaify.save()
        keys = many_keys(web, tokaify, 6)  # three each, one at a time: the second is killed at the first answer
        with pytest.raises(runner.ProbeProcessError, match=r"probes-2 ended \(exit code -9\) before it reported"):
            probe_and_save(keys, trigger="command", concurrency=2, on_done=kill_the_second_process)
    assert not multiprocessing.active_children()  # the other process was stopped, not left running
    assert answered
    assert sorted(ProbeResult.objects.values_list("key_id", flat=True)) == sorted(answered)
    assert AuditEvent.objects.filter(action=Action.PROBE_RUN).count() == len(answered)
    assert audit.verify_chain().broken is None


def test_a_probe_run_whose_save_fails_stops_its_processes_at_once(web, tokaify, settings, monkeypatch):
    settings.PROBE_PROCESSES = 2
    monkeypatch.setattr(runner, "MIN_KEYS_PER_PROCESS", 1)

    def failing_save(outcomes, **options):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(runner, "save_outcomes", failing_save)
    with running_emulator(GatewayRules(accept_any_key=True, delay=0.3)) as gw:
        tokaify.base_url = gw.base_url
        tokaify.save()
        keys = many_keys(web, tokaify, 6)  # three each, one at a time
        try:
            probe_and_save(keys, trigger="command", concurrency=2, batch_size=1)
        except RuntimeError as exc:
            # Stopped before the error is handled (its traceback holds the run's frames), not when it is dropped.
            assert str(exc) == "the database went away"
            assert not multiprocessing.active_children()
        else:
            pytest.fail("the failing save was not raised")
        time.sleep(0.5)  # a process still running would have sent its next probes by now
        probes = probes_sent(gw)
    assert len(probes) < len(keys)


def test_a_slow_save_does_not_hold_up_the_probes_still_running(web, tokaify, settings, monkeypatch):
    settings.PROBE_PROCESSES = 1
    save = runner.save_outcomes
    sent_while_saving = []

    def slow_first_save(outcomes, **options):  # a database that stalls until every probe is out, or 10 s
        if not sent_while_saving:
            stalled_until = time.monotonic() + 10
            while len(probes_sent(gw)) < len(keys) and time.monotonic() < stalled_until:
                time.sleep(0.05)
            sent_while_saving.append(len(probes_sent(gw)))
        return save(outcomes, **options)

    monkeypatch.setattr(runner, "save_outcomes", slow_first_save)
    with running_emulator(GatewayRules(accept_any_key=True)) as gw:
        tokaify.base_url = gw.base_url
        tokaify.save()
        keys = many_keys(web, tokaify, 250)
        # 200 outcomes (80 KB) come back during the first save: more than a pipe holds (64 KB), so a
        # child whose pipe nobody read would wait on it until the save ended.
        results = probe_and_save(keys, trigger="command", concurrency=20, batch_size=50)
    assert sent_while_saving == [len(keys)]
    assert len(results) == len(keys)


def test_a_probe_process_whose_command_is_gone_stops_at_its_next_answer_without_a_word(web, tokaify, capfd):
    with running_emulator(GatewayRules(accept_any_key=True, delay=0.2)) as gw:
        tokaify.base_url = gw.base_url
        tokaify.save()
        keys = many_keys(web, tokaify, 4)
        context = multiprocessing.get_context("fork")
        reader, writer = context.Pipe(duplex=False)
        args = (keys, range(len(keys)), 1, True, writer, (reader,))
        child = context.Process(target=runner._child_fan_out, args=args)
        child.start()
        writer.close()
        reader.close()  # the command is gone (killed) before the first answer
        child.join(timeout=10)
        probes = probes_sent(gw)
    assert child.exitcode == 0
    assert len(probes) == 1  # one key at a time: it stopped at the first answer, with nobody to hear it
    assert capfd.readouterr().err == ""


def test_a_probe_process_is_refused_the_database_and_the_runs_connection_keeps_working(
    web, tokaify, settings, monkeypatch
):
    settings.PROBE_PROCESSES = 1
    target_for = runner.target_for

    def querying_target_for(key, **options):  # what a change to the probe code might one day do
        GatewayKey.objects.count()
        return target_for(key, **options)

    monkeypatch.setattr(runner, "target_for", querying_target_for)
    keys = many_keys(web, tokaify, 2)
    results = probe_and_save(keys, trigger="command")
    # The child's query was refused before it reached the connection it shares, and the probe said why.
    assert {r.verdict for r in results} == {"refused"}
    assert {r.hint for r in results} == {runner.UNEXPECTED_FAILURE.format(name="SynchronousOnlyOperation")}
    # This process's session (on PostgreSQL, the server's) is intact: it reads and writes as before.
    assert ProbeResult.objects.filter(key__in=keys).count() == 2
    audit.record(Action.SIGN_IN)
    assert audit.verify_chain().broken is None


def test_a_probe_run_takes_a_process_per_core_with_enough_keys_and_none_where_configured_so(settings):
    settings.PROBE_PROCESSES = 2
    assert runner.probe_processes(1, 20) == 1
    assert runner.probe_processes(runner.MIN_KEYS_PER_PROCESS + 1, 20) == 2
    assert runner.probe_processes(1000, 1) == 1  # a process has a probe in flight at least
    settings.PROBE_PROCESSES = 0
    assert runner.probe_processes(1000, 20) == 0


def test_a_probe_run_that_switches_betas_off_records_it_per_key(web, tokaify):
    with running_emulator(GatewayRules(accept_any_key=True, reject_context_management=True)) as gw:
        tokaify.base_url = gw.base_url
        tokaify.save()
        keys = many_keys(web, tokaify, 3)
        GatewayKey.objects.filter(pk=keys[0].pk).update(disable_experimental_betas=True)
        keys[0].disable_experimental_betas = True
        save_outcomes(asyncio.run(probe_keys_async(keys, concurrency=3)), trigger="command")
    changed = AuditEvent.objects.filter(action=Action.PROBE_CHANGED_SETTING).values_list("target", flat=True)
    assert sorted(changed) == sorted(k.short_fingerprint for k in keys[1:])  # the first already had it off
    assert set(
        GatewayKey.objects.filter(label__startswith="bulk ").values_list("disable_experimental_betas", flat=True)
    ) == {True}


# --- Lists on large data ---------------------------------------------------------------------------


@pytest.mark.skipif(ON_POSTGRESQL, reason="PostgreSQL gathers its planner statistics itself (autovacuum)")
def test_migrate_leaves_sqlite_statistics_for_the_planner():
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM sqlite_stat1 WHERE tbl = 'gateways_gateway'")
        assert cursor.fetchone()[0] > 0


def test_a_list_of_joined_rows_sorts_ids_then_reads_one_page(api, staff, bob_assignment, tokenbay_key):
    """Sorting 20,000 wide joined rows to keep 100 was the slow part: the sort reads ids only."""
    with CaptureQueriesContext(connection) as queries:
        assert len(api(staff).get("/api/v1/connections/").json()["results"]) == 1
    selects = [q["sql"] for q in queries.captured_queries if "gateways_assignment" in q["sql"]]
    assert len(selects) == 2
    assert "ORDER BY" in selects[0] and "gateways_gateway" not in selects[0].split("FROM")[0]  # ids only
    assert "ORDER BY" not in selects[1] and "IN (" in selects[1]  # the page's rows, by id


@pytest.mark.skipif(not ON_POSTGRESQL, reason="prepared statements are PostgreSQL's; CI runs this on PostgreSQL")
def test_on_postgresql_the_hot_reads_are_prepared_after_a_few_runs(api, bob, bob_assignment):
    # Server-side binding lets psycopg prepare a repeated statement, so PostgreSQL plans the join once.
    assert connection.settings_dict["OPTIONS"]["server_side_binding"] is True
    client = api(bob)
    for _ in range(7):
        download(client, bob_assignment)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("gateways_assignment" in s and "gateways_gatewaykey" in s for s in prepared), prepared
    assert any("portal_accesstoken" in s for s in prepared), prepared
