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
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from gateways import connections
from gateways.models import Assignment, Device, GatewayKey, GatewayKeyQuerySet
from portal.models import Team
from portal.permissions import is_staff

ROWS = 20


@dataclass(frozen=True)
class TeamLink:
    """Where one team's keys of a section are all listed: its team page, filtered (?state=), at its Keys card."""

    name: str
    url: str
    count: int


@dataclass(frozen=True)
class Section:
    slug: str
    title: str
    fix: str  # what to do about a row, on the page it links to
    rows: list
    total: int
    more_url: str = ""  # a list of all of them, where one exists
    # For the key sections, which span teams: each team's filtered key table, most keys first (at most ROWS).
    team_links: tuple[TeamLink, ...] = ()
    other_teams: int = 0  # teams with some of them beyond those linked

    @property
    def more(self) -> int:
        return self.total - len(self.rows)


def failing_keys(keys: GatewayKeyQuerySet) -> QuerySet[GatewayKey]:
    """Keys failing their last probe (GatewayKey.is_failing): usable, probed since the last rotation or change."""
    return keys.failing().order_by("-last_probe_at", "label")


def expiring_keys(keys: QuerySet[GatewayKey], now) -> QuerySet[GatewayKey]:
    """Keys that expire within EXPIRY_WARNING_DAYS, or have expired and are still in use (not revoked)."""
    window = now + timedelta(days=settings.EXPIRY_WARNING_DAYS)
    return keys.filter(revoked_at__isnull=True, is_enabled=True, expires_at__lte=window).order_by("expires_at")


def unused_keys(keys: GatewayKeyQuerySet, now) -> QuerySet[GatewayKey]:
    """Usable keys older than CONNECTION_STALE_DAYS that no holder downloaded or fetched in that time."""
    cutoff = now - timedelta(days=settings.CONNECTION_STALE_DAYS)
    fetched = Assignment.objects.filter(last_download_at__gte=cutoff).values("key_id")
    fetched_live = Device.objects.filter(last_seen_at__gte=cutoff).values("key_id")
    return (
        keys.usable()
        .filter(created_at__lt=cutoff)
        .exclude(pk__in=fetched)
        .exclude(pk__in=fetched_live)
        .order_by("created_at")
    )


def never_downloaded(assignments: QuerySet[Assignment], now) -> QuerySet[Assignment]:
    """Assignments of usable keys never downloaded nor fetched live (connections.never_downloaded), oldest first."""
    return assignments.filter(connections.never_downloaded(now)).order_by("created_at")


def _count_of(assignments: QuerySet[Assignment]) -> Coalesce:
    """How many of the key's assignments match, as a column of the key."""
    counted = assignments.filter(key=OuterRef("pk")).order_by().values("key").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def pending_rollout() -> QuerySet[Assignment]:
    """Holders still on the old secret (connections.behind_the_rotation), as the stale list and the key page say."""
    return Assignment.objects.filter(connections.behind_the_rotation())


def incomplete_rollouts(keys: QuerySet[GatewayKey]) -> QuerySet[GatewayKey]:
    """Rotated keys (not revoked) with holders still on an earlier secret (pending_rollout), newest rotation first."""
    return (
        keys.filter(rotated_at__isnull=False, revoked_at__isnull=True)
        .annotate(pending=_count_of(pending_rollout()), holders=_count_of(Assignment.objects.all()))
        .filter(pending__gt=0)
        .order_by("-rotated_at")
    )


# The key sections that are also filters of a team page's key table (?state=), with their titles.
KEY_STATES = ("failing", "expiring", "unused")


def key_state_title(state: str) -> str:
    return {
        "failing": "Keys failing their last probe",
        "expiring": f"Keys expiring within {settings.EXPIRY_WARNING_DAYS} days",
        "unused": f"Keys nobody fetched in {settings.CONNECTION_STALE_DAYS} days",
    }[state]


def keys_in_state(keys: GatewayKeyQuerySet, state: str, now=None) -> QuerySet[GatewayKey]:
    """The keys of one of KEY_STATES, in the dashboard's order: the same rule on the dashboard and the team page."""
    now = now or timezone.now()
    if state == "failing":
        return failing_keys(keys)
    return expiring_keys(keys, now) if state == "expiring" else unused_keys(keys, now)


def _section(slug: str, title: str, fix: str, rows: QuerySet, more_url: str = "") -> Section:
    """The first ROWS rows, and how many there are in all."""
    page = list(rows[:ROWS])
    total = len(page) if len(page) < ROWS else rows.count()
    return Section(slug, title, fix, page, total, more_url)


def _key_section(state: str, fix: str, keys: GatewayKeyQuerySet, now) -> Section:
    """A key section: the first ROWS keys, and when there are more, a link per team to its filtered key table.

    The count is taken team by team in the one query that counted them all, so the links cost nothing more.
    """
    rows = keys_in_state(keys, state, now)
    page = list(rows[:ROWS])
    if len(page) < ROWS:
        return Section(state, key_state_title(state), fix, page, len(page))
    per_team = list(rows.order_by().values("team__slug", "team__name").annotate(n=Count("pk")))
    per_team.sort(key=lambda team: (-team["n"], team["team__name"].casefold(), team["team__slug"]))
    links = tuple(
        TeamLink(team["team__name"], f"{reverse('team', args=[team['team__slug']])}?state={state}#keys", team["n"])
        for team in per_team[:ROWS]
    )
    total = sum(team["n"] for team in per_team)
    return Section(
        state, key_state_title(state), fix, page, total, team_links=links, other_teams=len(per_team) - len(links)
    )


def dashboard_for(user) -> list[Section]:
    """The dashboard's sections for the teams the user administers (staff: every team)."""
    now = timezone.now()
    keys = GatewayKey.objects.select_related("team", "gateway")
    assignments = Assignment.objects.select_related("user", "key__team", "key__gateway")
    if not is_staff(user):  # staff see every team: no filter to evaluate
        teams = Team.objects.administered_by(user)
        keys, assignments = keys.filter(team__in=teams), assignments.filter(key__team__in=teams)
    return [
        _key_section(
            "failing",
            "Open the key, read the probe's hint, then fix the gateway or rotate the secret and probe again.",
            keys,
            now,
        ),
        _key_section(
            "expiring",
            "Set a later expiry in the key's settings, or rotate in a new secret with its new expiry.",
            keys,
            now,
        ),
        _key_section("unused", "Revoke a key nobody uses, or check that its holders still have it.", keys, now),
        _section(
            "never_downloaded",
            "Assignments never downloaded",
            "Remind the holder to open My set-up, or remove the assignment.",
            never_downloaded(assignments, now),
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
