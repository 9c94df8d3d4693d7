"""What needs a team admin's attention, for the dashboard: a few queries whatever the data size.

Each section is one query for its first rows and one for its count, scoped to the teams the
user administers (staff: all); every figure is a column of the key or the assignment (the
last download and the last probe are written there when they happen), so nothing is counted
row by row in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from gateways.models import Assignment, GatewayKey
from portal.models import Team

ROWS = 20


@dataclass(frozen=True)
class Section:
    slug: str
    title: str
    fix: str  # what to do about a row, on the page it links to
    rows: list
    total: int
    more_url: str = ""  # a list of all of them, where one exists

    @property
    def more(self) -> int:
        return self.total - len(self.rows)


def _teams(user) -> QuerySet[Team]:
    return Team.objects.administered_by(user)


def failing_keys(keys: QuerySet[GatewayKey]) -> QuerySet[GatewayKey]:
    """Usable keys whose last probe failed."""
    return keys.usable().exclude(last_probe_verdict__in=["", "ok"]).order_by("-last_probe_at", "label")


def expiring_keys(keys: QuerySet[GatewayKey], now) -> QuerySet[GatewayKey]:
    """Keys that expire within EXPIRY_WARNING_DAYS, or have expired and are still in use (not revoked)."""
    window = now + timedelta(days=settings.EXPIRY_WARNING_DAYS)
    return keys.filter(revoked_at__isnull=True, is_enabled=True, expires_at__lte=window).order_by("expires_at")


def unused_keys(keys: QuerySet[GatewayKey], now) -> QuerySet[GatewayKey]:
    """Usable keys older than CONNECTION_STALE_DAYS that no holder downloaded or fetched in that time."""
    cutoff = now - timedelta(days=settings.CONNECTION_STALE_DAYS)
    recent = Assignment.objects.filter(key=OuterRef("pk"), last_download_at__gte=cutoff)
    return keys.usable().filter(created_at__lt=cutoff).filter(~Exists(recent)).order_by("created_at")


def never_downloaded(assignments: QuerySet[Assignment]) -> QuerySet[Assignment]:
    """Assignments of usable keys whose holder never downloaded the set-up, oldest first."""
    usable = GatewayKey.objects.usable().filter(pk=OuterRef("key_id"))
    return assignments.filter(last_download_at__isnull=True).filter(Exists(usable)).order_by("created_at")


def pending_rollout() -> Q:
    """Holders still on the old secret: assigned before the rotation, with no download since.

    Static holders only: a download holds the secret, so until its holder downloads again it has
    the old one. A device that fetches its set-up live (issue 11) would never be pending: exclude
    such assignments here once the portal knows of devices.
    """
    rotated = F("rotated_at")
    before = Q(assignments__created_at__lt=rotated)
    stale = Q(assignments__last_download_at__isnull=True) | Q(assignments__last_download_at__lt=rotated)
    return before & stale


def incomplete_rollouts(keys: QuerySet[GatewayKey]) -> QuerySet[GatewayKey]:
    """Rotated keys (not revoked) with holders who have not downloaded since, newest rotation first."""
    return (
        keys.filter(rotated_at__isnull=False, revoked_at__isnull=True)
        .annotate(pending=Count("assignments", filter=pending_rollout()), holders=Count("assignments"))
        .filter(pending__gt=0)
        .order_by("-rotated_at")
    )


def _section(slug: str, title: str, fix: str, rows: QuerySet, more_url: str = "") -> Section:
    return Section(slug, title, fix, list(rows[:ROWS]), rows.count(), more_url)


def dashboard_for(user) -> list[Section]:
    """The dashboard's sections for the teams the user administers (staff: every team)."""
    now = timezone.now()
    teams = _teams(user)
    keys = GatewayKey.objects.filter(team__in=teams).select_related("team", "gateway")
    assignments = Assignment.objects.filter(key__team__in=teams).select_related("user", "key__team", "key__gateway")
    return [
        _section(
            "failing",
            "Keys failing their last probe",
            "Open the key, read the probe's hint, then fix the gateway or rotate the secret and probe again.",
            failing_keys(keys),
        ),
        _section(
            "expiring",
            f"Keys expiring within {settings.EXPIRY_WARNING_DAYS} days",
            "Set a later expiry in the key's settings, or rotate in a new secret.",
            expiring_keys(keys, now),
        ),
        _section(
            "unused",
            f"Keys nobody fetched in {settings.CONNECTION_STALE_DAYS} days",
            "Revoke a key nobody uses, or check that its holders still have it.",
            unused_keys(keys, now),
        ),
        _section(
            "never_downloaded",
            "Assignments never downloaded",
            "Remind the holder to open My set-up, or remove the assignment.",
            never_downloaded(assignments),
            f"{reverse('connections')}?state=never_downloaded",
        ),
        _section(
            "rollouts",
            "Rotations not yet rolled out",
            "Holders who downloaded before the rotation still have the old secret; ask them to download again.",
            incomplete_rollouts(keys),
            f"{reverse('connections')}?state=stale",
        ),
    ]
