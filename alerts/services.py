"""State changes for channels and notifications, each in one transaction with what it records."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.http import HttpRequest
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from alerts import messages, rules
from alerts.messages import Message
from alerts.models import Channel, ChannelKind, Delivery, DeliveryStatus, Notification
from gateways import devices
from gateways.models import Assignment, Device, GatewayKey, replacement_columns
from portal import audit, claims
from portal.errors import RuleError
from portal.models import Action, Team
from portal.times import in_portal_zone

logger = logging.getLogger(__name__)

CHANNEL_REMOVED = "The channel was removed."
# Deliveries claimed at a time, per delivery sent at once: small batches let other servers share the work.
BATCH_PER_SLOT = 5
# At least this, and longer than any batch takes (BATCH_PER_SLOT rounds of NOTIFY_TIMEOUT at most): a claim
# older than the lease was a run that died.
MIN_LEASE = timedelta(minutes=5)

NO_MAIL_CHANNEL = (
    "This portal sends no mail: deliveries to this e-mail channel fail until EMAIL_URL (or EMAIL_HOST) is set "
    "and the portal restarted. Add a webhook or Slack channel to hear of events meanwhile."
)


@sensitive_variables("secret")
@transaction.atomic
def create_channel(
    *,
    team: Team,
    kind: str,
    target: str,
    secret: str = "",
    enabled: bool = True,
    actor,
    request: HttpRequest | None = None,
) -> Channel:
    """Add a channel to the team; a webhook's secret is sealed in the vault and never shown again."""
    kind, target, secret = rules.clean_channel(kind, target, secret, allow_private=settings.PROBE_ALLOW_PRIVATE_IPS)
    # The team's row is locked first, so of two identical requests at once (a script retrying after a
    # time-out) the second waits and then finds the first's channel: one channel, one copy of each alert.
    Team.objects.select_for_update().filter(pk=team.pk).first()
    if twin := team.channels.filter(kind=kind, target=target).first():
        raise RuleError(
            f"The team already has this {twin.get_kind_display().split(' (')[0].lower()} channel "
            f"({twin.display_target}, id {twin.id}){'' if twin.enabled else ', disabled'}: it is not added twice, "
            "or every alert would be sent twice. Remove that one first to add it again.",
            field="target",
        )
    channel = Channel(team=team, kind=kind, target=target, enabled=enabled, created_by=actor if actor else None)
    channel.set_secret(secret)
    channel.save()
    audit.record(
        Action.CHANNEL_CREATED,
        actor=actor,
        request=request,
        team=team,
        target=channel.display_target[:200],
        details={"channel": str(channel.id), "kind": kind, "signed": channel.has_secret},
    )
    if channel_notices(channel):
        # Kept (mail may be set up next); the page and the API say so at once, and each delivery fails with NO_MAIL.
        logger.warning("E-mail channel %s added to team %s while the portal sends no mail.", channel.pk, team.slug)
    return channel


def channel_notices(channel: Channel) -> list[str]:
    """What the admin who wrote `channel` must hear: that it cannot deliver yet (an e-mail channel while mail is off)."""
    if channel.kind == ChannelKind.EMAIL and not settings.EMAIL_CONFIGURED:
        return [NO_MAIL_CHANNEL]
    return []


def delivery_lease() -> timedelta:
    """How long a notify run holds the deliveries it claimed; after that, the run is taken to have died."""
    return max(MIN_LEASE, timedelta(seconds=2 * BATCH_PER_SLOT * (settings.NOTIFY_TIMEOUT + 1)))


@transaction.atomic
def delete_channel(*, channel: Channel, actor, request: HttpRequest | None = None) -> None:
    """Remove a channel; what it had still to send is cancelled, what it sent (or is sending) stays on the Deliveries page.

    Once: a second removal sent at the same moment (a double click, a retry) finds it gone and records nothing.
    """
    if Channel.objects.select_for_update().filter(pk=channel.pk).first() is None:
        return
    # One a run is sending right now is left to that run: the receiver may be getting it, so the run records the
    # attempt, then cancels instead of retrying (alerts.delivery.record).
    free = claims.free_of_claims(claimed_at="claimed_at", now=timezone.now(), lease=delivery_lease())
    channel.deliveries.filter(free, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.CANCELLED, last_error=CHANNEL_REMOVED, claimed_at=None, claim=None
    )
    audit.record(
        Action.CHANNEL_DELETED,
        actor=actor,
        request=request,
        team=channel.team,
        target=channel.display_target[:200],
        details={"channel": str(channel.id), "kind": channel.kind},
    )
    channel.delete()


def _told(message: Message) -> dict:
    """The columns of a notification that say what `message` says."""
    return {
        "subject": " ".join(message.subject.split())[:200],  # one line: it becomes a mail header
        "text": message.text,
        "url": message.url[:500],
        "payload": message.payload,
    }


def _create(team: Team, message: Message, *, key: GatewayKey | None, dedupe_key: str | None) -> Notification | None:
    """The notification row; None when its dedupe key was told already."""
    fields = {"team": team, "event": message.event, "key": key, **_told(message), "dedupe_key": dedupe_key}
    if dedupe_key is None:
        return Notification.objects.create(**fields)
    try:
        with transaction.atomic():
            return Notification.objects.create(**fields)
    except IntegrityError:  # another run told it first
        return None


@transaction.atomic
def notify_team(
    team: Team,
    message: Message,
    *,
    key: GatewayKey | None = None,
    dedupe_key: str | None = None,
    channels: list[Channel] | None = None,
) -> Notification | None:
    """Write a notification and one delivery for each enabled channel of the team (or the channels given)."""
    notification = _create(team, message, key=key, dedupe_key=dedupe_key)
    if notification is None:
        return None
    if channels is None:
        channels = list(Channel.objects.filter(team=team, enabled=True))
    Delivery.objects.bulk_create(
        [Delivery(notification=notification, channel=c, kind=c.kind, target=c.target) for c in channels]
    )
    return notification


@transaction.atomic
def notify_person(team: Team, user, message: Message, *, key: GatewayKey | None = None) -> Notification | None:
    """Write a notification for one person, delivered by mail to their address (none without one)."""
    return notify_people(team, [user], message, key=key)


@transaction.atomic
def notify_people(team: Team, users: list, message: Message, *, key: GatewayKey | None = None) -> Notification | None:
    """One notification for several people, delivered by mail to each one's address (none without one)."""
    notification = _create(team, message, key=key, dedupe_key=None)
    if notification is not None:
        Delivery.objects.bulk_create(
            [
                Delivery(notification=notification, user=user, kind=ChannelKind.EMAIL, target=user.email)
                for user in users
                if user.email
            ]
        )
    return notification


def retell(notification: Notification, message: Message) -> None:
    """Make a person's notification, not sent yet, say `message` instead: what it said stopped being true since it was
    written. The Deliveries page then shows what was sent. Only for a notification of one delivery (notify_person)."""
    told = _told(message)
    Notification.objects.filter(pk=notification.pk).update(**told)
    for column, value in told.items():
        setattr(notification, column, value)


def send_test(*, channel: Channel, actor) -> Notification | None:
    """A test message to one channel, so an admin sees it arrive (or the Deliveries page says why not)."""
    message = messages.channel_test(team_name=channel.team.name, actor_name=actor.get_username())
    return notify_team(channel.team, message, channels=[channel])


def notify_rotation(key: GatewayKey, *, actor) -> None:
    """The team hears a key was rotated; each holder hears what to do about it, if anything."""
    # Installed, fetching (one that never fetched holds no secret: its holder is not served by it) and still
    # assigned, whatever the key's state (a disabled key is rotated, then enabled again).
    live = Device.objects.filter(
        assignment=OuterRef("pk"), installed_at__isnull=False, last_seen_at__isnull=False, revoked_at__isnull=True
    )
    holders = list(
        Assignment.objects.filter(key=key)
        .annotate(has_live_device=Exists(live))
        .select_related("user", "key__team", "key__gateway")
    )
    told = live_only = never = 0
    for assignment in holders:
        advice = messages.holder_rotation_advice(assignment)
        if advice is not None:
            notify_person(key.team, assignment.user, messages.rotated_for_holder(assignment, advice=advice), key=key)
            told += 1
        elif assignment.has_live_device:
            live_only += 1
        else:
            never += 1
    actor_name = actor.get_username() if actor else ""
    message = messages.key_rotated(
        key, actor_name=actor_name, holders=told, live_holders=live_only, never_downloaded=never
    )
    notify_team(key.team, message, key=key)


def notify_revocation(key: GatewayKey, *, actor) -> None:
    """The team hears a key was revoked; each holder hears which key takes its place, or to ask for a new one.

    Every holder is told, whether they downloaded, use a live device or never set it up: the key is gone for all of
    them. A deactivated account is not (its delivery would be cancelled), nor the admin who revoked a key they hold
    themselves (they did it; the team's message says they held it, and counts them among `unreplaced` if so). One
    query for the holders and their replacements (replacement_columns), then a notification per holder, as
    notify_rotation makes. The mail is checked again when it is sent (alerts.delivery.revocation_as_now)."""
    holders = list(
        Assignment.objects.filter(key=key, user__is_active=True)
        .annotate(**replacement_columns())
        .select_related("user", "key__team", "key__gateway")
    )
    actor_id = actor.pk if actor else None
    told = without_address = unreplaced = 0
    actor_held = False
    for assignment in holders:
        replacement = assignment.replaced_by()  # read from the annotation: no query
        unreplaced += replacement is None
        if actor_id is not None and assignment.user_id == actor_id:
            actor_held = True
            continue
        if not assignment.user.email:
            without_address += 1  # My set-up tells them; a notification no one receives is not made
            continue
        notify_person(
            key.team, assignment.user, messages.revoked_for_holder(assignment, replacement=replacement), key=key
        )
        told += 1
    message = messages.key_revoked(
        key,
        actor_name=actor.get_username() if actor else "",
        holders=told,
        without_address=without_address,
        unreplaced=unreplaced,
        static_copies=devices.copies_out(key),
        actor_held=actor_held,
    )
    notify_team(key.team, message, key=key)


def expiry_dedupe_key(key: GatewayKey) -> str:
    """One "expires soon" per key and expiry date in TIME_ZONE (the date the message names): a renewed key that
    nears its new date is told again, one moved within the same day is not."""
    if key.expires_at is None:
        raise ValueError(f"The key {key.label} has no expiry to tell of.")
    return f"key.expiring:{key.id}:{in_portal_zone(key.expires_at):%Y%m%d}"


def notify_expiring(*, now: datetime | None = None) -> int:
    """Tell each team once about each usable key that expires within EXPIRY_WARNING_DAYS; return how many."""
    now = now or timezone.now()
    window = now + timedelta(days=settings.EXPIRY_WARNING_DAYS)
    keys = list(
        GatewayKey.objects.usable()
        .filter(expires_at__gt=now, expires_at__lte=window)
        .select_related("team", "gateway")
        .order_by("expires_at")
    )
    # A warning recorded before the key named the date alone (up to 2026-11) named the expiry's second.
    earlier = {key.id: f"key.expiring:{key.id}:{key.expires_at:%Y%m%dT%H%M%S}" for key in keys}
    told_before = set(
        Notification.objects.filter(
            dedupe_key__in=[expiry_dedupe_key(k) for k in keys] + list(earlier.values())
        ).values_list("dedupe_key", flat=True)
    )
    count = 0
    for key in keys:
        dedupe_key = expiry_dedupe_key(key)
        if (
            dedupe_key not in told_before
            and earlier[key.id] not in told_before
            and notify_team(key.team, messages.key_expiring(key), key=key, dedupe_key=dedupe_key)
        ):
            count += 1
    return count
