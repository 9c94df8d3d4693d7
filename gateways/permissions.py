"""Who may act on a key or a device: the team check of portal.permissions, applied to the key's team."""

from __future__ import annotations

from django.http import Http404

from gateways.models import Device, GatewayKey
from portal.models import Role
from portal.permissions import require_role


def key_with_role(
    user, key_id, *roles: str, denied: str = "Only the team's admins can change its keys."
) -> tuple[GatewayKey, str | None]:
    """A key the user oversees (admin or auditor of its team), and the user's role in that team."""
    key = GatewayKey.objects.visible_to(user).select_related("team", "gateway").filter(pk=key_id).first()
    if key is None:
        raise Http404("No key with that id is visible to you.")
    return key, require_role(user, key.team, *roles, denied=denied)


ASSIGNMENT_REMOVAL_DENIED = "Only the team's admins can remove an assignment."
DEVICE_REMOVAL_DENIED = "Only the device's owner or the team's admins can remove a device."


def device_for_removal(user, device_id) -> Device:
    """A device the user may remove: their own, or one of a team they administer (auditors read only)."""
    device = (
        Device.objects.visible_to(user).select_related("key__team", "key__gateway", "user").filter(pk=device_id).first()
    )
    if device is None:
        raise Http404("No device with that id is visible to you.")
    if device.user_id != user.pk:
        require_role(user, device.key.team, Role.ADMIN, denied=DEVICE_REMOVAL_DENIED)
    return device
