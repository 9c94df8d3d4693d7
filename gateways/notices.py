"""E-mail notices about acts other people must hear of: an admin giving a key to themselves.

Self-assignment is the one way an admin can read a key back, so it is not forbidden but made
visible: an audit event of its own, a flag on the team and key pages, and this mail to the
team's other admins (or, when the team has none with an address, to staff). The mail names the
key by label, masked form and fingerprint; it never carries the secret. It is announced
(events.self_assigned) and alerts queues it like every other notice: retried while the mail
server is down, and shown on the Deliveries page.
"""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.http import HttpRequest
from django.urls import reverse

from gateways import events
from gateways.models import Assignment
from portal.http import public_url
from portal.models import Role
from portal.times import written_time

logger = logging.getLogger(__name__)


def self_assignment_recipients(assignment: Assignment) -> list:
    """The team's other admins with an address; staff when no other admin has one."""
    key, actor = assignment.key, assignment.user
    users = get_user_model().objects.filter(is_active=True).exclude(pk=actor.pk).exclude(email="").order_by("email")
    admins = users.filter(memberships__team=key.team, memberships__role=Role.ADMIN).distinct()
    one_per_address: dict[str, object] = {}
    for user in list(admins) or list(users.filter(is_staff=True)):
        one_per_address.setdefault(user.email, user)
    return list(one_per_address.values())


def self_assignment_message(assignment: Assignment, *, team_url: str) -> tuple[str, str]:
    """The subject and body of the notice: who, which key, where to look; never the secret."""
    key, who = assignment.key, assignment.user.get_username()
    subject = f"{who} assigned the key {key.label!r} to themselves in {key.team.name}"
    body = (
        f"{who}, an admin of {key.team.name}, assigned a team key to themselves on "
        f"{written_time(assignment.created_at)}. They can now download it, secret included.\n\n"
        f"Key: {key.label} ({key.masked}, fingerprint {key.short_fingerprint}) for {key.gateway.name}\n"
        f"Team page: {team_url}\n\n"
        "If this was not agreed, remove the assignment and rotate the key's secret at the gateway "
        "and in the portal. The audit trail records it as assignment.self_assigned.\n"
    )
    return subject, body


def notify_self_assignment(assignment: Assignment, request: HttpRequest | None = None) -> None:
    """Announce the notice, for alerts to queue a mail to each recipient; the assignment stands whatever happens."""
    recipients = self_assignment_recipients(assignment)
    if not recipients:
        logger.warning("Nobody could be told that %s assigned a key to themselves.", assignment.user)
        return
    path = reverse("team", kwargs={"slug": assignment.key.team.slug})
    subject, body = self_assignment_message(assignment, team_url=public_url(request, path))
    try:
        answers = events.self_assigned.send(
            sender=Assignment, assignment=assignment, recipients=recipients, subject=subject, text=body
        )
    except Exception:  # the act is already committed and audited; the notice must not turn it into a 500
        logger.exception(
            "The self-assignment notice to %s could not be queued.", ", ".join(u.email for u in recipients)
        )
        return
    if not answers:
        logger.warning("No app queues the self-assignment notice of %s: nobody is told.", assignment.user)
