"""Teams, memberships, personal access tokens and the append-only audit trail."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from portal import audit_chain
from portal.compiled_sql import CompiledRead
from portal.crypto import Keyring, remember
from portal.ordering import ReadingOrder


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    AUDITOR = "auditor", "Auditor"


class TeamQuerySet(models.QuerySet):
    def visible_to(self, user) -> TeamQuerySet:
        """Teams the user may see at all: staff see every team, others their own."""
        if not user.is_authenticated:
            return self.none()
        if user.is_staff:
            return self
        return self.filter(memberships__user=user).distinct()

    def with_role(self, user, *roles: str) -> TeamQuerySet:
        """Teams where the user holds one of the roles; staff count as admin everywhere."""
        if not user.is_authenticated:
            return self.none()
        if user.is_staff:
            return self
        return self.filter(memberships__user=user, memberships__role__in=roles).distinct()

    def administered_by(self, user) -> TeamQuerySet:
        return self.with_role(user, Role.ADMIN)

    def overseen_by(self, user) -> TeamQuerySet:
        """Teams whose keys, connections and audit trail the user may read."""
        return self.with_role(user, Role.ADMIN, Role.AUDITOR)


# Slugs that are the address of a page beside the teams' and gateways' own (/teams/new/, /gateways/new/).
RESERVED_SLUGS = frozenset({"new"})


def validate_lowercase_slug(slug: str) -> None:
    """Slugs are lowercase, so that no two differ only in case (web and WEB read as one), and none is the
    address of another page (RESERVED_SLUGS), or the team's or gateway's own page could not be opened."""
    if slug != slug.lower():
        raise ValidationError(f"Use lowercase letters in the slug: {slug.lower()!r}, not {slug!r}.")
    if slug in RESERVED_SLUGS:
        raise ValidationError(
            f"The slug {slug!r} is the address of the page that creates one, so its own page could not be "
            "opened. Choose another slug."
        )


class Team(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50, unique=True, validators=[validate_lowercase_slug])
    created_at = models.DateTimeField(default=timezone.now)
    # Single sign-on: members of these identity-provider groups join the team (see portal/oidc.py).
    sso_member_group = models.CharField(max_length=200, blank=True)
    sso_admin_group = models.CharField(max_length=200, blank=True)

    objects = TeamQuerySet.as_manager()

    class Meta:
        # As people read a list of names: "alpha, Beta, Émile, zeta", not capitals first and accents after z
        # (portal.ordering; the name as typed breaks ties).
        ordering = [ReadingOrder("name").asc(), "name"]
        constraints = [
            # No two slugs that differ only in case: people read WEB and web as one team.
            models.UniqueConstraint(
                Lower("slug"),
                name="team_slug_lowercase_unique",
                violation_error_message="A team with this slug in another case already exists.",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def role_of(self, user) -> str | None:
        """The user's role here, from prefetched memberships when there are.

        Staff count as admin, even where they also hold a plainer membership (say, to be given a key):
        the visibility querysets above show them every team's keys, so their role must let them act on them.
        """
        if not user.is_authenticated:
            return None
        if user.is_staff:
            return Role.ADMIN
        if "memberships" in getattr(self, "_prefetched_objects_cache", {}):
            membership = next((m for m in self.memberships.all() if m.user_id == user.pk), None)
        else:
            membership = self.memberships.filter(user=user).first()
        return membership.role if membership else None


class Membership(models.Model):
    team = models.ForeignKey(Team, models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)
    # Made or last changed by the team's SSO groups: then the groups claim decides it at each sign-in.
    via_sso = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="unique_membership")]
        ordering = ["team", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class TokenScope(models.TextChoices):
    """What a token may do. The prefix says it, so each door refuses the other scope's tokens by sight."""

    API = "api", "Call the API (personal access token)"
    KEY_FETCH = "key_fetch", "Fetch one device's key, nothing else (device token)"


TOKEN_PREFIXES: dict[str, str] = {TokenScope.API: "ptl", TokenScope.KEY_FETCH: "pkf"}
TOKEN_PREFIX = TOKEN_PREFIXES[TokenScope.API]
# Every new token expires: ACCESS_TOKEN_DEFAULT_DAYS unless asked otherwise, never later than this.
ACCESS_TOKEN_MAX_DAYS = 3650


def token_digest(raw: str) -> str:
    """The stored form of a token or one-time code: its SHA-256 (they are random, so no salt is needed)."""
    return hashlib.sha256(raw.encode()).hexdigest()


def mint_token(scope: str) -> tuple[str, str]:
    """A new random token of `scope`: (lookup id, plaintext). Store the lookup id and token_digest(plaintext)."""
    lookup_id = secrets.token_hex(6)
    raw = f"{TOKEN_PREFIXES[scope]}_{lookup_id}_{secrets.token_urlsafe(32)}"
    remember(raw)
    return lookup_id, raw


def token_lookup(raw: str, scope: str) -> str | None:
    """The lookup id of a token of `scope`, or None when `raw` is not shaped like one."""
    prefix, _, rest = raw.partition("_")
    lookup_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIXES[scope] or not lookup_id or len(lookup_id) > 16 or not secret:
        return None
    return lookup_id


def token_scope(raw: str) -> str | None:
    """Which scope's prefix `raw` carries, if any."""
    return next((scope for scope in TokenScope if token_lookup(raw, scope)), None)


def token_matches(stored_digest: str | None, raw: str) -> bool:
    """Compare in constant time; a missing row costs the same as a wrong token."""
    return hmac.compare_digest(stored_digest or token_digest("absent"), token_digest(raw)) and bool(stored_digest)


class AccessTokenQuerySet(models.QuerySet):
    def matching(self, raw: str) -> AccessToken | None:
        """Return the token whose digest `raw` matches, live or not, or None; the same answer whether a token
        with its lookup id exists or not. Only its holder can learn that it expired or was revoked, and when.

        It looks among all tokens (through a read compiled once, not through this queryset's filters).
        """
        lookup_id = token_lookup(raw, TokenScope.API)
        if lookup_id is None:
            return None
        token = _TOKEN_WITH_USER.get(lookup_id)
        if not token_matches(token.digest if token else None, raw) or token is None:
            return None
        return token

    def authenticate(self, raw: str) -> AccessToken | None:
        """Return the live token of an active account for `raw`, or None."""
        token = self.matching(raw)
        if token is None or not token.is_live or not token.user.is_active:
            return None
        return token


class AccessToken(models.Model):
    """A personal access token (scope API): shown once, stored as a SHA-256 digest, found by a short id."""

    scope = TokenScope.API  # device tokens (TokenScope.KEY_FETCH) live with their device, in gateways

    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="access_tokens")
    name = models.CharField(max_length=100, blank=True)
    lookup_id = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = AccessTokenQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}_{self.lookup_id}_… ({self.user})"

    @classmethod
    def issue(cls, user, *, name: str = "", expires_at: datetime | None = None) -> tuple[AccessToken, str]:
        """Create a token and return it with its plaintext, which is never stored.

        Without `expires_at` it lives ACCESS_TOKEN_DEFAULT_DAYS: a forgotten token dies on its own.
        """
        if expires_at is None:
            expires_at = timezone.now() + timedelta(days=settings.ACCESS_TOKEN_DEFAULT_DAYS)
        lookup_id, raw = mint_token(TokenScope.API)
        token = cls.objects.create(
            user=user, name=name, lookup_id=lookup_id, digest=token_digest(raw), expires_at=expires_at
        )
        return token, raw

    @property
    def is_live(self) -> bool:
        if self.revoked_at:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()


# Every API request with a token starts here: its SQL is compiled once per thread (portal.compiled_sql).
_TOKEN_WITH_USER = CompiledRead(AccessToken, where=("lookup_id",), related=("user",))


class Action(models.TextChoices):
    SIGN_IN = "auth.sign_in", "Signed in"
    SIGN_IN_FAILED = "auth.sign_in_failed", "Failed sign-in"
    SIGN_OUT = "auth.sign_out", "Signed out"
    TEAM_CREATED = "team.created", "Team created"
    MEMBER_ADDED = "member.added", "Member added"
    MEMBER_ROLE_CHANGED = "member.role_changed", "Member role changed"
    MEMBER_REMOVED = "member.removed", "Member removed"
    GATEWAY_CREATED = "gateway.created", "Gateway created"
    GATEWAY_UPDATED = "gateway.updated", "Gateway updated"
    KEY_CREATED = "key.created", "Key created"
    KEY_UPDATED = "key.updated", "Key settings changed"
    KEY_ROTATED = "key.rotated", "Key secret rotated"
    KEY_DISABLED = "key.disabled", "Key disabled"
    KEY_ENABLED = "key.enabled", "Key enabled"
    KEY_REVOKED = "key.revoked", "Key revoked"
    KEY_EXPIRED = "key.expired", "Key expired"
    ASSIGNMENT_CREATED = "assignment.created", "Key assigned"
    ASSIGNMENT_SELF_ASSIGNED = "assignment.self_assigned", "Key assigned to oneself"
    ASSIGNMENT_REMOVED = "assignment.removed", "Assignment removed"
    CONFIG_DOWNLOADED = "config.downloaded", "Configuration downloaded"
    CONFIG_REFUSED = "config.refused", "Configuration refused"
    PROBE_RUN = "probe.run", "Probe run"
    PROBE_CHANGED_SETTING = "probe.changed_setting", "Probe changed a key setting"
    DEVICE_CREATED = "device.created", "Device install link made"
    DEVICE_INSTALLED = "device.installed", "Device installed"
    DEVICE_REMOVED = "device.removed", "Device removed"
    DEVICE_KEY_FETCHED = "device.key_fetched", "Device fetched its key"
    DEVICE_FETCH_REFUSED = "device.fetch_refused", "Device key fetch refused"
    TOKEN_ISSUED = "token.issued", "Access token issued"
    TOKEN_REVOKED = "token.revoked", "Access token revoked"
    ENCRYPTION_ROTATED = "vault.rotated", "Encryption key rotated"
    AUDIT_PRUNED = "audit.pruned", "Audit trail pruned"
    AUDIT_RESEALED = "audit.resealed", "Audit trail re-signed"
    # Accounts (issue 13)
    TEAM_UPDATED = "team.updated", "Team settings changed"
    INVITATION_CREATED = "invitation.created", "Invitation sent"
    INVITATION_WITHDRAWN = "invitation.withdrawn", "Invitation withdrawn"
    INVITATION_ACCEPTED = "invitation.accepted", "Invitation accepted"
    ACCOUNT_CREATED = "account.created", "Account created"
    PASSWORD_CHANGED = "account.password_changed", "Password changed"
    PASSWORD_RESET_LINK = "account.reset_link_made", "Password reset link made"
    TWO_FACTOR_ENABLED = "account.2fa_enabled", "Two-factor enrolled"
    TWO_FACTOR_DISABLED = "account.2fa_disabled", "Two-factor removed"
    RECOVERY_CODES_RENEWED = "account.recovery_codes_renewed", "Recovery codes renewed"
    TWO_FACTOR_FAILED = "auth.2fa_failed", "Failed second factor"
    MEMBER_OFFBOARDED = "member.offboarded", "Member offboarded"
    USER_OFFBOARDED = "account.offboarded", "Account offboarded"
    CHANNEL_CREATED = "channel.created", "Notification channel added"
    CHANNEL_DELETED = "channel.deleted", "Notification channel removed"
    EMAIL_CONFIRMED = "account.email_confirmed", "E-mail address confirmed"
    ACCOUNT_UPDATED = "account.updated", "Account changed"
    ACCOUNT_UNLOCKED = "account.unlocked", "Sign-in lock-out lifted"
    TOKEN_UPDATED = "token.updated", "Access token changed"
    MEMBER_RENAMED = "member.renamed", "Member renamed"


class ImmutableAuditError(Exception):
    """Audit events are append-only."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise ImmutableAuditError("Audit events cannot be changed.")

    def delete(self):
        raise ImmutableAuditError("Audit events cannot be deleted; use `manage.py prune_audit`.")

    def write_signatures(self, events: list[AuditEvent]) -> None:
        """Store new signatures for events whose hashes and links stay as they are (key rotation only)."""
        plain: models.QuerySet[AuditEvent] = models.QuerySet(
            model=self.model, using=self.db
        )  # skips update()'s refusal
        plain.bulk_update(events, ["signature", "signing_key_id"])

    def visible_to(self, user) -> AuditEventQuerySet:
        """Staff see everything; team admins and auditors see their teams; others their own acts."""
        if not user.is_authenticated:
            return self.none()
        if user.is_staff:
            return self
        teams = Team.objects.overseen_by(user).values("pk")
        return self.filter(models.Q(team__in=teams) | models.Q(actor=user))


class AuditContent(models.Model):
    """What an audit row says: every column its hash and signature cover (audit_chain.content_of)."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # No index of their own on actor and team: AuditEvent's (actor, -id) and (team, -id) lead with them,
    # and the queue is read by id. Every index is written by every audited request.
    # DO_NOTHING: a signed row must not change when its user or team is deleted (SET_NULL would
    # rewrite actor_id and break the chain); the names below keep who it was.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    actor_username = models.CharField(max_length=150, blank=True)  # kept when the user is deleted
    action = models.CharField(max_length=40, choices=Action.choices)
    team = models.ForeignKey(
        Team, models.DO_NOTHING, null=True, blank=True, related_name="+", db_constraint=False, db_index=False
    )
    team_slug = models.CharField(max_length=50, blank=True)
    gateway_slug = models.CharField(max_length=50, blank=True)
    target = models.CharField(max_length=200, blank=True)  # e.g. a key fingerprint; never a secret
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    details = models.JSONField(default=dict, blank=True)
    # Random, given to an event when it is queued (audit._queued) and kept when it is chained: each queued
    # event is one of a kind, so a copy of its queue row shows (audit_chain.pending_problem). None on an
    # event chained directly, which no copy can reach the chain through; the hash covers it only when set.
    # NULL, not "": adding the column then rewrites no row of a large chain, and those rows stay out of its index.
    nonce = models.CharField(max_length=32, null=True, blank=True, editable=False)  # noqa: DJ001

    class Meta:
        abstract = True


def _nonce_once(name: str) -> models.UniqueConstraint:
    """A nonce on one row at most. Partial: rows without one (most of the chain) are not in the index."""
    return models.UniqueConstraint(fields=["nonce"], condition=models.Q(nonce__isnull=False), name=name)


# The columns of AuditContent by attribute name, for copying an event between the queue and the chain.
AUDIT_CONTENT_FIELDS = tuple(field.attname for field in AuditContent._meta.fields)


class AuditEvent(AuditContent):
    """One sensitive action. Rows are chained by hash and signed with a key outside the database (audit_chain)."""

    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    signature = models.CharField(max_length=64, blank=True)  # HMAC-SHA256 of the hash, see audit_chain
    signing_key_id = models.CharField(max_length=8, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["team", "-id"], name="audit_team_recent"),
            models.Index(fields=["actor", "-id"], name="audit_actor_recent"),
            models.Index(fields=["action", "-id"], name="audit_action_recent"),
            models.Index(fields=["gateway_slug", "-id"], name="audit_gateway_recent"),
            # The audit page and API filter by the names as recorded (they outlive a renamed team or
            # a deleted user), newest first.
            models.Index(fields=["team_slug", "-id"], name="audit_team_slug_recent"),
            models.Index(fields=["actor_username", "-id"], name="audit_actor_name_recent"),
            # "Probe runs on this gateway": the combination the probes' own audit rows are read by.
            models.Index(fields=["gateway_slug", "action", "-id"], name="audit_gateway_action_recent"),
            # The same with a time range, which the lists order by time (portal.audit.ordering_for).
            models.Index(fields=["gateway_slug", "action", "-created_at", "-id"], name="audit_gateway_action_time"),
        ]
        constraints = [_nonce_once("audit_nonce_once")]  # an event that waited in the queue is chained once

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_username or 'system'} {self.action}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ImmutableAuditError("Audit events cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableAuditError("Audit events cannot be deleted; use `manage.py prune_audit`.")

    def compute_hash(self) -> str:
        return audit_chain.link_hash(self.prev_hash, audit_chain.content_of(self))

    def seal(self, keyring: Keyring) -> None:
        """Set the hash over this row and the previous hash, and sign it with the keyring's first key.

        Requests and commands chain their events through portal.audit (a compiled INSERT computing the same
        hash); this is for rows built in Python, such as bench/seed_large.py's."""
        self.hash = self.compute_hash()
        self.signature, self.signing_key_id = audit_chain.sign(keyring, self.hash)

    def seal_problem(self, keyring: Keyring) -> str | None:
        """Why this row's hash or signature does not hold, as a sentence fragment; None when both do."""
        if self.compute_hash() != self.hash:
            return "its content no longer matches its hash"
        return audit_chain.signature_problem(keyring, self.signing_key_id, self.hash, self.signature)


class PendingAuditEvent(AuditContent):
    """An event written while another writer held the chain's head; `audit.seal_pending` chains it moments later.

    It carries a signature of its own over its content and nonce (audit_chain.sign_pending), so a queued
    row cannot be forged or edited on its way into the chain, nor copied into it twice; one that fails is
    marked rejected, never chained.
    """

    created_at = models.DateTimeField(default=timezone.now)  # a queue: read by id, never by time
    signature = models.CharField(max_length=64)
    signing_key_id = models.CharField(max_length=8)
    rejected = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["rejected", "id"], name="pending_audit_queue")]
        constraints = [_nonce_once("pending_audit_nonce_once")]

    def __str__(self) -> str:
        return f"pending {self.action} of {self.created_at:%Y-%m-%d %H:%M:%S}"


class AuditChainHead(models.Model):
    """A single row that serialises writers of the audit chain and remembers where it starts."""

    last_hash = models.CharField(max_length=64, default="")
    anchor_hash = models.CharField(max_length=64, default="")  # hash before the oldest kept event

    def __str__(self) -> str:
        return f"audit chain head {self.last_hash[:12]}"


INVITATION_PREFIX = "inv"


class InvitationQuerySet(models.QuerySet):
    def pending(self) -> InvitationQuerySet:
        """Not used, withdrawn or expired yet; a pending one may still have lapsed (see usable)."""
        return self.filter(accepted_at__isnull=True, withdrawn_at__isnull=True, expires_at__gt=timezone.now())

    def inviter_may_still_invite(self) -> InvitationQuerySet:
        """Those whose maker could still make them: an active account, admin of the team (staff are, of every team).

        The one rule behind Invitation.refusal, the pending lists, the duplicate check and SSO's new accounts.
        """
        admin = Membership.objects.filter(
            team=models.OuterRef("team"), user=models.OuterRef("created_by"), role=Role.ADMIN
        )
        return self.filter(created_by__is_active=True).filter(
            models.Q(created_by__is_staff=True) | models.Exists(admin)
        )

    def usable(self) -> InvitationQuerySet:
        """Pending invitations whose link still works: what the lists show and what SSO makes an account for."""
        return self.pending().inviter_may_still_invite()

    def find(self, raw: str) -> Invitation | None:
        """The invitation for a link's token, in any state, or None; the same work whether it exists or not."""
        try:
            prefix, lookup_id, _ = raw.split("_", 2)
        except ValueError:
            return None
        if prefix != INVITATION_PREFIX:
            return None
        invitation = self.select_related("team", "created_by").filter(lookup_id=lookup_id).first()
        if not token_matches(invitation.digest if invitation else None, raw) or invitation is None:
            return None
        return invitation


class Invitation(models.Model):
    """A one-time link that makes whoever opens it a member of a team; stored as a digest, like access tokens."""

    team = models.ForeignKey(Team, models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    lookup_id = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+")
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["team", "email"], name="invitation_team_email")]

    def __str__(self) -> str:
        return f"{self.email} to {self.team} ({self.role})"

    @classmethod
    def issue(cls, *, team: Team, email: str, role: str, created_by, expires_at: datetime) -> tuple[Invitation, str]:
        """Create an invitation and return it with its link token, which is never stored."""
        lookup_id = secrets.token_hex(6)
        raw = f"{INVITATION_PREFIX}_{lookup_id}_{secrets.token_urlsafe(32)}"
        remember(raw)
        invitation = cls.objects.create(
            team=team,
            email=email,
            role=role,
            lookup_id=lookup_id,
            digest=token_digest(raw),
            created_by=created_by,
            expires_at=expires_at,
        )
        return invitation, raw

    @property
    def state(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.withdrawn_at:
            return "withdrawn"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"

    def refusal(self) -> str | None:
        """Why this link no longer works, as a sentence for the person who opened it; None while it does."""
        if self.state == "pending" and not self.inviter_may_still_invite():
            return (
                f"This invitation was made by someone who is no longer an admin of {self.team.name}, so it "
                "cannot be used. Ask one of the team's admins for a new one."
            )
        return {
            "accepted": "This invitation was already used. Sign in instead, or ask the team's admin for a new one.",
            "withdrawn": "This invitation was withdrawn by the team's admin. Ask them for a new one if you need it.",
            "expired": "This invitation has expired. Ask the team's admin for a new one.",
        }.get(self.state)

    def inviter_may_still_invite(self) -> bool:
        """An invitation grants what its maker could: it lapses when they leave, are deactivated or lose admin."""
        return Invitation.objects.filter(pk=self.pk).inviter_may_still_invite().exists()


class ExternalIdentity(models.Model):
    """An account at the identity provider (issuer and subject) linked to a portal user, found again by subject."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="external_identities")
    issuer = models.CharField(max_length=300)
    subject = models.CharField(max_length=255)
    email = models.EmailField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="unique_external_identity")]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer} ({self.user})"


class UnconfirmedEmailQuerySet(models.QuerySet):
    def standing(self) -> UnconfirmedEmailQuerySet:
        """Marks still on the account's address (staff changing the address is their word for the new one)."""
        return self.filter(email__iexact=models.F("user__email"))


class UnconfirmedEmail(models.Model):
    """An account's address that only the holder of an invitation link vouches for, until its owner confirms it.

    Whoever opens an invitation link may make an account with the invited address without showing that the
    mailbox is theirs (links get forwarded). Until the address is confirmed (a link mailed to it, a password
    reset through it, or staff), a first SSO sign-in with that address does not enter the account: otherwise
    someone holding another person's link could prepare the account that person's SSO sign-in lands in.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, models.CASCADE, primary_key=True, related_name="unconfirmed_email"
    )
    email = models.EmailField()  # the account's address when it was marked; a changed address is staff's word
    created_at = models.DateTimeField(default=timezone.now)
    link_sent_at = models.DateTimeField(null=True, blank=True)

    objects = UnconfirmedEmailQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.email} (not confirmed)"


class ResetLinkMailQuerySet(models.QuerySet):
    def claim(self, user, *, every: timedelta) -> bool:
        """Whether a reset link may be mailed to `user` now, taking the turn if so: False when one went less than
        `every` ago, or another request takes the turn at the same moment (the UPDATE's WHERE, or the key)."""
        now = timezone.now()
        if self.filter(user=user, sent_at__lte=now - every).update(sent_at=now):
            return True
        try:
            with transaction.atomic():
                self.create(user=user, sent_at=now)
        except IntegrityError:
            return False
        return True


class ResetLinkMail(models.Model):
    """When an account was last mailed a password-reset link. Anyone can post the reset form, so it mails one
    account at most once in a while; the stamp is a row, not a cache entry, for every server to see it."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, models.CASCADE, primary_key=True, related_name="+")
    sent_at = models.DateTimeField()

    objects = ResetLinkMailQuerySet.as_manager()

    def __str__(self) -> str:
        return f"reset link mailed to {self.user_id} at {self.sent_at:%Y-%m-%d %H:%M}"
