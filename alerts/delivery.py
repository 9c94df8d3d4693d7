"""Send the deliveries that are due: claimed in the database, sent concurrently, every attempt recorded.

A run claims a batch (portal.claims: two servers never send the same delivery), prepares each
request from the rows (the only step that reads a channel's secret), sends them all at once with a
time limit each (NOTIFY_TIMEOUT), so a receiver that hangs, fails or redirects holds up nobody
else, then records each attempt and schedules a retry (alerts.models.BACKOFF) or the end.
Webhooks go through the probes' client (gateways.probes.outbound): public addresses only
unless PROBE_ALLOW_PRIVATE_IPS, no redirect followed. Mail goes through Django's mail settings, and
fails with a sentence while none are set (EMAIL_CONFIGURED). Once a delivery to a channel fails, or while
another run holds it (or held it and died), the channel's newer ones wait behind it, so they arrive in
order (DeliveryQuerySet.due); when it goes
through, the rest of that channel's are due at once. A person's delivery is cancelled once they have
left the team, lost the key or been deactivated, like a removed channel's; one to an address no mail server
can be given (portal.mail.address_problem) fails at once, as no retry can change it. A holder's revocation mail
that no longer names the key My set-up names in the revoked one's place is rewritten before it is sent
(revocation_as_now).
Each failed attempt is logged at WARNING (the team, the channel's kind, a target with no secret in it, the
error), a delivery given up for good at ERROR too: the operator on call may have only the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import smtplib
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from alerts import messages, rules, services
from alerts.models import MAX_ATTEMPTS, Channel, ChannelKind, Delivery, DeliveryAttempt, DeliveryStatus, EventKind
from gateways.models import Assignment, replacement_columns
from gateways.probes.outbound import OutboundRefused, SafeClient, read_limited
from gateways.rules import one_line
from portal import claims, mail
from portal.crypto import DecryptionError
from portal.models import Membership

logger = logging.getLogger(__name__)

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"

EXCERPT = 200
NO_MAIL = (
    "This portal sends no mail; set EMAIL_URL (or EMAIL_HOST) and restart it, and the next try sends this. "
    "Until then, use a webhook or Slack channel."
)


def _channel_removed(delivery: Delivery) -> bool:
    """A channel's delivery whose channel is gone (a person's delivery has no channel, and needs none)."""
    return delivery.user_id is None and delivery.channel_id is None


def person_gone(delivery: Delivery) -> str:
    """Why a person's delivery is no longer theirs to get (a sentence), or "": they left, or lost the key, since.

    A holder told to download a rotated key's set-up again would be sent to a card their My set-up no longer has.
    Staff told of a self-assignment need not be in the team.
    """
    user, notification = delivery.user, delivery.notification
    if user is None:
        return ""
    name = user.get_username()
    if not user.is_active:
        return f"{name}'s account was deactivated."
    staff_told = user.is_staff and notification.event == EventKind.KEY_SELF_ASSIGNED
    if not staff_told and not Membership.objects.filter(team_id=notification.team_id, user=user).exists():
        return f"{name} is no longer in team {notification.team.name}."
    assignment_id = notification.payload.get("assignment")
    if assignment_id is not None and not Assignment.objects.filter(pk=assignment_id, user=user).exists():
        return f"{name} no longer holds this key."
    return ""


def revocation_as_now(delivery: Delivery) -> messages.Message | None:
    """A holder's key.revoked mail as it must read now, or None while it still names the key My set-up names.

    It is written at the revocation and sent later: meanwhile the key it named in the revoked one's place may have
    been revoked too (an admin revoking a holder's keys one after the other), disabled, refused or taken back, or one
    assigned to a holder it told to ask for a new key. One query, for a holder's revocation mail only.
    """
    notification = delivery.notification
    assignment_id = notification.payload.get("assignment")
    if delivery.user_id is None or notification.event != EventKind.KEY_REVOKED or assignment_id is None:
        return None
    assignment = (
        Assignment.objects.filter(pk=assignment_id, user_id=delivery.user_id)
        .annotate(**replacement_columns())
        .select_related("key__team", "key__gateway")
        .first()
    )
    if assignment is None:  # taken back: person_gone cancels it
        return None
    now = messages.revoked_for_holder(assignment, replacement=assignment.replaced_by())
    return None if now.payload["replacement"] == notification.payload.get("replacement") else now


@dataclass
class Outgoing:
    """One request to make, prepared from the rows before anything goes on the network."""

    delivery_id: int
    kind: str
    target: str
    event: str
    body: bytes = b""
    secret: str = field(default="", repr=False)
    subject: str = ""
    problem: str = ""  # why it cannot be sent at all (then nothing is)
    ends_as: str = ""  # the status a problem ends it with, rather than a retry: no retry can change it


@dataclass(frozen=True)
class Attempted:
    delivery_id: int
    succeeded: bool
    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str = ""
    ends_as: str = ""


@sensitive_variables("secret")
def prepare(delivery: Delivery) -> Outgoing:
    notification = delivery.notification
    outgoing = Outgoing(delivery.id, delivery.kind, delivery.target, notification.event)
    if _channel_removed(delivery):  # since it was claimed or retried: never sent to an address nobody owns now
        outgoing.problem, outgoing.ends_as = services.CHANNEL_REMOVED, DeliveryStatus.CANCELLED
        return outgoing
    if gone := person_gone(delivery):  # the same for a person who left since the notification was written
        outgoing.problem, outgoing.ends_as = gone, DeliveryStatus.CANCELLED
        return outgoing
    if retold := revocation_as_now(delivery):  # a person's notification has this one delivery: it says what is sent
        logger.info(
            "Notification %s (%s) to %s was rewritten before sending, as My set-up reads now: %s",
            notification.pk,
            notification.event,
            _destination(delivery),
            retold.subject,
        )
        services.retell(notification, retold)
    if delivery.kind == ChannelKind.EMAIL:
        outgoing.subject, text = messages.email_parts(notification, to_person=delivery.user_id is not None)
        outgoing.body = text.encode()
        if unreachable := mail.address_problem(delivery.target):  # the address is copied: a retry sends the same
            outgoing.problem, outgoing.ends_as = unreachable, DeliveryStatus.FAILED
        elif not settings.EMAIL_CONFIGURED:  # Django's fallback backend would drop it and call that sent
            outgoing.problem = NO_MAIL
    elif delivery.kind == ChannelKind.SLACK:
        outgoing.body = messages.slack_body(notification)
    else:
        outgoing.body = messages.webhook_body(notification, delivery_id=delivery.id)
        try:
            secret = cast(Channel, delivery.channel).reveal_secret()  # a webhook is a channel's, still there
        except DecryptionError as exc:
            outgoing.problem = f"The channel's secret cannot be opened: {exc}"
        else:
            outgoing.secret = secret
    return outgoing


def _clock() -> datetime:
    return timezone.now()


async def _post(client: SafeClient, item: Outgoing) -> tuple[int, str]:
    """POST the body; returns (HTTP status, a short excerpt of the answer or where it redirects)."""
    headers = {
        "content-type": "application/json",
        "user-agent": "gateway-portal-notifications",
        "x-portal-event": item.event,
        "x-portal-delivery": str(item.delivery_id),
    }
    if item.secret:
        headers[rules.SIGNATURE_HEADER] = rules.signature(item.secret, int(time.time()), item.body)
    async with client.stream("POST", item.target, headers=headers, content=item.body) as response:
        if 300 <= response.status_code < 400:
            # A relative Location ("/v2/hook") is named as the full URL the channel should be given.
            location = response.headers.get("location", "")
            return response.status_code, (str(response.url.join(location)) if location else "")[:EXCERPT]
        excerpt, _ = await read_limited(response, EXCERPT)
        # Stored with the attempt: PostgreSQL's text refuses NUL, which a receiver may send.
        return response.status_code, excerpt.decode("utf-8", "replace").replace("\x00", "\ufffd")


class _WatchedSMTPBackend(SMTPBackend):
    """Django's SMTP backend, whose session can be cut: at NOTIFY_TIMEOUT its socket is shut, so a mail the
    Deliveries page records as not sent was not sent, and no thread outlives the run."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: list[smtplib.SMTP] = []
        self.cut = False
        # The session's end, counted from now: a send that waited for a thread connects only for what is left.
        self.deadline = time.monotonic() + (self.timeout or 0)

    @property
    def connection_class(self):
        backend, base = self, smtplib.SMTP_SSL if self.use_ssl else smtplib.SMTP  # as Django's chooses

        class Watched(base):  # type: ignore[valid-type,misc]
            def _get_socket(self, host, port, timeout):
                backend.sessions.append(self)
                left = backend.deadline - time.monotonic()
                if backend.cut or left <= 0:  # its time was up before it could start
                    raise TimeoutError
                sock = super()._get_socket(host, port, min(timeout, left))  # a connect no one answers ends in time
                if backend.cut:  # the deadline passed while connecting
                    sock.close()
                    raise TimeoutError
                return sock

        return Watched

    def end_session(self) -> None:
        """Shut the session's socket: a step waiting for the server fails at once, and no later step is sent."""
        self.cut = True
        for session in self.sessions:
            if session.sock is not None:
                with contextlib.suppress(OSError):
                    session.sock.shutdown(socket.SHUT_RDWR)


def _send_mail(item: Outgoing, connection) -> None:
    EmailMessage(item.subject, item.body.decode(), None, [item.target], connection=connection).send()


async def _send_mail_within(item: Outgoing, limit: float) -> None:
    """Send the mail; the whole SMTP session, not only each step, ends at `limit` (then TimeoutError)."""
    if settings.EMAIL_BACKEND != SMTP_BACKEND:  # a backend without a network session (console, locmem...)
        await asyncio.wait_for(asyncio.to_thread(_send_mail, item, get_connection(timeout=limit)), limit)
        return
    connection = _WatchedSMTPBackend(timeout=limit)
    sending = asyncio.ensure_future(asyncio.to_thread(_send_mail, item, connection))
    try:
        await asyncio.wait_for(asyncio.shield(sending), limit)
    except TimeoutError:
        connection.end_session()
        try:
            await sending  # ends at once now; a mail the server took just before counts as sent
        except Exception:
            raise TimeoutError from None


def http_problem(status: int, excerpt: str) -> str:
    """The sentence an answer that is not a 2xx earns on the Deliveries page."""
    if 300 <= status < 400:
        return (
            f"The receiver answered HTTP {status}, a redirect{f' to {excerpt}' if excerpt else ''}. The portal "
            "follows no redirects: give the channel its final URL."
        )
    return f"The receiver answered HTTP {status}{f': {excerpt}' if excerpt.strip() else ''}."


async def _attempt(item: Outgoing, client: SafeClient, gate: asyncio.Semaphore) -> Attempted:
    async with gate:
        started, clock = _clock(), time.perf_counter()
        status, error = None, ""
        limit = settings.NOTIFY_TIMEOUT
        try:
            if item.problem:
                error = item.problem
            elif item.kind == ChannelKind.EMAIL:
                await _send_mail_within(item, limit)
            else:
                status, excerpt = await asyncio.wait_for(_post(client, item), limit)
                if not 200 <= status < 300:
                    error = http_problem(status, excerpt)
        except (TimeoutError, httpx.TimeoutException):
            error = f"No answer within {limit:g} s."
        except OutboundRefused as exc:
            error = str(exc)
        except httpx.HTTPError as exc:
            error = f"Could not reach the receiver: {exc or type(exc).__name__}."
        except Exception as exc:  # a mail server's refusal, a socket error: recorded, and retried later
            error = f"{type(exc).__name__}: {exc}"
        duration = int((time.perf_counter() - clock) * 1000)
        ends_as = item.ends_as if item.problem else ""
        return Attempted(item.delivery_id, not error, started, duration, status, error[:500], ends_as)


async def send_all(items: list[Outgoing]) -> list[Attempted]:
    """Send every item at once (up to NOTIFY_CONCURRENCY in flight), each within NOTIFY_TIMEOUT."""
    gate = asyncio.Semaphore(max(1, settings.NOTIFY_CONCURRENCY))
    limit = settings.NOTIFY_TIMEOUT
    async with SafeClient(
        connect_timeout=limit, read_timeout=limit, deadline=limit, max_connections=max(1, settings.NOTIFY_CONCURRENCY)
    ) as client:
        return list(await asyncio.gather(*(_attempt(item, client, gate) for item in items)))


KIND_WORDS: dict[str, str] = {ChannelKind.WEBHOOK: "webhook", ChannelKind.SLACK: "Slack", ChannelKind.EMAIL: "e-mail"}
URL_IN_TEXT = re.compile(r"https?://[^\s'\"<>]+", re.IGNORECASE)


def loggable_url(url: str, kind: str) -> str:
    """A URL as the log may show it: its scheme, host and port only. A Slack-compatible webhook's path (Slack,
    Teams...) is the secret that lets anyone post to the channel, and many other receivers (Discord, Zapier, a
    CI's trigger) put one in the path or query too; the channel's id in the same line says which it is."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(a URL that cannot be read)"
    if ":" in host:
        host = f"[{host}]"
    origin = f"{parts.scheme}://{host}{port}"
    return f"{origin}/…" if parts.path.strip("/") or parts.query else origin


# An answer's sentence (http_problem) up to its status: what follows is the receiver's own reply.
ANSWERED = re.compile(r"^The receiver answered HTTP [124-9]\d\d")  # a redirect's sentence names its Location


def _log_text(text: str, kind: str, target: str = "") -> str:
    """An error for the log: one line, each URL in it (a redirect's Location) shown as loggable_url shows it, and
    nothing of the target's path or query. A receiver's reply is left out (the Deliveries page shows it), but for a
    redirect's Location: an error page often repeats the path it was sent to, which for a Slack-compatible webhook
    is its secret."""
    if answered := ANSWERED.match(text):
        text = f"{answered.group(0)} (its reply is on the team's Deliveries page)."
    text = URL_IN_TEXT.sub(lambda found: loggable_url(found.group(0), kind), text)
    with contextlib.suppress(ValueError):
        parts = urlsplit(target)
        for secret in (parts.query, parts.path if parts.path.strip("/") else ""):
            if secret:
                text = text.replace(secret, "…")
    return one_line(text)


def _destination(delivery: Delivery) -> str:
    """Whose delivery this is and where it goes, in the log's words: never a secret."""
    team = delivery.notification.team.slug
    kind = KIND_WORDS.get(delivery.kind, delivery.kind)
    email = delivery.kind == ChannelKind.EMAIL
    where = delivery.target if email else loggable_url(delivery.target, delivery.kind)
    if delivery.user is not None:
        return f"{delivery.user.get_username()} of team {team} by {kind} at {where}"
    channel = f"channel {delivery.channel_id} " if delivery.channel_id else "removed channel "
    return f"team {team}'s {kind} {channel}at {where}"


def _log_outcome(delivery: Delivery, attempt: Attempted) -> None:
    """One line for the operator per failed attempt, and one more once a delivery is given up for good."""
    what = f"Notification delivery {delivery.pk} ({delivery.notification.event}) to {_destination(delivery)}"
    if attempt.succeeded:
        if delivery.attempts > 1:
            logger.info("%s went through at attempt %d.", what, delivery.attempts)
        return
    error = _log_text(attempt.error, delivery.kind, "" if delivery.kind == ChannelKind.EMAIL else delivery.target)
    if delivery.status == DeliveryStatus.CANCELLED:
        logger.info("%s was cancelled: %s", what, error)
        return
    if delivery.status == DeliveryStatus.PENDING:
        logger.warning(
            "%s failed at attempt %d of %d, next try at %s: %s",
            what,
            delivery.attempts,
            MAX_ATTEMPTS,
            f"{timezone.localtime(delivery.next_attempt_at):%Y-%m-%d %H:%M:%S %Z}",
            error,
        )
        return
    logger.warning("%s failed at attempt %d of %d: %s", what, delivery.attempts, MAX_ATTEMPTS, error)
    logger.error(
        "%s is given up after %d attempt%s and will not be sent; the team's Deliveries page shows each one.",
        what,
        delivery.attempts,
        "" if delivery.attempts == 1 else "s",
    )


def record(deliveries: list[Delivery], attempts: list[Attempted], token) -> Counter:
    """Store each attempt and the delivery's next step; a delivery whose claim was lost is left to its new holder."""
    outcome: Counter = Counter()
    now = _clock()
    by_id = {a.delivery_id: a for a in attempts}
    for delivery in deliveries:
        attempt = by_id[delivery.id]
        with transaction.atomic():
            if attempt.succeeded:
                delivery.record_success(now)
            else:
                delivery.record_failure(now, attempt.error)
                if attempt.ends_as:
                    delivery.status = attempt.ends_as
                elif delivery.status == DeliveryStatus.PENDING and _removed_meanwhile(delivery):
                    delivery.status, delivery.last_error = DeliveryStatus.CANCELLED, services.CHANNEL_REMOVED
            kept = Delivery.objects.filter(pk=delivery.pk, claim=token).update(
                attempts=delivery.attempts,
                status=delivery.status,
                next_attempt_at=delivery.next_attempt_at,
                sent_at=delivery.sent_at,
                last_error=delivery.last_error,
                claimed_at=None,
                claim=None,
            )
            if not kept:
                continue
            if attempt.succeeded:
                delivery.release_followers(now)
            DeliveryAttempt.objects.create(
                delivery=delivery,
                number=delivery.attempts,
                started_at=attempt.started_at,
                duration_ms=attempt.duration_ms,
                succeeded=attempt.succeeded,
                status_code=attempt.status_code,
                error=attempt.error,
            )
        _log_outcome(delivery, attempt)
        outcome[delivery.status if delivery.status != DeliveryStatus.PENDING else "retrying"] += 1
    return outcome


def _removed_meanwhile(delivery: Delivery) -> bool:
    """Whether the delivery's channel was removed while this run sent to it (removal leaves claimed ones to us)."""
    if delivery.user_id is not None:
        return False
    return not Delivery.objects.filter(pk=delivery.pk, channel__isnull=False).exists()


def deliver_due() -> Counter:
    """Tell teams of keys about to expire, then send every delivery that is due; counts by outcome."""
    outcome: Counter = Counter()
    batch = max(1, settings.NOTIFY_CONCURRENCY) * services.BATCH_PER_SLOT
    lease = services.delivery_lease()
    outcome["expiring"] = services.notify_expiring()
    while True:
        now = _clock()
        token = claims.claim(Delivery.objects.due(now), now=now, lease=lease, limit=batch)
        if token is None:
            break
        deliveries = list(
            Delivery.objects.filter(claim=token).select_related("notification__team", "channel", "user").order_by("pk")
        )
        items = [prepare(delivery) for delivery in deliveries]
        attempts = asyncio.run(send_all(items))
        outcome.update(record(deliveries, attempts, token))
    return outcome
