"""Reads shared by the pages and the API: small query helpers, no side effects."""

from __future__ import annotations

from gateways.models import Assignment, AssignmentQuerySet


def my_assignments(user) -> AssignmentQuerySet:
    """The user's own assignments: the configurations they can download, team by team."""
    return (
        Assignment.objects.filter(user=user)
        .select_related("key__gateway", "key__team", "user")
        .order_by("key__team__name", "key__label")
    )
