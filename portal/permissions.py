"""Who may act: staff, and roles in a team; one answer for the pages and the API.

Not visible to the user is a 404 (an outsider learns nothing); visible but the role is not
enough is a 403. The API turns both into `{"detail": ...}`. Keys have the same pair of checks
in gateways.permissions, built on `require_role`.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404

from portal.models import Team

ROLE_DENIED = "Your role in this team does not allow this."


def is_staff(user) -> bool:
    """Staff manage the gateway catalogue and create teams; they act as admin in every team."""
    return bool(user.is_authenticated and user.is_staff)


def require_staff(user, denied: str) -> None:
    """A 403 with `denied` for anyone but staff."""
    if not is_staff(user):
        raise PermissionDenied(denied)


def administers_a_team(user) -> bool:
    """Staff, or the admin of at least one team: the people the dashboard is for."""
    return is_staff(user) or (user.is_authenticated and Team.objects.administered_by(user).exists())


def require_role(user, team: Team, *roles: str, denied: str = ROLE_DENIED) -> str | None:
    """The user's role in the team (staff count as admin); a 403 with `denied` when it is not one of `roles`."""
    role = team.role_of(user)
    if roles and role not in roles:
        raise PermissionDenied(denied)
    return role


def team_with_role(user, slug: str, *roles: str, denied: str = ROLE_DENIED) -> tuple[Team, str | None]:
    """The team and the user's role in it (staff count as admin)."""
    team = get_object_or_404(Team.objects.visible_to(user), slug=slug)
    return team, require_role(user, team, *roles, denied=denied)
