"""Who may act on a team or a key: one answer for the pages and the API.

Not visible to the user is a 404 (an outsider learns nothing); visible but the role is not
enough is a 403. The API turns both into `{"detail": ...}`.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404

from gateways.models import GatewayKey
from portal.models import Team


def team_with_role(
    user, slug: str, *roles: str, denied: str = "Your role in this team does not allow this."
) -> tuple[Team, str | None]:
    """The team and the user's role in it (staff count as admin)."""
    team = get_object_or_404(Team.objects.visible_to(user), slug=slug)
    role = team.role_of(user)
    if roles and role not in roles:
        raise PermissionDenied(denied)
    return team, role


def key_with_role(
    user, key_id, *roles: str, denied: str = "Only the team's admins can change its keys."
) -> tuple[GatewayKey, str | None]:
    """A key the user oversees (admin or auditor of its team), and the user's role in that team."""
    key = GatewayKey.objects.visible_to(user).select_related("team", "gateway").filter(pk=key_id).first()
    if key is None:
        raise Http404("No key with that id is visible to you.")
    role = key.team.role_of(user)
    if roles and role not in roles:
        raise PermissionDenied(denied)
    return key, role
