"""E-mail notices about acts other people must hear of: an admin giving a key to themselves.

Self-assignment is the one way an admin can read a key back, so it is not forbidden but made
visible: an audit event of its own, a flag on the team and key pages, and this mail to the
team's other admins (or, when the team has none with an address, to staff). The mail names the
key by label, masked form and fingerprint; it never carries the secret.
"""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.http import HttpRequest
from django.urls import reverse

from gateways.models import Assignment
from portal.http import public_url
from portal.models import Membership, Role
from portal.times import written_time

logger = logging.getLogger(__name__)


def self_assignment_recipients(assignment: Assignment) -> list[str]:
    """Addresses of the team's other admins; staff when no other admin has one."""
    key, actor = assignment.key, assignment.user
    admins = (
        Membership.objects.filter(team=key.team, role=Role.ADMIN, user__is_active=True)
        .exclude(user=actor)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )
    addresses = sorted(set(admins))
    if not addresses:
        staff = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(pk=actor.pk).exclude(email="")
        addresses = sorted(set(staff.values_list("email", flat=True)))
    return addresses


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
    """Mail the notice; a mail server that fails is logged, and the assignment stands."""
    recipients = self_assignment_recipients(assignment)
    if not recipients:
        logger.warning("Nobody could be told that %s assigned a key to themselves.", assignment.user)
        return
    path = reverse("team", kwargs={"slug": assignment.key.team.slug})
    subject, body = self_assignment_message(assignment, team_url=public_url(request, path))
    try:
        send_mail(subject, body, None, recipients)
    except Exception:  # the act is already committed and audited; the notice must not turn it into a 500
        logger.exception("The self-assignment notice to %s could not be sent.", ", ".join(recipients))
