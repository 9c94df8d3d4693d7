"""Writing and checking the audit chain.

`record()` is called inside the transaction of the change it describes, so an action and
its audit row are committed together or not at all. Writers take a row lock on the single
`AuditChainHead`, which keeps the chain linear even with concurrent requests on PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest

from portal.errors import RuleError
from portal.models import AuditChainHead, AuditEvent, Team


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    if settings.USE_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.META.get("REMOTE_ADDR") or None


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
        event.hash = event.compute_hash()
        event.save()
        head.last_hash = event.hash
        head.save(update_fields=["last_hash"])
    return event


@dataclass(frozen=True)
class BrokenLink:
    event_id: int
    reason: str


def verify_chain(batch_size: int = 2000) -> tuple[int, BrokenLink | None]:
    """Walk the chain oldest first; return how many events were checked and the first broken link."""
    head = AuditChainHead.objects.filter(pk=1).first()
    expected_prev = head.anchor_hash if head else ""
    checked = 0
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=batch_size):
        if event.prev_hash != expected_prev:
            return checked, BrokenLink(event.id, "its link to the previous event does not match")
        if event.compute_hash() != event.hash:
            return checked, BrokenLink(event.id, "its content no longer matches its hash")
        expected_prev = event.hash
        checked += 1
    if head and checked and head.last_hash != expected_prev:
        return checked, BrokenLink(0, "events at the end of the chain are missing")
    return checked, None


def filter_events(events, query):
    """Apply the list filters shared by the audit page and API: team, actor, action, gateway, since, until."""
    from django.utils.dateparse import parse_date, parse_datetime

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
        if not raw:
            continue
        moment = parse_datetime(raw)
        if moment is None and parse_date(raw):
            moment = parse_datetime(raw + "T00:00:00+00:00")
        if moment is None:
            raise RuleError(
                f"{name} must be a date or time like 2026-11-23 or 2026-11-23T14:00:00Z, not {raw!r}.", field=name
            )
        events = events.filter(**{lookup: moment})
    return events
