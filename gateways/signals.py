"""How gateways reacts to what portal announces: a member who leaves a team loses its keys; an account taken back
by its address's owner loses the devices installed before."""

from __future__ import annotations

from django.dispatch import receiver

from gateways import services
from gateways.devices import remove_device
from gateways.models import Device
from portal.signals import account_reclaimed, member_leaving


@receiver(member_leaving)
def take_back_assignments(sender, membership, actor=None, request=None, **kwargs) -> dict:
    return services.remove_member_assignments(team=membership.team, user=membership.user, actor=actor, request=request)


@receiver(account_reclaimed)
def remove_devices(sender, user, request=None, **kwargs) -> dict:
    removed = [
        remove_device(device=device, actor=user, request=request).pk
        for device in Device.objects.filter(user=user, revoked_at__isnull=True)
    ]
    return {"devices_removed": removed}
