"""Reads shared by the pages and the API: small query helpers, no side effects."""

from __future__ import annotations

from django.core.paginator import Page, Paginator
from django.db.models import Count, Exists, OuterRef, QuerySet
from django.urls import reverse

from gateways.models import (
    Assignment,
    AssignmentQuerySet,
    Device,
    DeviceQuerySet,
    GatewayKey,
    refused_since,
    replacement_columns,
)
from portal.compiled_sql import CompiledRead
from portal.models import Membership, Team
from portal.ordering import ReadingOrder

# Rows a page's long lists show at once (a team's members, a key's assignees and devices), as /users/ does.
ROWS_PER_PAGE = 100


def my_assignments(user) -> AssignmentQuerySet:
    """The user's own assignments: the configurations they can download, team by team.

    With what their notices need in the same query (Assignment.notice): whether a live device must install
    again, since when the gateway refuses the key, and which key replaced a revoked one.
    """
    behind = Device.objects.filter(assignment=OuterRef("pk")).live().needing_reinstall()
    return (
        Assignment.objects.filter(user=user)
        .select_related("key__gateway", "key__team", "user")
        .annotate(
            live_device_to_reinstall=Exists(behind),
            key_refused_at=refused_since("key__"),
            **replacement_columns(),
        )
        .order_by(ReadingOrder("key__team__name"), "key__team__name", ReadingOrder("key__label"), "key__label")
    )


# Every download starts here: its SQL is compiled once per thread (portal.compiled_sql).
_ASSIGNMENT_WITH_KEY = CompiledRead(Assignment, where=("user_id", "pk"), related=("key", "key__gateway", "key__team"))


def my_assignment(user, assignment_id: int) -> Assignment | None:
    """One of the user's own assignments, with what a download needs (its key, gateway and team), or None.

    The hottest read of the portal: no join to the user (it is the caller) and no ordering.
    """
    assignment = _ASSIGNMENT_WITH_KEY.get(user.pk, assignment_id)
    if assignment is not None:
        assignment.user = user
    return assignment


def devices_with_context(devices: DeviceQuerySet) -> DeviceQuerySet:
    """Devices with what their lists show: key, gateway, team and owner, newest first."""
    return devices.select_related("key__gateway", "key__team", "user").order_by("-created_at")


def my_devices(user) -> DeviceQuerySet:
    """The user's devices, removed ones included, but not an install link replaced before its use (listed())."""
    return devices_with_context(Device.objects.listed().filter(user=user))


def team_devices(team) -> DeviceQuerySet:
    """The team's devices, as my_devices lists a user's."""
    return devices_with_context(Device.objects.listed().filter(key__team=team))


def key_devices(key) -> DeviceQuerySet:
    """The devices whose token fetches the key (installed, not removed, still assigned), newest first: those that
    fetch it live, and those installed that never fetched it yet, whose token works all the same."""
    return devices_with_context(key.devices.can_fetch()).order_by("-created_at", "-pk")  # a stable order to page


def key_assignees(key) -> AssignmentQuerySet:
    """The key's assignments with their holders, newest first (as the API lists them)."""
    return key.assignments.select_related("user").order_by("-created_at", "-pk")


def assignable_usernames(key) -> list[str]:
    """The active members of the key's team who do not hold it yet, by name."""
    members = key.team.memberships.filter(user__is_active=True).exclude(user__assignments__key=key)
    return list(members.order_by("user__username").values_list("user__username", flat=True))


def team_members(team, query: str = "") -> QuerySet[Membership]:
    """The team's memberships by user name; `query` keeps those whose user name contains it, in any case in every
    alphabet (`ucontains`, portal.ordering: the same rows on SQLite and PostgreSQL)."""
    members = team.memberships.select_related("user").order_by("user__username", "pk")
    return members.filter(user__username__ucontains=query) if query else members


class RowsPage(Page):
    @property
    def remaining(self) -> int:
        """How many rows come after this page: the "N more" under a list."""
        return self.paginator.count - self.end_index()


class RowsPaginator(Paginator):
    def _get_page(self, *args, **kwargs) -> RowsPage:
        return RowsPage(*args, **kwargs)


def page_of(rows: QuerySet, number: str | None, size: int = ROWS_PER_PAGE) -> RowsPage:
    """One page of `rows` (two queries: the count and the page); a page number that is no number is the first,
    one past the end the last (Paginator.get_page), so a stale or typed link never fails."""
    page = RowsPaginator(rows, size).get_page(number)
    assert isinstance(page, RowsPage)
    return page


def first_run_checklist(user) -> list[dict] | None:
    """The four steps from a fresh portal to a developer's set-up, for staff and team admins until all are done.

    Each step is `{"text", "done", "url"}`; None when the user runs no team or everything is done.
    """
    teams = Team.objects.administered_by(user)
    if not user.is_staff and not teams.exists():
        return None
    first_team = teams.order_by("created_at", "pk").first()
    keys = GatewayKey.objects.filter(team__in=teams)
    first_key = keys.filter(revoked_at__isnull=True).order_by("created_at").first()
    crowded = teams.annotate(people=Count("memberships")).filter(people__gte=2)
    steps = [
        {"text": "Create a team", "done": first_team is not None, "url": reverse("teams")},
        {
            "text": "Store a gateway key for the team",
            "done": first_key is not None,
            "url": reverse("team", args=[first_team.slug]) if first_team else reverse("teams"),
        },
        {
            "text": "Invite the people who will use it (or add those who already have an account)",
            "done": crowded.exists(),
            "url": reverse("team", args=[first_team.slug]) if first_team else reverse("teams"),
        },
        {
            "text": "Assign the key to them: it then appears on their My set-up",
            "done": Assignment.objects.filter(key__team__in=teams).exists(),
            "url": reverse("key", args=[first_key.id]) if first_key else reverse("teams"),
        },
    ]
    return None if all(step["done"] for step in steps) else steps
