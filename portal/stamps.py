"""Stamps such as "last used" and "last downloaded", written at most once a minute per row.

A stamp written on every request makes every request of one user queue on that row's lock (and,
on SQLite, on the one writer). `touch` writes only when the stamp is empty or older than the
interval: the loaded row answers that without a query, and the UPDATE repeats the test in its
WHERE, so of two requests that both saw a stale stamp only one writes. A row the WHERE does not
match is neither written nor locked.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone

STAMP_INTERVAL = timedelta(minutes=1)


def is_fresh(
    stamp: datetime | None, now: datetime, every: timedelta = STAMP_INTERVAL, since: datetime | None = None
) -> bool:
    return stamp is not None and now - stamp < every and (since is None or stamp >= since)


def touch(
    instance: models.Model,
    field: str,
    *,
    every: timedelta = STAMP_INTERVAL,
    since: datetime | None = None,
    **also,
) -> bool:
    """Set `field` to now, with the `also` columns, unless it was set less than `every` ago; True if written.

    `since` is a moment the stamp must not be older than, whatever the interval: for a download,
    the key's last change, so that a download right after a rotation is seen as after it.
    `also` may hold expressions such as F("count") + 1: such a counter then counts the minutes in
    which something happened, not every time (the audit trail has each one).
    """
    now = timezone.now()
    if is_fresh(getattr(instance, field), now, every, since):
        return False
    stale = Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lt": now - every})
    if since is not None:
        stale |= Q(**{f"{field}__lt": since})
    rows = type(instance)._base_manager.filter(pk=instance.pk).filter(stale)
    if not rows.update(**{field: now}, **also):
        return False
    setattr(instance, field, now)
    for name, value in also.items():
        if not hasattr(value, "resolve_expression"):
            setattr(instance, name, value)
    return True
