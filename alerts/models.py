"""A team's notification channels, the notifications the portal makes, and their deliveries.

A Notification is one message about one event (a key started failing, a member joined...),
written in the transaction of the change. It gets one Delivery per destination: each enabled
channel of its team, or one person's address. `manage.py notify` sends what is due and
records every attempt; a failed one is tried again after the next step of BACKOFF, then given up.
Once a delivery to a channel fails, or while a run holds it (one that died included), the channel's newer ones
wait behind it (DeliveryQuerySet.due).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from alerts import rules
from portal import crypto
from portal.models import Membership, Team


class ChannelKind(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (JSON signed with HMAC-SHA256)"
    SLACK = "slack", "Slack-compatible incoming webhook"
    EMAIL = "email", "E-mail"


class ChannelQuerySet(models.QuerySet):
    def visible_to(self, user) -> ChannelQuerySet:
        """Channels of the teams the user administers or audits (staff: all)."""
        return self.filter(team__in=Team.objects.overseen_by(user))


class Channel(models.Model):
    """Where a team hears of its events. The signing secret is sealed like a key's and never shown again."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, models.CASCADE, related_name="channels")
    kind = models.CharField(max_length=10, choices=ChannelKind.choices)
    target = models.CharField(max_length=rules.MAX_TARGET, help_text="A URL, or an e-mail address.")
    secret_ciphertext = models.TextField(blank=True, editable=False)
    secret_key_id = models.CharField(max_length=8, blank=True, db_index=True, editable=False)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    objects = ChannelQuerySet.as_manager()
    vault_sealed = True  # rotate_encryption_key re-encrypts secret_ciphertext

    class Meta:
        ordering = ["team", "created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.display_target}"

    @property
    def display_target(self) -> str:
        return rules.display_target(self.kind, self.target)

    @property
    def vault_label(self) -> str:
        return f"Notification channel {self.pk} ({self.display_target})"

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_ciphertext)

    @property
    def associated_data(self) -> str:
        return f"alerts.Channel:{self.id}"

    def set_secret(self, secret: str) -> None:
        """Seal the signing secret into this row, under the vault's keyring (rotate_encryption_key moves it too)."""
        if not secret:
            self.secret_ciphertext, self.secret_key_id = "", ""
            return
        self.secret_ciphertext, self.secret_key_id = crypto.get_keyring().encrypt(
            secret, associated_data=self.associated_data
        )

    def reveal_secret(self) -> str:
        """The signing secret, to sign a delivery with. Never log or send it."""
        if not self.secret_ciphertext:
            return ""
        return crypto.get_keyring().decrypt(self.secret_ciphertext, associated_data=self.associated_data)


class EventKind(models.TextChoices):
    KEY_FAILING = "key.failing", "Key started failing"
    KEY_RECOVERED = "key.recovered", "Key recovered"
    KEY_EXPIRING = "key.expiring", "Key expires soon"
    KEY_EXPIRED = "key.expired", "Key expired"
    KEY_ROTATED = "key.rotated", "Key rotated"
    KEY_REVOKED = "key.revoked", "Key revoked"
    MEMBER_ADDED = "member.added", "Member added"
    MEMBER_OFFBOARDED = "member.offboarded", "Member offboarded"
    KEY_SELF_ASSIGNED = "key.self_assigned", "Key self-assigned"
    TEST = "test", "Test message"


class Notification(models.Model):
    """One message about one event, rendered when it happens; it holds no secret, only labels and masked forms."""

    team = models.ForeignKey(Team, models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=20, choices=EventKind.choices)
    key = models.ForeignKey("gateways.GatewayKey", models.SET_NULL, null=True, blank=True, related_name="+")
    subject = models.CharField(max_length=200)
    text = models.TextField()
    url = models.CharField(max_length=500, blank=True)  # where to act on it
    payload = models.JSONField(default=dict, blank=True)  # the generic webhook's body, with id and text added
    # Set for events that must be told once, such as "expires soon" for one expiry date.
    dedupe_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.subject


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


# How long to wait after each failed attempt before the next; after the last, the delivery has failed.
BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
)
MAX_ATTEMPTS = len(BACKOFF) + 1


class DeliveryQuerySet(models.QuerySet):
    def visible_to(self, user) -> DeliveryQuerySet:
        """Deliveries of the teams the user administers (staff: all), but not a mail to someone outside the team.

        Staff are told of a self-assignment when a team has no other admin with an address: their names and
        addresses are not the team admins' to read on the Deliveries page.
        """
        visible = self.filter(notification__team__in=Team.objects.administered_by(user))
        if user.is_staff:
            return visible
        member = Membership.objects.filter(team=models.OuterRef("notification__team"), user=models.OuterRef("user"))
        return visible.filter(models.Q(user__isnull=True) | models.Exists(member))

    def due(self, now: datetime) -> DeliveryQuerySet:
        """Pending deliveries whose time has come, except those behind an older one to the same channel that failed
        and waits for its retry, or that a run claimed before `now` and has not recorded yet.

        A channel hears its news in the order it happened: after an outage a receiver gets "started
        failing" before "works again", never the reverse, whatever each one's retry schedule says. A
        channel that answers gets its deliveries side by side, as many as a run sends at once.
        A claim holds the newer ones back too, also one whose run died before recording an attempt: that
        delivery is sent again when its lease runs out, and the newer ones follow it, not precede it. A
        claim made at `now` is the claiming run's own batch (portal.claims re-checks this filter in its
        UPDATE), so its deliveries still go side by side. A delivery given up on (failed) holds nothing.
        """
        older_pending = Delivery.objects.filter(
            models.Q(attempts__gt=0) | models.Q(claimed_at__lt=now),
            channel=models.OuterRef("channel"),
            status=DeliveryStatus.PENDING,
            pk__lt=models.OuterRef("pk"),
        )
        # A test carries no news to keep in order, and "Send a test" must show at once whether a channel is back.
        held = models.Exists(older_pending) & ~models.Q(notification__event=EventKind.TEST)
        return self.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now).exclude(held)


class Delivery(models.Model):
    """One notification to one destination: a channel, or one person's address (a key's holder)."""

    notification = models.ForeignKey(Notification, models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(Channel, models.SET_NULL, null=True, blank=True, related_name="deliveries")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, null=True, blank=True, related_name="+")
    # Copied when the delivery is made, so its history reads the same after the channel goes.
    kind = models.CharField(max_length=10, choices=ChannelKind.choices)
    target = models.CharField(max_length=rules.MAX_TARGET)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # A notify run's hold on the delivery (portal.claims): two servers never send it twice.
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim = models.UUIDField(null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["notification", "channel"], name="one_delivery_per_channel"),
            models.UniqueConstraint(fields=["notification", "user"], name="one_delivery_per_person"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]

    def __str__(self) -> str:
        return f"{self.notification.subject} → {self.display_target}"

    @property
    def display_target(self) -> str:
        return rules.display_target(self.kind, self.target)

    def record_success(self, now: datetime) -> None:
        self.attempts += 1
        self.status, self.sent_at, self.last_error = DeliveryStatus.SENT, now, ""

    def release_followers(self, now: datetime) -> int:
        """The channel answered: what waits for it is due now, not at the end of its own backoff."""
        if self.channel_id is None:
            return 0
        return (
            Delivery.objects.filter(channel_id=self.channel_id, status=DeliveryStatus.PENDING, next_attempt_at__gt=now)
            .exclude(pk=self.pk)
            .update(next_attempt_at=now)
        )

    def record_failure(self, now: datetime, error: str) -> None:
        """Count a failed attempt: wait the next BACKOFF step, or give up after MAX_ATTEMPTS."""
        self.attempts += 1
        self.last_error = error[:500]
        if self.attempts >= MAX_ATTEMPTS:
            self.status = DeliveryStatus.FAILED
        else:
            self.next_attempt_at = now + BACKOFF[self.attempts - 1]


class DeliveryAttempt(models.Model):
    """One try at sending a delivery, for the Deliveries page."""

    delivery = models.ForeignKey(Delivery, models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    succeeded = models.BooleanField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="one_attempt_per_number")]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"
