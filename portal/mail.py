"""Sending the portal's few mails (invitations, password resets go through Django's own view)."""

from __future__ import annotations

import logging

from django.core.mail import send_mail
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)


def send(*, to: str, subject: str, template: str, context: dict) -> bool:
    """Send one plain-text mail; False (and a log line without the body, which may hold a link) if it failed.

    Any exception, not just a network or SMTP one: the change the mail reports is already saved, and settings
    Django refuses only at the first mail (a non-ASCII password smtplib cannot send, say) must not make it a 500.
    """
    body = render_to_string(template, context)
    try:
        send_mail(subject, body, None, [to])
    except Exception as exc:
        # A UnicodeError's text quotes the character it stopped at, which may be one of the SMTP password's.
        reason = type(exc).__name__ if isinstance(exc, UnicodeError) else f"{type(exc).__name__}: {exc}"
        logger.warning("A mail to %s could not be sent: %s", to, reason)
        return False
    return True
