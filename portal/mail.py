"""Sending the portal's few mails (invitations, password resets go through Django's own view), what every mail
the process sends must be to pass any mail server (7-bit data, to an address a server can be given), and mail sent
after the response, whose cost must not show in the answer's time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from email import charset, encoders
from email.message import Message

from django.core.mail import message as django_message
from django.core.mail import send_mail
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.urls import get_script_prefix, set_script_prefix

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


# Mails sent after the response go one at a time through one thread per process, queued up to a bound: anyone may
# ask for a reset, so neither the threads nor their database connections may grow with the requests.
MAX_WAITING_MAILS = 100
_sender: ThreadPoolExecutor | None = None  # made on first use, in the process that sends (after gunicorn forks)
_waiting: set[Future] = set()
_waiting_lock = threading.Lock()


def send_after_response(send: Callable[[], None], *, name: str) -> None:
    """Run `send` in the process's mail thread once the request's transaction commits, so the answer never waits.

    What a mail costs (its rows, rendering, the SMTP session) would otherwise show in the answer's time, and tell
    whoever times it that there was something to mail. One thread per process sends them in turn, so a burst of
    requests holds one database connection and one SMTP session, not one each; past MAX_WAITING_MAILS waiting,
    a mail is dropped with a warning. The thread is no daemon: a graceful stop of gunicorn lets the queue go.
    `send` logs its own failures. Links the mail builds with reverse() keep the request's script prefix.
    """
    script_prefix = get_script_prefix()
    transaction.on_commit(lambda: _queue(send, name, script_prefix))


def _queue(send: Callable[[], None], name: str, script_prefix: str) -> None:
    global _sender
    with _waiting_lock:
        if len(_waiting) >= MAX_WAITING_MAILS:
            logger.warning("%s mails are waiting to be sent; a %s mail was dropped.", len(_waiting), name)
            return
        if _sender is None:
            _sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mail-after-response")
        future = _sender.submit(_run, send, script_prefix)
        _waiting.add(future)
    future.add_done_callback(_done)


def _done(future: Future) -> None:
    with _waiting_lock:
        _waiting.discard(future)


def _run(send: Callable[[], None], script_prefix: str) -> None:
    set_script_prefix(script_prefix)
    try:
        send()
    finally:
        connection.close()


def wait_for_mails_after_response(timeout: float = 30) -> None:
    """Wait until every mail send_after_response queued so far is sent or has failed; for tests, which read the
    inbox right after the request."""
    with _waiting_lock:
        waiting = list(_waiting)
    futures.wait(waiting, timeout=timeout)
