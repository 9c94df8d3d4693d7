"""Run probes for stored keys and record what they found.

The network part (gateways.probes.probe) knows nothing of the database; this module turns keys into
probe targets, runs them (one, or many concurrently with a bound), and stores the outcomes
with their audit events, in batches. A probe that finds the gateway rejecting `context_management` switches
the key's configs to CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS=1, and says so in the audit trail.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import queue
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Generator, Iterable, Sequence
from contextlib import closing, suppress
from functools import reduce
from operator import or_
from typing import cast

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Q, Value, When
from django.http import HttpRequest
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from gateways import events
from gateways.config.builder import build_config
from gateways.models import Gateway, GatewayKey, ProbeResult
from gateways.probes.outbound import SafeClient, tls_context
from gateways.probes.probe import UNEXPECTED_FAILURE, ProbeOutcome, ProbeTarget, alias_models, resolve_model, run_probe
from gateways.rules import RuleError
from gateways.services import key_event
from portal import audit
from portal.crypto import DecryptionError
from portal.models import Action

logger = logging.getLogger(__name__)

STAGGER_SECONDS = 0.002
MAX_STAGGER_SECONDS = 0.5
# Results stored per transaction (and per step of the audit chain) by save_outcomes.
SAVE_BATCH = 500
# probe_and_save stores what has come back once this many are waiting (the rest at the end).
STREAM_BATCH = 100
# The fewest keys worth a process of their own in probe_and_save (a fork costs milliseconds).
MIN_KEYS_PER_PROCESS = 50


@sensitive_variables("secret", "config")
def target_for(key: GatewayKey, *, stream: bool = True, retry_betas: bool = True) -> ProbeTarget:
    gateway = key.gateway
    secret = key.reveal_secret()
    config = build_config(gateway, key, secret)
    env = {name: value for name, value in config.variables.items() if isinstance(value, str)}  # all but the key
    return ProbeTarget(
        base_url=gateway.base_url,
        auth_scheme=gateway.auth_scheme,
        secret=secret,
        model=resolve_model(env, gateway.probe_model),
        prompt=gateway.probe_prompt,
        mode=gateway.probe_mode,
        stream=stream,
        send_context_management=env.get("CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS") != "1",
        alias_models=alias_models(env),
        custom_headers=dict(key.custom_headers or {}),
        retry_without_betas=retry_betas,
        check_credential_headers=gateway.credential_headers_due,
    )


def _unusable_outcome(key: GatewayKey, reason: str) -> ProbeOutcome:
    return ProbeOutcome("refused", hint=reason, kind=key.gateway.probe_mode)


async def _probe_one(
    key: GatewayKey, client: SafeClient, stream: bool, models_cache: dict, retry_betas: bool = True
) -> ProbeOutcome:
    if not key.is_usable:
        return _unusable_outcome(key, f"The key is {key.state}; the portal does not probe it.")
    try:
        target = target_for(key, stream=stream, retry_betas=retry_betas)
        return await run_probe(target, client, models_cache)
    except (DecryptionError, RuleError) as exc:  # RuleError: stored settings the config builder refuses
        return _unusable_outcome(key, str(exc))
    except Exception as exc:  # one key's failure must not cost the others their results (manage.py probe)
        logger.error("The probe of key %s stopped on an unexpected %s.", key.pk, type(exc).__name__, exc_info=exc)
        return _unusable_outcome(key, UNEXPECTED_FAILURE.format(name=type(exc).__name__))


async def probe_keys_async(
    keys: Iterable[GatewayKey],
    *,
    concurrency: int = 20,
    stream: bool = True,
    on_done: Callable[[GatewayKey, ProbeOutcome], None] | None = None,
    retry_betas: bool = True,
) -> list[tuple[GatewayKey, ProbeOutcome]]:
    """Probe keys with at most `concurrency` in flight; results come back in the keys' order.

    Each worker has a small connection pool of its own: one pool shared by a hundred
    connections spends its time scanning itself (httpcore assigns requests in O(n) per event).
    Workers start STAGGER_SECONDS apart, so a gateway does not get every probe in the same
    instant and the answers do not all need this event loop at once.
    """
    keys = list(keys)
    results: list[tuple[GatewayKey, ProbeOutcome] | None] = [None] * len(keys)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(keys)):
        queue.put_nowait(index)
    context = tls_context()
    models_cache: dict = {}  # each key's model list (gateways list a token's own), and each gateway's header facts

    async def worker(position: int) -> None:
        await asyncio.sleep(min(position * STAGGER_SECONDS, MAX_STAGGER_SECONDS))
        async with SafeClient(max_connections=2, verify=context) as client:
            while not queue.empty():
                index = queue.get_nowait()
                outcome = await _probe_one(keys[index], client, stream, models_cache, retry_betas)
                results[index] = (keys[index], outcome)
                if on_done:
                    on_done(keys[index], outcome)

    await asyncio.gather(*(worker(position) for position in range(min(concurrency, len(keys)) or 1)))
    return [r for r in results if r is not None]


def save_outcome(
    key: GatewayKey, outcome: ProbeOutcome, *, trigger: str, user=None, request: HttpRequest | None = None
) -> ProbeResult:
    """Store one probe's result, the key's latest verdict and the audit events (see save_outcomes)."""
    [result] = save_outcomes([(key, outcome)], trigger=trigger, user=user, request=request)
    return result


def save_outcomes(
    outcomes: Sequence[tuple[GatewayKey, ProbeOutcome]],
    *,
    trigger: str,
    user=None,
    request: HttpRequest | None = None,
    batch_size: int = SAVE_BATCH,
) -> list[ProbeResult]:
    """Store probe results in batches: per batch one transaction, one insert of results and one chain step.

    The keys' latest verdicts are set with one UPDATE per batch, which touches the probe's columns
    only: an admin's change to the key during a long run is never overwritten.
    """
    results: list[ProbeResult] = []
    for start in range(0, len(outcomes), batch_size):
        results.extend(_save_batch(outcomes[start : start + batch_size], trigger, user, request))
    return results


def _grouped(verdicts: dict[int, str]) -> dict[str, list[int]]:
    """Key ids by verdict."""
    grouped: dict[str, list[int]] = defaultdict(list)
    for key_id, verdict in verdicts.items():
        grouped[verdict].append(key_id)
    return grouped


def _set_verdicts(verdicts: dict[int, str], loaded: dict[int, str], now) -> dict[int, str]:
    """Set each key's latest verdict; returns the verdict each held just before, which alerts compare with.

    Compare-and-set: one UPDATE sets the keys that still hold the verdict they were loaded with. Another
    save may have changed a key since (an admin's 'Probe now' while a run waited on the network): such a
    key is read again under lock and set after, so a key that starts failing or recovers is told once.
    """

    def new_verdict() -> Case:
        return Case(*(When(pk__in=ids, then=Value(verdict)) for verdict, ids in _grouped(verdicts).items()))

    unchanged = reduce(or_, (Q(pk__in=ids, last_probe_verdict=v) for v, ids in _grouped(loaded).items()))
    if GatewayKey.objects.filter(unchanged).update(last_probe_verdict=new_verdict(), last_probe_at=now) == len(loaded):
        return dict(loaded)
    changed = dict(
        GatewayKey.objects.select_for_update()
        .filter(pk__in=verdicts)
        .exclude(last_probe_at=now)  # set just now by the UPDATE above
        .order_by("pk")
        .values_list("pk", "last_probe_verdict")
    )
    GatewayKey.objects.filter(pk__in=changed).update(last_probe_verdict=new_verdict(), last_probe_at=now)
    return {**loaded, **changed}


@transaction.atomic
def _save_batch(batch, trigger: str, user, request: HttpRequest | None) -> list[ProbeResult]:
    started_by = user if user and user.is_authenticated else None
    results = ProbeResult.objects.bulk_create(
        [
            ProbeResult(
                key=key,
                gateway=key.gateway,
                verdict=outcome.verdict,
                status_code=outcome.status_code,
                ttfb_ms=outcome.ttfb_ms,
                latency_ms=outcome.latency_ms,
                model=outcome.model,
                hint=outcome.hint,
                warning=outcome.warning,
                error_excerpt=outcome.error_excerpt,
                kind=outcome.kind,
                trigger=trigger,
                started_by=started_by,
                details=outcome.details,
            )
            for key, outcome in batch
        ]
    )
    now = timezone.now()
    held_before = _set_verdicts(
        {key.pk: outcome.verdict for key, outcome in batch}, {key.pk: key.last_probe_verdict for key, _ in batch}, now
    )
    fixed = {key.pk for key, outcome in batch if outcome.betas_fixed and key.disable_experimental_betas is not True}
    if fixed:
        GatewayKey.objects.filter(pk__in=fixed).update(disable_experimental_betas=True, config_changed_at=now)
    # What probes learnt of each gateway's credential headers (gateways.rules.SCHEME_FACT): one write per gateway.
    learnt: dict[int, Gateway] = {}
    for (key, outcome), result in zip(batch, results, strict=True):
        facts = outcome.details.get("credential_headers")
        if facts:
            gateway = key.gateway
            gateway.credential_headers = {
                **(gateway.credential_headers or {}),
                **facts,
                "seen_at": now.isoformat(),
                "probe": result.pk,
            }
            learnt[gateway.pk] = gateway
    for gateway in learnt.values():
        Gateway.objects.filter(pk=gateway.pk).update(credential_headers=gateway.credential_headers)
    audit_events = []
    transitions = []
    for (key, outcome), result in zip(batch, results, strict=True):
        transitions.append((key, held_before.get(key.pk, key.last_probe_verdict), result))
        held_before[key.pk] = outcome.verdict
        key.last_probe_verdict, key.last_probe_at = outcome.verdict, now
        if key.pk in fixed:
            key.disable_experimental_betas, key.config_changed_at = True, now
            details = {"setting": "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS", "to": "1", "probe": result.pk}
            audit_events.append(
                key_event(Action.PROBE_CHANGED_SETTING, key, actor=user, request=request, details=details)
            )
        details = {"verdict": outcome.verdict, "status": outcome.status_code, "trigger": trigger, "probe": result.pk}
        audit_events.append(key_event(Action.PROBE_RUN, key, actor=user, request=request, details=details))
    audit.append(audit_events)
    for key, previous, result in transitions:  # alerts listen for a key that starts failing or recovers
        events.probe_recorded.send(sender=GatewayKey, key=key, previous=previous, result=result)
    return results


def probe_processes(count: int, concurrency: int) -> int:
    """How many processes share the fan-out of `count` keys; 0 means a thread of this process.

    PROBE_PROCESSES (default: one per core, at most 4) is the most; a process gets at least
    MIN_KEYS_PER_PROCESS keys and one probe in flight. Without fork() (Windows), or where fork is
    unsafe (macOS), the fan-out stays in this process.
    """
    if "fork" not in multiprocessing.get_all_start_methods() or sys.platform == "darwin":
        return 0
    return max(0, min(settings.PROBE_PROCESSES, concurrency, math.ceil(count / MIN_KEYS_PER_PROCESS)))


def probe_and_save(
    keys: Sequence[GatewayKey],
    *,
    trigger: str,
    concurrency: int = 20,
    stream: bool = True,
    on_done: Callable[[GatewayKey, ProbeOutcome], None] | None = None,
    batch_size: int = STREAM_BATCH,
) -> list[ProbeResult]:
    """Probe keys and store their results while the others are still in flight (manage.py probe).

    The probes run on event loops that never touch the database: in child processes, each with its
    share of the keys and of `concurrency` (see probe_processes), or else in a thread. This thread
    stores each `batch_size` outcomes as they come back (see save_outcomes), so the database work of
    a large run hides behind the network's waits instead of following them. With processes, a large
    run is not bound by the one core an event loop can use (httpx, h11 and TLS are Python), and the
    saving does not share an interpreter lock with the probes. Only outcomes, which carry no secret
    (run_probe redacts them), cross from a child to this process.
    """
    keys = list(keys)
    processes = probe_processes(len(keys), concurrency)
    if processes:
        arrivals = _fan_out_in_processes(keys, concurrency, stream, processes)
    else:
        arrivals = _fan_out_in_thread(keys, concurrency, stream)
    results: list[ProbeResult] = []
    waiting: list[tuple[GatewayKey, ProbeOutcome]] = []
    try:
        with closing(arrivals):  # a failure here stops the child processes at once
            for key, outcome in arrivals:
                if on_done:
                    on_done(key, outcome)
                waiting.append((key, outcome))
                if len(waiting) >= batch_size:
                    batch, waiting = waiting, []
                    results += save_outcomes(batch, trigger=trigger)
    finally:  # also when the fan-out broke off: what came back is kept
        if waiting:
            results += save_outcomes(waiting, trigger=trigger)
    return results


def _fan_out_in_thread(
    keys: list[GatewayKey], concurrency: int, stream: bool
) -> Generator[tuple[GatewayKey, ProbeOutcome], None, None]:
    """Each key and its outcome as it comes back from an event loop in a thread of its own."""
    done: queue.SimpleQueue[tuple[GatewayKey, ProbeOutcome] | BaseException | None] = queue.SimpleQueue()

    def fan_out() -> None:
        try:
            asyncio.run(
                probe_keys_async(
                    keys, concurrency=concurrency, stream=stream, on_done=lambda key, out: done.put((key, out))
                )
            )
        except BaseException as exc:  # handed to the caller's thread, which raises it
            done.put(exc)
        else:
            done.put(None)

    thread = threading.Thread(target=fan_out, name="probes", daemon=True)
    thread.start()
    while (item := done.get()) is not None:
        if isinstance(item, BaseException):
            thread.join()
            raise item
        yield item  # closed here when the caller stops early: the thread finishes its probes unheard
    thread.join()


class ProbeProcessError(RuntimeError):
    """A child process of a probe run ended before it reported all its keys."""


def _fan_out_in_processes(
    keys: list[GatewayKey], concurrency: int, stream: bool, processes: int
) -> Generator[tuple[GatewayKey, ProbeOutcome], None, None]:
    """Each key and its outcome as it comes back from `processes` forked children, the keys dealt out in turn.

    A thread relays what the children send (see _relay), so a child never waits on a full pipe
    while this thread saves: its probes' timings stay the network's.
    """
    context = multiprocessing.get_context("fork")
    children: dict[multiprocessing.connection.Connection, multiprocessing.process.BaseProcess] = {}
    pipes: list[multiprocessing.connection.Connection] = []
    arrived: queue.SimpleQueue[tuple[int, ProbeOutcome] | BaseException | None] = queue.SimpleQueue()
    relay = threading.Thread(target=_relay, args=(children, arrived), name="probe-results", daemon=True)
    try:
        for number in range(processes):
            reader, writer = context.Pipe(duplex=False)
            pipes.append(reader)
            share = concurrency // processes + (number < concurrency % processes)
            child = context.Process(
                target=_child_fan_out,
                args=(keys, range(number, len(keys), processes), share, stream, writer, tuple(pipes)),
                name=f"probes-{number + 1}",
                daemon=True,
            )
            try:
                child.start()
            finally:
                writer.close()  # the child holds the other copy: when it ends, this end reads end-of-file
            children[reader] = child
        relay.start()
        while (item := arrived.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            index, outcome = item
            yield keys[index], outcome
    finally:
        for process in children.values():
            if process.is_alive():
                process.terminate()  # its pipe then ends, and so does the relay
        if relay.is_alive():
            relay.join()
        for process in children.values():
            process.join()
        for reader in pipes:
            reader.close()


def _relay(
    children: dict[multiprocessing.connection.Connection, multiprocessing.process.BaseProcess],
    arrived: queue.SimpleQueue,
) -> None:
    """Pass on what each child sends, as it comes: (index, outcome), an exception, and at the end None."""
    running = dict(children)
    try:
        while running:
            for waited in multiprocessing.connection.wait(list(running)):
                ready = cast(multiprocessing.connection.Connection, waited)  # wait returns some of what it was given
                try:
                    item = ready.recv()
                except EOFError:
                    ended = running.pop(ready)
                    ended.join()
                    arrived.put(
                        ProbeProcessError(
                            f"The probe process {ended.name} ended (exit code {ended.exitcode}) before it reported "
                            "all its keys. The results that came back are saved; run the command again for the rest."
                        )
                    )
                    return
                if item is None:
                    running.pop(ready)
                else:
                    arrived.put(item)
    except BaseException as exc:  # handed to the caller's thread, which raises it
        arrived.put(exc)
    else:
        arrived.put(None)


def _child_fan_out(
    keys: list[GatewayKey], indexes: range, concurrency: int, stream: bool, writer, readers: tuple
) -> None:
    """In a forked child: probe keys[i] for i in indexes, sending (i, outcome) to the parent as each comes back.

    `readers` are the parent's ends of the pipes made so far, this child's among them: a fork copies
    them, and a pipe the child can read itself never tells it that the parent is gone. Closed here,
    the child's next send after the parent's death fails (BrokenPipeError), and the child stops.

    The child inherits the parent's database connection, socket and all: a query on it, or closing
    it, would break the parent's session. Its code runs on the event loop, where Django refuses every
    query (SynchronousOnlyOperation), and it ends the way multiprocessing ends a forked child, with
    os._exit, which closes nothing.
    """
    for reader in readers:
        reader.close()
    position = {id(keys[index]): index for index in indexes}

    def finished(key: GatewayKey, outcome: ProbeOutcome) -> None:
        writer.send((position[id(key)], outcome))

    try:
        asyncio.run(
            probe_keys_async([keys[i] for i in indexes], concurrency=concurrency, stream=stream, on_done=finished)
        )
    except BaseException as exc:  # BrokenPipeError from `finished` too, when the parent is gone
        _last_word(writer, exc)
    else:
        _last_word(writer, None)
    writer.close()


def _last_word(writer, message: BaseException | None) -> None:
    """Tell the parent how the child ended: None when every key was reported, else what stopped it."""
    try:
        writer.send(message)
    except OSError:  # BrokenPipeError: the parent is gone, and there is nobody left to tell
        pass
    except Exception:  # an exception that does not pickle: its type says what it was
        with suppress(OSError):
            writer.send(RuntimeError(f"A probe process stopped on {type(message).__name__}."))


def probe_key(
    key: GatewayKey,
    *,
    trigger: str,
    user=None,
    request: HttpRequest | None = None,
    stream: bool = True,
    retry_betas: bool = True,
) -> ProbeResult:
    """Probe one key now and store the result (used by the web page and the API)."""
    [(key, outcome)] = asyncio.run(probe_keys_async([key], concurrency=1, stream=stream, retry_betas=retry_betas))
    return save_outcome(key, outcome, trigger=trigger, user=user, request=request)
