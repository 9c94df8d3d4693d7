"""Reads for the alerts pages: small query helpers, no side effects."""

from __future__ import annotations

from django.db.models import Prefetch

from alerts.models import Delivery, DeliveryAttempt, DeliveryQuerySet
from portal.models import Team, TeamQuerySet


def deliveries_for(user, *, team_slug: str = "") -> DeliveryQuerySet:
    """Deliveries of the teams the user administers (staff: all), newest first, each with its attempts."""
    rows = Delivery.objects.visible_to(user)
    if team_slug:
        rows = rows.filter(notification__team__slug=team_slug)
    return (
        rows.select_related("notification__team", "channel", "user")
        .prefetch_related(Prefetch("attempt_log", queryset=DeliveryAttempt.objects.order_by("number")))
        .order_by("-id")
    )


def delivery_teams(user) -> TeamQuerySet:
    """The teams whose deliveries the user may read: those they administer (staff: all)."""
    return Team.objects.administered_by(user)
