"""Sending the portal's few mails (invitations, password resets go through Django's own view), and what every
mail the process sends must be to pass any mail server: 7-bit data, to an address a server can be given."""

from __future__ import annotations

import logging
from email import charset, encoders
from email.message import Message

from django.core.mail import message as django_message
from django.core.mail import send_mail
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)


def _seven_bit_or_quoted_printable(part: Message) -> None:
    """An ASCII body as it is (7bit); any other as quoted-printable, which is ASCII too."""
    if str(part.get_payload()).isascii():
        part["Content-Transfer-Encoding"] = "7bit"
    else:
        encoders.encode_quopri(part)


class SevenBitUTF8(charset.Charset):
    """UTF-8 whose bodies are 7-bit data, for every mail server.

    Django sends a UTF-8 body as raw 8-bit and never asks for BODY=8BITMIME; a server that does not offer
    8BITMIME (RFC 6152) may refuse it or strip the eighth bit. Headers stay as Django writes them (RFC 2047).
    """

    def __init__(self) -> None:
        super().__init__("utf-8")

    def get_body_encoding(self):
        return _seven_bit_or_quoted_printable


# Every text part Django builds in UTF-8 without long lines (its own switches those to quoted-printable) takes
# this charset: the portal's mails, the alerts' and Django's password reset alike, whatever EMAIL_BACKEND is.
# PortalConfig.ready imports this module, so every process has it before its first mail (a test starts one to
# check).
django_message.utf8_charset = SevenBitUTF8()


def address_problem(address: str) -> str:
    """Why no mail server can be given `address` (a sentence), or "" when one can.

    A local part outside ASCII (zoë@example.com, as an SSO provider may send it) needs SMTPUTF8, which Django's
    SMTP backend never asks for: it would write the local part as an RFC 2047 word, an address nobody has.
    """
    local_part = address.rpartition("@")[0]
    if local_part.isascii():
        return ""
    return (
        f"The address {address} has characters outside ASCII before the @, which mail servers take only with "
        "SMTPUTF8, and the portal does not use it: give the account an address in ASCII."
    )


def send(*, to: str, subject: str, template: str, context: dict) -> bool:
    """Send one plain-text mail; False (and a log line without the body, which may hold a link) if it failed.

    Any exception, not just a network or SMTP one: the change the mail reports is already saved, and settings
    Django refuses only at the first mail (a non-ASCII password smtplib cannot send, say) must not make it a 500.
    """
    if problem := address_problem(to):
        logger.warning("A mail to %s was not sent: %s", to, problem)
        return False
    body = render_to_string(template, context)
    try:
        send_mail(subject, body, None, [to])
    except Exception as exc:
        # A UnicodeError's text quotes the character it stopped at, which may be one of the SMTP password's.
        reason = type(exc).__name__ if isinstance(exc, UnicodeError) else f"{type(exc).__name__}: {exc}"
        logger.warning("A mail to %s could not be sent: %s", to, reason)
        return False
    return True
