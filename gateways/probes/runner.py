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
from datetime import datetime
from functools import reduce
from operator import or_
from typing import cast
from uuid import UUID

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
from gateways.rules import RuleError, styled_model_id
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
# Keys per process in probe_and_save: one process for each this many keys begun (a fork costs milliseconds).
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
        # Spelt as the set-ups spell it: staff may have changed the style since probe_model was saved.
        model=resolve_model(env, styled_model_id(gateway.probe_model, gateway.model_id_style)),
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


def _refused_as_unusable(key: GatewayKey, outcome: ProbeOutcome) -> bool:
    """The portal refused to probe the key because it is disabled, expired or revoked (see _probe_settings)."""
    return outcome.verdict == "refused" and not key.is_usable


async def _probe_one(
    key: GatewayKey, client: SafeClient, stream: bool, models_cache: dict, retry_betas: bool = True
) -> ProbeOutcome:
    """Probe the key as loaded, dated when its settings were read: save_outcomes compares that with later edits."""
    started_at = timezone.now()
    outcome = await _probe_settings(key, client, stream, models_cache, retry_betas)
    outcome.started_at = started_at
    return outcome


async def _probe_settings(
    key: GatewayKey, client: SafeClient, stream: bool, models_cache: dict, retry_betas: bool
) -> ProbeOutcome:
    if not key.is_usable:
        return _unusable_outcome(
            key, f"The key is {key.state}; the portal does not probe it, and its latest verdict stands."
        )
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


def _grouped(verdicts: dict[UUID, str]) -> dict[str, list[UUID]]:
    """Key ids by verdict."""
    grouped: dict[str, list[UUID]] = defaultdict(list)
    for key_id, verdict in verdicts.items():
        grouped[verdict].append(key_id)
    return grouped


def _as_loaded(key: GatewayKey) -> Q:
    """The key's row as it was when the key was loaded: its settings, and the latest probe it held."""
    held = Q(last_probe_at__isnull=True) if key.last_probe_at is None else Q(last_probe_at=key.last_probe_at)
    return Q(pk=key.pk, config_changed_at=key.config_changed_at, last_probe_verdict=key.last_probe_verdict) & held


def _set_verdicts(probed: dict[UUID, tuple[GatewayKey, str, datetime]]) -> dict[UUID, str]:
    """Make each probe (key, verdict, started) its key's latest verdict where it still counts.

    Returns the verdict each key so set held just before, which alerts compare with; a key left out
    keeps its verdict, and the probe is history only. A probe counts when the key's settings are
    those it was loaded with (config_changed_at, which a rotation, a change of the key's overrides and
    update_gateway's change of what a download sets stamp) and no probe that started after it has been saved: else it tested an old address
    or key, or is not the latest. last_probe_at is the probe's start, as current_probe_verdict compares it
    (_save_batch moves it to the change when the probe itself switched the betas off: its retry tested that).

    Compare-and-set: one UPDATE sets the keys whose rows are still as loaded. Another save or an
    edit may have come between (an admin's 'Probe now' while a run waited on the network): such a
    key is read again under lock and decided then, so a key that starts failing or recovers is told once.
    """

    def verdicts_of(ids) -> dict:
        chosen = {pk: probed[pk] for pk in ids}
        grouped = _grouped({pk: verdict for pk, (_, verdict, _) in chosen.items()})
        return {
            "last_probe_verdict": Case(*(When(pk__in=pks, then=Value(verdict)) for verdict, pks in grouped.items())),
            "last_probe_at": Case(*(When(pk=pk, then=Value(started)) for pk, (_, _, started) in chosen.items())),
        }

    fresh = [key for key, _, started in probed.values() if key.last_probe_at is None or key.last_probe_at < started]
    if fresh and len(fresh) == len(probed):
        if GatewayKey.objects.filter(reduce(or_, map(_as_loaded, fresh))).update(**verdicts_of(probed)) == len(probed):
            return {key.pk: key.last_probe_verdict for key in fresh}
    elif fresh:
        GatewayKey.objects.filter(reduce(or_, map(_as_loaded, fresh))).update(**verdicts_of(k.pk for k in fresh))
    rows = GatewayKey.objects.select_for_update().filter(pk__in=probed).order_by("pk")
    held_before: dict[UUID, str] = {}
    later = []
    for pk, held, held_at, changed_at in rows.values_list(
        "pk", "last_probe_verdict", "last_probe_at", "config_changed_at"
    ):
        key, verdict, started = probed[pk]
        if held_at == started and held == verdict and changed_at == key.config_changed_at:
            held_before[pk] = key.last_probe_verdict  # set by the UPDATE above, which found it as loaded
        elif changed_at == key.config_changed_at and (held_at is None or held_at < started):
            held_before[pk] = held  # another probe was saved since: this one started after it
            later.append(pk)
    if later:
        GatewayKey.objects.filter(pk__in=later).update(**verdicts_of(later))
    return held_before


@transaction.atomic
def _save_batch(batch, trigger: str, user, request: HttpRequest | None) -> list[ProbeResult]:
    started_by = user if user and user.is_authenticated else None
    now = timezone.now()  # for an outcome that does not say when its probe started
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
                created_at=outcome.started_at or now,
            )
            for key, outcome in batch
        ]
    )
    # A key twice in a batch: its last probe. The portal's refusal to probe a key that is not usable is no
    # verdict on the key or its gateway: history only, so the key is not failing once it is usable again.
    latest = {key.pk: (key, outcome) for key, outcome in batch if not _refused_as_unusable(key, outcome)}
    held_before = _set_verdicts(
        {pk: (key, outcome.verdict, outcome.started_at or now) for pk, (key, outcome) in latest.items()}
    )
    counted = set(held_before)  # the keys whose verdict this batch set; the others keep theirs
    fixed = {
        key.pk
        for key, outcome in latest.values()
        if key.pk in counted and outcome.betas_fixed and key.disable_experimental_betas is not True
    }
    if fixed:
        # A setting settings.json holds: copies downloaded and devices installed before now hold the old one. The
        # retry without the betas tested the new setting, so the probe counts from the change (last_probe_at).
        GatewayKey.objects.filter(pk__in=fixed).update(
            disable_experimental_betas=True, config_changed_at=now, settings_changed_at=now, last_probe_at=now
        )
    _record_credential_headers(batch, results, now)
    audit_events = []
    transitions = []
    for (key, outcome), result in zip(batch, results, strict=True):
        if key.pk in counted and latest[key.pk][1] is outcome:
            transitions.append((key, held_before[key.pk], result))
            key.last_probe_verdict, key.last_probe_at = outcome.verdict, result.created_at
        if key.pk in fixed:
            key.disable_experimental_betas, key.config_changed_at, key.settings_changed_at = True, now, now
            key.last_probe_at = now
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


def _record_credential_headers(batch, results: list[ProbeResult], now: datetime) -> None:
    """Store what probes learnt of each gateway's credential headers (rules.SCHEME_FACT): one write per gateway.

    Written only while the gateway has the address and auth scheme the probes were sent with: update_gateway
    clears the facts of an old address, and a probe that was on its way there must not bring them back.
    """
    learnt: dict[tuple[int, str, str], tuple[dict, list[Gateway]]] = {}
    for (key, outcome), result in zip(batch, results, strict=True):
        facts = outcome.details.get("credential_headers")
        if facts:
            gateway = key.gateway
            probed_as = (gateway.pk, gateway.base_url, gateway.auth_scheme)
            seen, gateways = learnt.setdefault(probed_as, ({**(gateway.credential_headers or {})}, []))
            seen.update(facts, seen_at=now.isoformat(), probe=result.pk)
            gateways.append(gateway)
    for (pk, base_url, auth_scheme), (seen, gateways) in learnt.items():
        if Gateway.objects.filter(pk=pk, base_url=base_url, auth_scheme=auth_scheme).update(credential_headers=seen):
            for gateway in gateways:
                gateway.credential_headers = seen


def probe_processes(count: int, concurrency: int) -> int:
    """How many processes share the fan-out of `count` keys; 0 means a thread of this process.

    PROBE_PROCESSES (default: one per core, at most 4) is the most; below that, one process for each
    MIN_KEYS_PER_PROCESS keys begun (51 keys get 2), and at least one probe in flight each. Without fork() (Windows), or where fork is
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
