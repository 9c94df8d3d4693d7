"""Who may act on a key: the team check of portal.permissions, applied to the key's team."""

from __future__ import annotations

from django.http import Http404

from gateways.models import GatewayKey
from portal.permissions import require_role


def key_with_role(
    user, key_id, *roles: str, denied: str = "Only the team's admins can change its keys."
) -> tuple[GatewayKey, str | None]:
    """A key the user oversees (admin or auditor of its team), and the user's role in that team."""
    key = GatewayKey.objects.visible_to(user).select_related("team", "gateway").filter(pk=key_id).first()
    if key is None:
        raise Http404("No key with that id is visible to you.")
    return key, require_role(user, key.team, *roles, denied=denied)
