"""Accounts renamed in the admin site, read from the audit trail: rows name accounts by user name, never by id.

Each rename writes an `account.updated` row naming the account by its new name and recording `changed.username`
{"from", "to"}. Walking those rows back from an account's name gives the names it had (names_held);
walking them forward from a name an old row gives gives the name that account has now (current_name).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from django.db.models import Q

from portal.models import Action, AuditEvent, PendingAuditEvent


class Rename(NamedTuple):
    at: datetime
    old: str
    new: str


def rename_rows(since: datetime) -> list[Rename]:
    """Every account rename recorded since `since`, oldest first (those still queued too): two queries."""
    renamed = Q(action=Action.ACCOUNT_UPDATED, created_at__gte=since, details__changed__has_key="username")
    rows = [
        *AuditEvent.objects.filter(renamed).values_list("created_at", "details"),
        *PendingAuditEvent.objects.filter(renamed, rejected=False).values_list("created_at", "details"),
    ]
    renames = []
    for created_at, details in rows:
        change = details.get("changed", {}).get("username") if isinstance(details, dict) else None
        if isinstance(change, dict) and isinstance(change.get("from"), str) and isinstance(change.get("to"), str):
            renames.append(Rename(created_at, change["from"], change["to"]))
    renames.sort(key=lambda rename: rename.at)
    return renames


def current_name(name: str, at: datetime, renames: list[Rename]) -> str:
    """The name the account called `name` at `at` has now: each later rename from the name followed is followed."""
    for rename in renames:
        if rename.at >= at and rename.old == name:
            name = rename.new
    return name


def names_held(user) -> list[tuple[str, datetime, datetime | None]]:
    """Each user name the account has had since it was made, with when it held it (from, until; None for now).

    Staff rename an account in the admin site, which writes an `account.updated` row naming the account by its new
    name and recording `changed.username` {"from", "to"}; rows name accounts by user name, never by id. So the
    renames since the account was made are walked back from its current name, newest first: each one to the name
    it then had gives the name before (rename_rows). Two queries, however many renames.
    """
    name, until = user.get_username(), None
    held: list[tuple[str, datetime, datetime | None]] = []
    for rename in reversed(rename_rows(since=user.date_joined)):
        if rename.new != name:
            continue  # another account's rename
        held.append((name, rename.at, until))
        name, until = rename.old, rename.at
    held.append((name, user.date_joined, until))
    return held
