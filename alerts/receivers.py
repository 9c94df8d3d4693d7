"""Turn what gateways and portal announce into notifications (inside the announcing transaction)."""

from __future__ import annotations

from django.dispatch import receiver

from alerts import messages, rules, services
from gateways.events import key_expired, key_revoked, key_rotated, probe_recorded, self_assigned
from portal.signals import member_added, member_leaving


@receiver(probe_recorded)
def tell_probe_transition(sender, key, previous: str, result, **kwargs) -> None:
    if not key.is_usable:
        return  # a probe of a revoked, disabled or expired key says so itself; nobody is paged for it
    transition = rules.probe_transition(previous, result.verdict)
    if transition == rules.STARTED_FAILING:
        services.notify_team(key.team, messages.key_failing(key, verdict=result.verdict, hint=result.hint), key=key)
    elif transition == rules.RECOVERED:
        services.notify_team(key.team, messages.key_recovered(key, previous=previous), key=key)


@receiver(key_rotated)
def tell_rotation(sender, key, actor=None, **kwargs) -> None:
    services.notify_rotation(key, actor=actor)


@receiver(key_revoked)
def tell_revocation(sender, key, actor=None, **kwargs) -> None:
    services.notify_revocation(key, actor=actor)


@receiver(key_expired)
def tell_expiry(sender, key, **kwargs) -> None:
    services.notify_team(key.team, messages.key_expired(key), key=key)


@receiver(self_assigned)
def tell_self_assignment(sender, assignment, recipients, subject: str, text: str, **kwargs) -> None:
    message = messages.key_self_assigned(assignment, subject=subject, text=text)
    services.notify_people(assignment.key.team, recipients, message, key=assignment.key)


def _who_did_it(membership, actor) -> str:
    """The name the message gives the change: the person who made it, or the SSO groups that did.

    A change the groups claim made at a sign-in has no actor (portal.oidc.sync_memberships): it is
    not the signed-in person's own act, though the audit row names whose sign-in it was.
    """
    if actor is not None:
        return actor.get_username()
    return "The portal (SSO groups)" if membership.via_sso else ""


@receiver(member_added)
def tell_new_member(sender, membership, actor=None, **kwargs) -> None:
    message = messages.member_added(
        team_name=membership.team.name,
        team_slug=membership.team.slug,
        username=membership.user.get_username(),
        role=membership.role,
        actor_name=_who_did_it(membership, actor),
    )
    services.notify_team(membership.team, message)


@receiver(member_leaving)
def tell_member_left(sender, membership, actor=None, **kwargs) -> None:
    message = messages.member_offboarded(
        team_name=membership.team.name,
        team_slug=membership.team.slug,
        username=membership.user.get_username(),
        role=membership.role,
        actor_name=_who_did_it(membership, actor),
    )
    services.notify_team(membership.team, message)
