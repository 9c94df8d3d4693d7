"""Stamps such as "last used" and "last downloaded", written at most once a minute per row.

A stamp written on every request makes every request of one user queue on that row's lock (and,
on SQLite, on the one writer). `touch` writes only when the stamp is empty or older than the
interval: the loaded row answers that without a query. The UPDATE then writes only if the row
still holds the stamp that was read (compare and set), so of two requests that both saw a stale
stamp only one writes. A row the WHERE does not match is neither written nor locked.

The UPDATE's SQL is compiled once per row shape (portal.compiled_sql.CompiledUpdate): a developer
whose requests come minutes apart writes a stamp on nearly every one, and the ORM's compiling of
the UPDATE costs more than running it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone

from portal.compiled_sql import CompiledUpdate

STAMP_INTERVAL = timedelta(minutes=1)


@functools.cache
def _stamp_update(
    model: type[models.Model], field: str, also: tuple[str, ...], increments: tuple[str, ...]
) -> CompiledUpdate:
    return CompiledUpdate(model, fields=(field, *also), expect=field, increments=increments)


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
    increments: Sequence[str] = (),
    **also,
) -> bool:
    """Set `field` to now, with the `also` columns, unless it was set less than `every` ago; True if written.

    `since` is a moment the stamp must not be older than, whatever the interval: for a download,
    the key's last change, so that a download right after a rotation is seen as after it.
    `increments` are counters raised by one in the same UPDATE (the instance keeps the count it
    read): such a counter counts the minutes in which something happened, not every time (the
    audit trail has each one).
    """
    now = timezone.now()
    stamp = getattr(instance, field)
    if is_fresh(stamp, now, every, since):
        return False
    update = _stamp_update(type(instance), field, tuple(also), tuple(increments))
    if not update.update(instance.pk, stamp, {field: now, **also}):
        return False
    setattr(instance, field, now)
    for name, value in also.items():
        setattr(instance, name, value)
    return True
