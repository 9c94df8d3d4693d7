"""Sending the portal's few mails (invitations, password resets go through Django's own view)."""

from __future__ import annotations

import logging
import smtplib

from django.core.mail import send_mail
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)


def send(*, to: str, subject: str, template: str, context: dict) -> bool:
    """Send one plain-text mail; False (and a log line without the body, which may hold a link) if it failed."""
    body = render_to_string(template, context)
    try:
        send_mail(subject, body, None, [to])
    except (OSError, smtplib.SMTPException) as exc:
        logger.warning("A mail to %s could not be sent: %s", to, exc)
        return False
    return True
