"""Writing and checking the audit chain.

`record()` is called inside the transaction of the change it describes, so an action and its
audit row are committed together or not at all. Rows form one chain through the single
`AuditChainHead`; what a row's hash covers and how it is signed is in `portal/audit_chain.py`.

Nobody waits for the head. An event is prepared in full before the head is asked for (its content
in canonical form), and the head is taken with SKIP LOCKED: when it is free, the event is linked,
signed and inserted on the spot, and the head holds nothing else. When another transaction holds
it (concurrent writers on PostgreSQL), the event is queued instead, in `PendingAuditEvent`, signed
over its content and a nonce of its own, still in the caller's transaction. After each commit the
writer chains whatever is queued, oldest first, in one step (`seal_pending`); if the head is busy
again, its holder does it after its own commit. So under load the chain grows in batches, and no request waits on another's
commit flushing to disk. SQLite admits one writer at a time, so there every event is chained at once; queue
rows carried over from PostgreSQL by a move (a process died before sealing them) are chained by the next
writer, ahead of its own events.

The nonce goes into the chain with the event: a queued row is chained only if no other queued row and
no chained event carries its nonce, so a copy of a queue row (made in the database, or kept and put
back after its event was chained) is never chained a second time, and verify_audit names it.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from operator import attrgetter

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, models, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from portal import audit_chain
from portal.compiled_sql import CompiledInsert
from portal.crypto import Keyring
from portal.errors import RuleError
from portal.models import AUDIT_CONTENT_FIELDS, Action, AuditChainHead, AuditEvent, PendingAuditEvent, Team

logger = logging.getLogger(__name__)

# Queued events chained per step by seal_pending: one DELETE … RETURNING takes them off the queue, one
# insert chains them (moving the head on PostgreSQL; a head update follows elsewhere, and above
# CompiledInsert.MAX_ROWS, where bulk_create writes them).
SEAL_BATCH = 500


def client_ip(request: HttpRequest | None) -> str | None:
    """The client's address in its stored form, or None when there is no valid one.

    Behind proxies, X-Forwarded-For is read from the right: each proxy appends the address it
    saw, so the entry TRUSTED_PROXY_COUNT places from the end is the one our outermost proxy
    wrote. Entries to its left are whatever the client sent.
    """
    if request is None:
        return None
    raw = request.META.get("REMOTE_ADDR")
    if settings.USE_X_FORWARDED_FOR:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if hops:
            raw = hops[-min(settings.TRUSTED_PROXY_COUNT, len(hops))]
    return audit_chain.stored_ip(raw)


def new_event(
    action: str,
    *,
    actor=None,
    request: HttpRequest | None = None,
    team: Team | None = None,
    gateway_slug: str = "",
    target: str = "",
    details: dict | None = None,
) -> AuditEvent:
    """An event not yet in the chain; `actor` defaults to the request's user, None means the system."""
    if actor is None and request is not None and getattr(request, "user", None) is not None:
        actor = request.user if request.user.is_authenticated else None
    return AuditEvent(
        created_at=timezone.now(),
        actor=actor,
        actor_username=actor.get_username() if actor else "",
        action=action,
        team=team,
        team_slug=team.slug if team else "",
        gateway_slug=gateway_slug,
        target=target[:200],
        ip_address=client_ip(request),
        user_agent=(request.META.get("HTTP_USER_AGENT", "") if request else "")[:300],
        details=details or {},
    )


def record(
    action: str,
    *,
    actor=None,
    request: HttpRequest | None = None,
    team: Team | None = None,
    gateway_slug: str = "",
    target: str = "",
    details: dict | None = None,
) -> AuditEvent:
    """Append one event to the chain (see append). `actor` defaults to the request's user; None means the system."""
    event = new_event(
        action, actor=actor, request=request, team=team, gateway_slug=gateway_slug, target=target, details=details
    )
    append([event])
    return event


def append(events: list[AuditEvent]) -> None:
    """Add events, in order, in the caller's transaction: chained now, or queued while the head is busy.

    A chained event has its id, hash and signature set; a queued one is chained by seal_pending after commit.
    """
    if not events:
        return
    keyring = audit_chain.get_keyring()
    texts = [audit_chain.canonical_json(audit_chain.content_of(event)) for event in events]
    with transaction.atomic(savepoint=False):
        last_hash, queued = _take_head_noting_queue()
        if queued:  # SQLite only: older events, so chained before these, in this transaction
            try:
                with transaction.atomic():
                    seal_pending()
            except DatabaseError:  # as after a commit on PostgreSQL: logged, and this write goes through
                logger.exception("Queued audit events could not be chained; the next writer tries again.")
            last_hash = _take_head()
        if last_hash is None:
            rows = [_queued(event, text, keyring) for event, text in zip(events, texts, strict=True)]
            if len(rows) <= CompiledInsert.MAX_ROWS:  # under load, most audited requests (see _link)
                _INSERT_PENDING.insert(*rows)
            else:
                PendingAuditEvent.objects.bulk_create(rows)
        else:
            _link(last_hash, events, texts, keyring)
        # Others queue only while a head taken with SKIP LOCKED is held; SQLite has one writer at a time.
        if last_hash is None or connection.features.has_select_for_update_skip_locked:
            _seal_after_commit()


# The chain step runs on every audited request, so its small statements are written out, or
# compiled once (CompiledInsert), rather than built by the ORM each time (which costs more than running them).
HEAD_TABLE = AuditChainHead._meta.db_table
EVENT_TABLE = AuditEvent._meta.db_table
QUEUE_TABLE = PendingAuditEvent._meta.db_table
_INSERT_EVENT = CompiledInsert(AuditEvent)
_INSERT_PENDING = CompiledInsert(PendingAuditEvent)
# The oldest queued events, taken off the queue by the statement that reads them. Only the head's
# holder runs it, so no two sealers take the same rows; a rollback puts them back. With each, the
# chained event that already carries its nonce, if any (a copy put back): no statement of its own.
_TAKE_QUEUED = (
    f"DELETE FROM {QUEUE_TABLE} WHERE id IN "  # noqa: S608
    f"(SELECT id FROM {QUEUE_TABLE} WHERE rejected = %s ORDER BY id LIMIT %s) "
    f"RETURNING *, (SELECT MIN(id) FROM {EVENT_TABLE} WHERE {EVENT_TABLE}.nonce = {QUEUE_TABLE}.nonce) AS chained_as"
)
# On PostgreSQL the head moves in the event's INSERT (a data-modifying WITH, run once whatever the
# INSERT reads): one round trip fewer on every audited request. SQLite has no such WITH.
_INSERT_EVENT_MOVING_HEAD = CompiledInsert(
    AuditEvent,
    prefix=f"WITH moved_head AS (UPDATE {HEAD_TABLE} SET last_hash = %s WHERE id = 1) ",  # noqa: S608
)


def _take_head() -> str | None:
    """The chain's last hash, its head row locked until this transaction ends; None when another holds it."""
    return _take_head_noting_queue()[0]


def _take_head_noting_queue() -> tuple[str | None, bool]:
    """The chain's last hash (see _take_head), and on SQLite whether events wait in the queue to be chained.

    SQLite has one writer at a time, so nothing is queued there, but a move from PostgreSQL (dumpdata,
    loaddata) carries over queue rows a process left when it died before sealing them; no after-commit
    seal runs on SQLite, so the writer that finds them chains them. Asked in the head's own statement: no
    query more per audited request. On PostgreSQL the seal after each commit looks (seal_pending).
    """
    if connection.features.has_select_for_update_skip_locked:
        skip_locked, queue = " FOR UPDATE SKIP LOCKED", ""
    else:
        skip_locked, queue = "", f", EXISTS (SELECT 1 FROM {QUEUE_TABLE} WHERE rejected = %s)"  # noqa: S608
    with connection.cursor() as cursor:
        # One statement tells a head another holds (no hash) from no head yet, the usual answer under load.
        cursor.execute(
            f"SELECT (SELECT last_hash FROM {HEAD_TABLE} WHERE id = 1{skip_locked}), "  # noqa: S608
            f"EXISTS (SELECT 1 FROM {HEAD_TABLE} WHERE id = 1){queue}",
            [False] if queue else None,
        )
        last_hash, exists, *queued = cursor.fetchone()
    if not exists:
        AuditChainHead.objects.get_or_create(pk=1)  # the first event ever
        return _take_head_noting_queue()
    return last_hash, bool(queued and queued[0])


def _link(last_hash: str, events: list[AuditEvent], texts: list[str], keyring: Keyring) -> None:
    """The chain step: link and sign each event after the head, insert them, move the head."""
    prev = last_hash
    for event, text in zip(events, texts, strict=True):
        event.prev_hash = prev
        event.hash = prev = audit_chain.link_hash_of_text(prev, text)
        event.signature, event.signing_key_id = audit_chain.sign(keyring, event.hash)
    # A request's event, or the few a seal chains under load, in one compiled INSERT: building it
    # with the ORM (bulk_create) would cost more than running it. Large batches (a probe run's) amortise the ORM.
    if len(events) > CompiledInsert.MAX_ROWS:
        AuditEvent.objects.bulk_create(events, batch_size=SEAL_BATCH)
    elif connection.vendor == "postgresql":
        _INSERT_EVENT_MOVING_HEAD.insert(*events, prefix_params=[prev])
        return  # the head moved in the same statement
    else:
        _INSERT_EVENT.insert(*events)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {HEAD_TABLE} SET last_hash = %s WHERE id = 1", [prev])  # noqa: S608


def _anything_queued() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {QUEUE_TABLE} WHERE rejected = %s LIMIT 1", [False])  # noqa: S608
        return cursor.fetchone() is not None


def _queued(event: AuditEvent, text: str, keyring: Keyring) -> PendingAuditEvent:
    """The queue row for an event whose content is `text`, with a new nonce its signature covers too."""
    nonce = secrets.token_hex(16)
    signature, key_id = audit_chain.sign_pending(keyring, text, nonce)
    content = {name: getattr(event, name) for name in AUDIT_CONTENT_FIELDS}
    content["nonce"] = nonce
    return PendingAuditEvent(**content, signature=signature, signing_key_id=key_id)


def _copy_problem(row: PendingAuditEvent, chained_as: int | None, first_with: dict[str, int]) -> str | None:
    """Why a queued row is a copy of another event (its nonce is taken), as a sentence fragment; None when not.

    `first_with` maps each nonce seen so far, rows taken in order of id, to its first queue row.
    """
    if chained_as is not None:
        return f"its nonce is already on chained event {chained_as}: it is a copy of an event chained before"
    first = first_with.setdefault(row.nonce or "", row.id)
    if first != row.id:
        return f"its nonce is also on queue row {first}: it is a copy of that queued event"
    return None


def _seal_after_commit() -> None:
    """Once per transaction: after commit, chain what was queued meanwhile (ours, or others' while we held the head)."""
    # run_on_commit holds (savepoint ids, callback, robust) triples; the stubs know only pairs.
    if not any(entry[1] is seal_pending for entry in connection.run_on_commit):
        transaction.on_commit(seal_pending, robust=True)  # a failure is logged; the next writer seals


def seal_pending() -> int:
    """Chain the queued events, oldest first, a batch per step; return how many were chained.

    Stops when the queue is empty or another transaction holds the head: that holder runs this
    again after its commit, so a queued event waits for one writer at most. A queued row whose
    signature fails (forged or edited in the database), or whose nonce another queued row or a
    chained event has (a copy), is marked rejected, never chained, and verify_audit names it.
    """
    if not _anything_queued():  # the usual answer, after every audited request
        return 0
    keyring = audit_chain.get_keyring()
    chained = 0
    while True:
        with transaction.atomic():
            last_hash = _take_head()
            if last_hash is None:
                break
            rows = sorted(PendingAuditEvent.objects.raw(_TAKE_QUEUED, [False, SEAL_BATCH]), key=attrgetter("id"))
            first_with: dict[str, int] = {}  # the oldest of copies in a batch is chained, the others refused
            problems = {
                # chained_as: a column _TAKE_QUEUED returns with each row
                row.id: audit_chain.pending_problem(keyring, row) or _copy_problem(row, row.chained_as, first_with)  # type: ignore[attr-defined]
                for row in rows
            }
            good = [row for row in rows if problems[row.id] is None]
            bad = [row for row in rows if problems[row.id] is not None]
            if bad:  # back on the queue, marked, for verify_audit to name
                logger.error(
                    "Queued audit events were not chained: %s.",
                    "; ".join(f"queue row {row.id}: {problems[row.id]}" for row in bad),
                )
                for row in bad:
                    row.rejected = True
                PendingAuditEvent.objects.bulk_create(bad)
            events = [AuditEvent(**{name: getattr(row, name) for name in AUDIT_CONTENT_FIELDS}) for row in good]
            if events:
                texts = [audit_chain.canonical_json(audit_chain.content_of(event)) for event in events]
                _link(last_hash, events, texts, keyring)
        if not rows:
            break
        chained += len(events)
        if not _anything_queued():
            break
    return chained


@dataclass(frozen=True)
class BrokenLink:
    event_id: int  # 0: at the end of the chain
    reason: str


@dataclass(frozen=True)
class ChainCheck:
    checked: int  # events found intact before the first broken link (up to the head, when intact)
    head: str  # hash of the newest intact event: an anchor to keep outside the database
    broken: BrokenLink | None
    pending: int = 0  # events queued for the chain (see seal_pending), each checked against its own signature
    later: int = 0  # events chained while the check ran, after the head it read: links and signatures checked

    def broken_sentence(self) -> str:
        """Where the chain breaks, why, and how much before it holds ("" when it is intact)."""
        if self.broken is None:
            return ""
        where = f"at event {self.broken.event_id}" if self.broken.event_id else "at the end of the chain"
        return f"The audit chain is broken {where}: {self.broken.reason}. {self.checked} event(s) before it are intact."


def verify_chain(*, expect_head: str = "", batch_size: int = 2000) -> ChainCheck:
    """Walk the chain oldest first, checking links, hashes and signatures; name the first broken link.

    `expect_head` is a head printed by an earlier check and kept outside the database: the chain
    must still hold it, so deleting its tail or truncating it shows even though every remaining
    row is intact.

    It takes no lock (verify_audit runs on a schedule beside the portal, and on SQLite a lock would
    stop every writer), so events are chained while it reads: the head is read first, and the walk
    must reach it; events after it were chained since, and are checked for links and signatures, but
    are the next check's to count. prune_audit calls this with the head held, so nothing moves then.
    """
    keyring = audit_chain.get_keyring()
    for _attempt in range(3):
        head = AuditChainHead.objects.filter(pk=1).first()
        anchor = head.anchor_hash if head else ""
        check = _walk_chain(head, keyring, expect_head, batch_size)
        # A prune_audit run that committed after the head was read moved the chain's start: walk again.
        if check.broken is None or _head_now()[1] == anchor:
            break
    pending = 0
    broken = check.broken
    # Queued rows whose nonce a chained event carries: copies of events chained before (one query, by the index).
    # It reads the queue and the chain in one statement, after the walk, so an event sealed meanwhile (taken
    # off the queue and chained in one transaction) is seen in one of them, never both, never neither.
    queued_nonces = PendingAuditEvent.objects.filter(nonce__isnull=False).values("nonce")
    chained_as = dict(AuditEvent.objects.filter(nonce__in=queued_nonces).values_list("nonce", "id"))
    first_with: dict[str, int] = {}
    for row in PendingAuditEvent.objects.order_by("id").iterator(chunk_size=batch_size):
        problem = audit_chain.pending_problem(keyring, row) or _copy_problem(row, chained_as.get(row.nonce), first_with)
        if row.rejected:
            refused = "it was refused on its way into the chain"
            problem = f"{refused}: {problem}" if problem else refused
        if problem and broken is None:
            broken = BrokenLink(0, f"an event waiting to be chained (queue row {row.id}) does not hold: {problem}")
        pending += 1
    return replace(check, broken=broken, pending=pending)


def _head_now() -> tuple[str, str]:
    """The chain's (last hash, anchor) as they are now, ("", "") without a head row."""
    row = AuditChainHead.objects.values_list("last_hash", "anchor_hash").filter(pk=1).first()
    return row or ("", "")


def _walk_chain(head: AuditChainHead | None, keyring: Keyring, expect_head: str, batch_size: int) -> ChainCheck:
    """verify_chain's walk of the chained events, up to `head` as read before it and past it (see verify_chain)."""
    anchor = head.anchor_hash if head else ""
    last_hash = head.last_hash if head else ""
    # A chain that starts after an anchor must say why: a signed audit.pruned event names it.
    anchor_named = not anchor
    expected_found = not expect_head or (expect_head == anchor)
    expected_prev = upto = anchor
    reached = last_hash == anchor  # a head with no event after the anchor (an empty chain) is reached at once
    after_head: list[str] = []  # hashes of the events chained since the head was read, oldest first
    checked = first_id = 0
    problem: str | None
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=batch_size):
        first_id = first_id or event.id
        if event.prev_hash != expected_prev:
            problem = "its link to the previous event does not match"
        else:
            problem = event.seal_problem(keyring)
        if problem:
            return ChainCheck(checked + len(after_head), expected_prev, BrokenLink(event.id, problem))
        if event.action == Action.AUDIT_PRUNED and event.details.get("last_hash") == anchor:
            anchor_named = True
        expected_found = expected_found or event.hash == expect_head
        expected_prev = event.hash
        if reached:
            after_head.append(event.hash)
        else:
            checked += 1
            upto = event.hash
            reached = event.hash == last_hash
    broken = None
    if not reached:  # the head names an event the walk never met: the newest events were deleted
        broken = BrokenLink(0, "events at the end of the chain are missing")
    # A writer moves the head in the transaction that chains its events, so once they are visible the
    # head is past them. Still at them (or before): the head was moved back, or events added without it.
    elif after_head and _head_now()[0] in (last_hash, *after_head[:-1]):
        broken = BrokenLink(
            0, "its head is behind its newest events: it was moved back, or events were added without it"
        )
    elif not anchor_named:
        broken = BrokenLink(first_id, "the chain starts after events that no recorded prune_audit run removed")
    elif not expected_found:
        broken = BrokenLink(
            0,
            f"the expected head {expect_head} is not in the chain: events up to it were deleted, "
            "or pruned since (then check against a head recorded after the last prune)",
        )
    if broken is not None:
        return ChainCheck(checked + len(after_head), expected_prev, broken)
    return ChainCheck(checked, upto, None, later=len(after_head))


class AuditChainError(Exception):
    """The chain cannot be re-signed as it stands; the sentence says why."""


def resign_batch(keyring: Keyring, batch_size: int) -> int:
    """Sign up to batch_size events, oldest first, with the keyring's first key; return how many.

    Re-signing changes no hash, so the links and every anchor kept outside stay valid. Each
    event must still hold under the key that signed it: a forged or edited row is refused, not
    laundered under the new key.
    """
    primary = keyring.primary_id
    with transaction.atomic():
        batch = list(AuditEvent.objects.exclude(signing_key_id=primary).select_for_update().order_by("id")[:batch_size])
        for event in batch:
            problem = event.seal_problem(keyring)
            if problem:
                raise AuditChainError(
                    f"Event {event.id} cannot be re-signed: {problem}. Nothing in this batch was changed."
                )
            event.signature, event.signing_key_id = audit_chain.sign(keyring, event.hash)
        AuditEvent.objects.write_signatures(batch)
    return len(batch)


def filter_moment(name: str, raw: str, *, whole_day: bool = False) -> datetime:
    """A `since`/`until` value as an aware datetime: a date and time as it is; a date at its first moment.

    A bare date is a day in the portal's TIME_ZONE. With `whole_day` it stands for the midnight that ends it,
    so that `until` a date (a strict cut) includes that day, as a person picking "Until 23 November" means;
    a date and time stays exact (the API's paging relies on it).
    """
    sentence = f"{name} must be a date or time like 2026-11-23 or 2026-11-23T14:00:00Z, not {raw!r}"
    try:
        # A date first: parse_datetime reads a bare date too, as its first moment.
        day = parse_date(raw)
        if day is not None and whole_day and day == date.max:
            return datetime.max.replace(tzinfo=UTC)  # until the end of the last day there is: no bound at all
        if day is not None:
            moment: datetime | None = datetime.combine(day + timedelta(days=1) if whole_day else day, time.min)
        else:
            moment = parse_datetime(raw)
        if moment is not None:
            if timezone.is_naive(moment):
                moment = timezone.make_aware(moment)
            # The database compares in UTC; an offset can push a moment past year 1 or 9999.
            return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise RuleError(f"{sentence}: that day, hour or offset does not exist.", field=name) from None
    raise RuleError(f"{sentence}.", field=name)


# Newest first. By id, the order of the chain; but with a time range, by time, then id: the database then
# walks the created_at index from the range's end, where by id it would first pass every later event (a
# range ending in October, read in November, costs a month of rows). Ids follow time closely but not
# exactly (an event is stamped before it is linked), so the two orders may differ by a few milliseconds.
BY_ID = ("-id",)
BY_TIME = ("-created_at", "-id")


def ordering_for(query) -> tuple[str, ...]:
    """How the audit page and API order the events a query asks for (BY_TIME with since or until)."""
    return BY_TIME if query.get("since") or query.get("until") else BY_ID


def before_event(events, ordering: tuple[str, ...], before_id: int):
    """The events listed after the event `before_id` in `ordering` (the audit page's Next link), in one query."""
    if ordering == BY_ID:
        return events.filter(id__lt=before_id)
    # Read from the same list, so a position cannot be taken from an event the reader may not see.
    moment = models.Subquery(events.filter(pk=before_id).order_by().values("created_at"))
    # The first condition alone bounds the index scan; the second drops the event and its equals in time after it.
    return events.filter(created_at__lte=moment).filter(models.Q(created_at__lt=moment) | models.Q(id__lt=before_id))


def filter_events(events, query):
    """Apply the list filters shared by the audit page and API: team, actor, action, gateway, since, until."""
    if query.get("team"):
        events = events.filter(team_slug=query["team"])
    if query.get("actor"):
        # As Django stores names (NFKC): "zoë" typed with a combining diaeresis is zoë.
        events = events.filter(actor_username=get_user_model().normalize_username(query["actor"]))
    if query.get("action"):
        events = events.filter(action=query["action"])
    if query.get("gateway"):
        events = events.filter(gateway_slug=query["gateway"])
    for name, lookup, whole_day in (("since", "created_at__gte", False), ("until", "created_at__lt", True)):
        raw = query.get(name, "")
        if raw:
            events = events.filter(**{lookup: filter_moment(name, raw, whole_day=whole_day)})
    return events


def _readable(value) -> str:
    """One detail value as a person reads it: no Python None, True or {'from': ...}."""
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        if set(value) == {"from", "to"}:
            return f"{_readable(value['from'])} → {_readable(value['to'])}"
        return ", ".join(f"{name}: {_readable(part)}" for name, part in value.items()) or "none"
    if isinstance(value, list):
        return ", ".join(_readable(part) for part in value) or "none"
    return str(value)


def readable_details(details: dict, *, skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """An event's details as (name, text) pairs for a page; each change in `changed` is a pair of its own."""
    pairs: list[tuple[str, str]] = []
    for name, value in (details or {}).items():
        if name in skip:
            continue
        if name == "changed" and isinstance(value, dict):
            pairs.extend((field, _readable(change)) for field, change in value.items())
        else:
            pairs.append((name, _readable(value)))
    return pairs


def audit_row(event: AuditEvent) -> dict:
    """What the audit page shows of an event: the target by name (a key's label, not its fingerprint)."""
    details = event.details if isinstance(event.details, dict) else {}
    label = details.get("label") if event.gateway_slug else None
    if isinstance(label, str) and label:
        return {
            "event": event,
            "target": label,
            "target_id": event.target,
            "details": readable_details(details, skip=("label",)),
        }
    return {"event": event, "target": event.target, "target_id": "", "details": readable_details(details)}
