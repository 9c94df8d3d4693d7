"""How gateways reacts to what portal announces: a member who leaves a team loses its keys."""

from __future__ import annotations

from django.dispatch import receiver

from gateways import services
from portal.signals import member_leaving


@receiver(member_leaving)
def take_back_assignments(sender, membership, **kwargs) -> dict:
    fingerprints = services.remove_member_assignments(team=membership.team, user=membership.user)
    return {"assignments_removed": fingerprints}
