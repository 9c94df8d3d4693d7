"""Writing and checking the audit chain.

`record()` is called inside the transaction of the change it describes, so an action and
its audit row are committed together or not at all. Writers take a row lock on the single
`AuditChainHead`, which keeps the chain linear even with concurrent requests on PostgreSQL.
What a row's hash covers and how it is signed is in `portal/audit_chain.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from portal import audit_chain
from portal.crypto import Keyring
from portal.errors import RuleError
from portal.models import Action, AuditChainHead, AuditEvent, Team


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


def _chain_head() -> AuditChainHead:
    head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        AuditChainHead.objects.get_or_create(pk=1)
        head = AuditChainHead.objects.select_for_update().get(pk=1)
    return head


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
    """Append one event to the chain. `actor` defaults to the request's user; None means the system."""
    if actor is None and request is not None and getattr(request, "user", None) is not None:
        actor = request.user if request.user.is_authenticated else None
    keyring = audit_chain.get_keyring()
    with transaction.atomic():
        head = _chain_head()
        event = AuditEvent(
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
            prev_hash=head.last_hash,
        )
        event.seal(keyring)
        event.save()
        head.last_hash = event.hash
        head.save(update_fields=["last_hash"])
    return event


@dataclass(frozen=True)
class BrokenLink:
    event_id: int  # 0: at the end of the chain
    reason: str


@dataclass(frozen=True)
class ChainCheck:
    checked: int  # events found intact before the first broken link
    head: str  # hash of the newest intact event: an anchor to keep outside the database
    broken: BrokenLink | None


def verify_chain(*, expect_head: str = "", batch_size: int = 2000) -> ChainCheck:
    """Walk the chain oldest first, checking links, hashes and signatures; name the first broken link.

    `expect_head` is a head printed by an earlier check and kept outside the database: the chain
    must still hold it, so deleting its tail or truncating it shows even though every remaining
    row is intact.
    """
    keyring = audit_chain.get_keyring()
    head = AuditChainHead.objects.filter(pk=1).first()
    anchor = head.anchor_hash if head else ""
    # A chain that starts after an anchor must say why: a signed audit.pruned event names it.
    anchor_named = not anchor
    expected_found = not expect_head or (expect_head == anchor)
    expected_prev = anchor
    checked = first_id = 0
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=batch_size):
        first_id = first_id or event.id
        if event.prev_hash != expected_prev:
            problem = "its link to the previous event does not match"
        else:
            problem = event.seal_problem(keyring)
        if problem:
            return ChainCheck(checked, expected_prev, BrokenLink(event.id, problem))
        if event.action == Action.AUDIT_PRUNED and event.details.get("last_hash") == anchor:
            anchor_named = True
        expected_found = expected_found or event.hash == expect_head
        expected_prev = event.hash
        checked += 1
    broken = None
    if (head.last_hash if head else "") != expected_prev:
        broken = BrokenLink(0, "events at the end of the chain are missing")
    elif not anchor_named:
        broken = BrokenLink(first_id, "the chain starts after events that no recorded prune_audit run removed")
    elif not expected_found:
        broken = BrokenLink(
            0,
            f"the expected head {expect_head} is not in the chain: events up to it were deleted, "
            "or pruned since (then check against a head recorded after the last prune)",
        )
    return ChainCheck(checked, expected_prev, broken)


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


def filter_moment(name: str, raw: str) -> datetime:
    """A `since`/`until` value as an aware datetime: a date (midnight UTC) or a date and time."""
    sentence = f"{name} must be a date or time like 2026-11-23 or 2026-11-23T14:00:00Z, not {raw!r}"
    try:
        moment = parse_datetime(raw)
        if moment is None:
            day = parse_date(raw)
            moment = datetime.combine(day, time.min, tzinfo=UTC) if day else None
        if moment is not None:
            if timezone.is_naive(moment):
                moment = timezone.make_aware(moment)
            # The database compares in UTC; an offset can push a moment past year 1 or 9999.
            return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise RuleError(f"{sentence}: that day, hour or offset does not exist.", field=name) from None
    raise RuleError(f"{sentence}.", field=name)


def filter_events(events, query):
    """Apply the list filters shared by the audit page and API: team, actor, action, gateway, since, until."""
    if query.get("team"):
        events = events.filter(team_slug=query["team"])
    if query.get("actor"):
        events = events.filter(actor_username=query["actor"])
    if query.get("action"):
        events = events.filter(action=query["action"])
    if query.get("gateway"):
        events = events.filter(gateway_slug=query["gateway"])
    for name, lookup in (("since", "created_at__gte"), ("until", "created_at__lt")):
        raw = query.get(name, "")
        if raw:
            events = events.filter(**{lookup: filter_moment(name, raw)})
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
    pairs = []
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
