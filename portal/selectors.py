"""Reads shared by the pages and the API: small query helpers, no side effects."""

from __future__ import annotations

from django.db.models import Prefetch

from portal.models import Membership, Team, TeamQuerySet


def teams_with_members(user) -> TeamQuerySet:
    """The teams the user may see, with their members loaded in the same few queries."""
    return Team.objects.visible_to(user).prefetch_related(
        Prefetch("memberships", queryset=Membership.objects.select_related("user"))
    )
