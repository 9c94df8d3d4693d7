"""Claim due work in the database, so several servers on one database share one schedule.

Each server runs the same timer (`probe --due`, `notify`). Before doing a row's work a run
marks it with a claim: its own token and the time. A row is free when it has no claim or
only one older than the lease (a run that died). The claim is one conditional UPDATE whose
WHERE repeats "due and free", so of two runs that reach the same row one gets it and the
other does not: PostgreSQL re-checks the WHERE against the row another transaction just
updated, and picks candidates with SELECT … FOR UPDATE SKIP LOCKED so a run never waits on
rows another is claiming; SQLite serialises the whole claim (BEGIN IMMEDIATE, settings).
This is healthchecks' `sendalerts` pattern.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet


def free_of_claims(*, claimed_at: str, now: datetime, lease: timedelta) -> Q:
    """Rows nobody holds: never claimed, released, or claimed longer ago than the lease."""
    return Q(**{f"{claimed_at}__isnull": True}) | Q(**{f"{claimed_at}__lt": now - lease})


def claim(
    due: QuerySet,
    *,
    now: datetime,
    lease: timedelta,
    limit: int,
    claimed_at: str = "claimed_at",
    claim_field: str = "claim",
) -> uuid.UUID | None:
    """Claim up to `limit` rows of `due` that nobody holds; returns the claim's token, or None if none was free."""
    free = free_of_claims(claimed_at=claimed_at, now=now, lease=lease)
    token = uuid.uuid4()
    with transaction.atomic():
        candidates = due.filter(free).select_for_update(skip_locked=True, of=("self",)).order_by("pk")
        ids = list(candidates.values_list("pk", flat=True)[:limit])
        if not ids:
            return None
        claimed = due.filter(pk__in=ids).filter(free).update(**{claimed_at: now, claim_field: token})
    return token if claimed else None


def release(model, token: uuid.UUID, *, claimed_at: str = "claimed_at", claim_field: str = "claim") -> int:
    """Let go of every row the claim holds (the work is recorded, or given back)."""
    return model.objects.filter(**{claim_field: token}).update(**{claimed_at: None, claim_field: None})
