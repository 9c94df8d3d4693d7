"""The gateway catalogue, the key vault, assignments and probe results."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from gateways import rules
from gateways.rules import CREDENTIAL_VARIABLE, AuthScheme, ModelIdStyle, Platform, fingerprint, mask
from gateways.rules import GATEWAY_MODEL_FIELDS as GATEWAY_MODEL_FIELDS  # declared beside their rules
from gateways.rules import KEY_MODEL_FIELDS as KEY_MODEL_FIELDS
from portal import crypto
from portal.models import Team, validate_lowercase_slug
from portal.ordering import ReadingOrder
from portal.times import written_time

# The fields staff may set on a gateway, in the order the API shows them; the form and the
# serializers are built from this tuple.
CREDENTIAL_HEADERS_MAX_AGE = timedelta(days=1)
GATEWAY_FIELDS = (
    "name",
    "base_url",
    "auth_scheme",
    "requires_sk_prefix",
    "model_id_style",
    "default_model",
    "default_opus_model",
    "default_sonnet_model",
    "default_haiku_model",
    "custom_model_option",
    "custom_model_option_name",
    "timeout_ms",
    "disable_experimental_betas",
    "extra_env",
    "docs_url",
    "console_hint",
    "notes",
    "troubleshooting",
    "probe_mode",
    "probe_prompt",
    "probe_model",
    "probe_interval_minutes",
)
# A key's settings that override a gateway default, and that default: blank or null on the key
# means "use the gateway's" (GatewayKey.setting() applies this, for configs, probes and pages).
KEY_OVERRIDES = {
    "model": "default_model",
    "opus_model": "default_opus_model",
    "sonnet_model": "default_sonnet_model",
    "haiku_model": "default_haiku_model",
    "custom_model_option": "custom_model_option",
    "custom_model_option_name": "custom_model_option_name",
    "timeout_ms": "timeout_ms",
    "disable_experimental_betas": "disable_experimental_betas",
}
KEY_OVERRIDE_FIELDS = (*KEY_OVERRIDES, "custom_headers")
# What a live device's settings.json holds: the gateway fields the config builder writes into env, and the key's
# overrides. A change to one stamps GatewayKey.settings_changed_at: the device must run its installer again.
INSTALLED_GATEWAY_FIELDS = ("base_url", "auth_scheme", "model_id_style", *KEY_OVERRIDES.values(), "extra_env")
# What an admin may set on a key (besides its secret), for the form and the serializers.
KEY_SETTING_FIELDS = ("label", "expires_at", *KEY_OVERRIDE_FIELDS)


# In a gateway's troubleshooting text, the gateway's own base URL (Gateway.troubleshooting_rows fills it in).
BASE_URL_PLACEHOLDER = "{base_url}"


class ProbeMode(models.TextChoices):
    INFERENCE = "inference", "Send a small message, like Claude Code"
    REACHABILITY = "reachability", "Reachability and auth only (weaker: no message is sent)"


def default_troubleshooting() -> list:
    return []


def apply_rules(instance: models.Model, names, clean) -> None:
    """Run `clean(fields)` field by field on `instance`, keep the cleaned values, report every refusal.

    Model.clean() is how the Django admin (any ModelForm) meets the rules the API and the web
    forms apply (gateways.rules), so each door refuses the same values with the same sentence.
    """
    errors: dict[str, list[str]] = {}
    for name in names:
        try:
            cleaned = clean({name: getattr(instance, name)})
        except rules.RuleError as exc:
            errors.setdefault(exc.field or name, []).append(str(exc))
            continue
        setattr(instance, name, cleaned[name])
    if errors:
        raise ValidationError(errors)


class Gateway(models.Model):
    """A service that speaks the Anthropic Messages protocol, with its own rules for Claude Code."""

    slug = models.SlugField(max_length=50, unique=True, validators=[validate_lowercase_slug])
    name = models.CharField(max_length=100)
    base_url = models.CharField(max_length=rules.BASE_URL_MAX_LENGTH, help_text="The API root, never ending in /v1.")
    auth_scheme = models.CharField(max_length=10, choices=AuthScheme.choices, default=AuthScheme.X_API_KEY)
    requires_sk_prefix = models.BooleanField(default=False, help_text="Keys are the full sk-… secret.")
    model_id_style = models.CharField(max_length=12, choices=ModelIdStyle.choices, default=ModelIdStyle.AS_IS)
    default_model = models.CharField(max_length=100, blank=True, help_text="ANTHROPIC_MODEL, e.g. sonnet.")
    default_opus_model = models.CharField(max_length=100, blank=True)
    default_sonnet_model = models.CharField(max_length=100, blank=True)
    default_haiku_model = models.CharField(max_length=100, blank=True)
    custom_model_option = models.CharField(max_length=100, blank=True)
    custom_model_option_name = models.CharField(max_length=100, blank=True)
    timeout_ms = models.PositiveIntegerField(null=True, blank=True, help_text="API_TIMEOUT_MS, if the guide asks.")
    disable_experimental_betas = models.BooleanField(
        default=False, help_text="Set CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS=1 (gateway rejects context_management)."
    )
    extra_env = models.JSONField(default=dict, blank=True)
    docs_url = models.URLField(blank=True)
    console_hint = models.CharField(max_length=300, blank=True, help_text="Where users find their key.")
    notes = models.TextField(blank=True)
    troubleshooting = models.JSONField(default=default_troubleshooting, blank=True)  # [[symptom, fix], ...]
    probe_mode = models.CharField(max_length=12, choices=ProbeMode.choices, default=ProbeMode.INFERENCE)
    probe_prompt = models.CharField(max_length=200, default="Reply with the single word: pong")
    probe_model = models.CharField(max_length=100, blank=True, help_text="Model for probes; blank uses the key's.")
    probe_interval_minutes = models.PositiveIntegerField(default=60)
    is_preset = models.BooleanField(default=False, editable=False)
    # What probes saw the gateway do with the two credential headers (rules.CREDENTIAL_HEADER_FACTS),
    # with the probe and time it was seen; written by probes only.
    credential_headers = models.JSONField(default=dict, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = [ReadingOrder("name").asc(), "name"]  # as people read names (portal.ordering)
        constraints = [
            # No two slugs that differ only in case: people read Tokaify and tokaify as one gateway.
            models.UniqueConstraint(
                Lower("slug"),
                name="gateway_slug_lowercase_unique",
                violation_error_message="A gateway with this slug in another case already exists.",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        names = ("base_url", *rules.GATEWAY_MODEL_FIELDS, *rules.GATEWAY_RULES)
        apply_rules(self, names, lambda fields: rules.clean_gateway_fields(fields, style=self.model_id_style)[0])

    @property
    def troubleshooting_rows(self) -> list[list[str]]:
        """The troubleshooting table to show, or none when what is stored breaks the rules.

        Each {base_url} is the gateway's own (str.replace: any other brace is the staff's text), so a row that names
        the address stays true when staff point the gateway elsewhere (gateways/migrations/0015 puts it in
        Tokaify's preset row). Plain text: the page escapes it like any other.
        """
        try:
            rows = rules.clean_troubleshooting(self.troubleshooting)
        except rules.RuleError:
            return []
        return [[cell.replace(BASE_URL_PLACEHOLDER, self.base_url) for cell in row] for row in rows]

    @property
    def troubleshooting_problem(self) -> str:
        """Why the stored troubleshooting table is not shown (saved around the rules), or ''."""
        try:
            rules.clean_troubleshooting(self.troubleshooting)
        except rules.RuleError as exc:
            return f"This gateway's troubleshooting table cannot be shown: {exc} Ask staff to correct it."
        return ""

    @property
    def empties_api_key(self) -> bool:
        """Bearer gateways need ANTHROPIC_API_KEY="": a leftover key makes Claude Code send both headers."""
        return self.auth_scheme == AuthScheme.BEARER

    @property
    def credential_variable(self) -> str:
        return CREDENTIAL_VARIABLE[self.auth_scheme]

    @property
    def blank_credential_variable(self) -> str:
        """The credential variable this gateway does not use: set to "" so a stale key is never sent."""
        return next(name for scheme, name in CREDENTIAL_VARIABLE.items() if scheme != self.auth_scheme)

    @property
    def credential_header_sentences(self) -> list[str]:
        return rules.describe_credential_headers(self.credential_headers or {})

    @property
    def auth_scheme_warning(self) -> str:
        return rules.auth_scheme_warning(self.auth_scheme, self.credential_headers or {})

    @property
    def credential_headers_due(self) -> bool:
        """Whether the next probe checks the credential headers again: daily, or while they contradict the scheme.

        Not on every probe: one of those requests carries a made-up key, and gateways count failed keys.
        """
        seen_at = parse_datetime(str((self.credential_headers or {}).get("seen_at", "")))
        return (
            seen_at is None or timezone.now() - seen_at > CREDENTIAL_HEADERS_MAX_AGE or bool(self.auth_scheme_warning)
        )


def usable_key(prefix: str = "", now: datetime | None = None) -> models.Q:
    """A usable key (GatewayKey.is_usable) in SQL: not revoked, enabled, not expired at `now`.

    `prefix` reaches the key from another model (`key__` from an assignment or a device).
    """
    now = now or timezone.now()
    unexpired = models.Q(**{f"{prefix}expires_at__isnull": True}) | models.Q(**{f"{prefix}expires_at__gt": now})
    return models.Q(**{f"{prefix}revoked_at__isnull": True, f"{prefix}is_enabled": True}) & unexpired


def probe_counts(prefix: str = "") -> models.Q:
    """The key's latest probe still counts (GatewayKey.current_probe_verdict): made since its last rotation or change."""
    return models.Q(**{f"{prefix}last_probe_at__gte": models.F(f"{prefix}config_changed_at")})


def refused_since(prefix: str = "") -> models.Case:
    """When the gateway began refusing the key: the first refusal since its last pass and its last rotation or
    change; null unless its current verdict is one of KEY_REFUSED_VERDICTS (GatewayKey.refused_since).

    `prefix` reaches the key from another model (`key__` from an assignment).
    """
    passed_after = ProbeResult.objects.filter(
        key=models.OuterRef("key"), verdict=Verdict.OK, created_at__gte=models.OuterRef("created_at")
    )
    first = (
        ProbeResult.objects.filter(
            ~models.Exists(passed_after),
            key=models.OuterRef(f"{prefix}pk"),
            created_at__gte=models.OuterRef(f"{prefix}config_changed_at"),
            verdict__in=KEY_REFUSED_VERDICTS,  # not an outage or a rate limit before the first refusal
        )
        .order_by("created_at")
        .values("created_at")[:1]
    )
    refused = models.Q(probe_counts(prefix), **{f"{prefix}last_probe_verdict__in": KEY_REFUSED_VERDICTS})
    return models.Case(models.When(refused, then=models.Subquery(first)), output_field=models.DateTimeField())


class GatewayKeyQuerySet(models.QuerySet):
    def visible_to(self, user) -> GatewayKeyQuerySet:
        """Keys of the teams the user administers or audits (staff: all)."""
        return self.filter(team__in=Team.objects.overseen_by(user))

    def failing(self) -> GatewayKeyQuerySet:
        """Usable keys whose latest probe failed and still counts (GatewayKey.is_failing), in one query."""
        return self.usable().filter(probe_counts()).exclude(last_probe_verdict__in=["", "ok"])

    def usable(self) -> GatewayKeyQuerySet:
        return self.filter(usable_key())

    def due_for_probe(self, now) -> GatewayKeyQuerySet:
        """Keys whose gateway's probe interval has passed since their last probe (GatewayKey.is_due_for_probe, in SQL)."""
        due = models.Q(last_probe_at__isnull=True)
        for gateway_id, minutes in Gateway.objects.values_list("id", "probe_interval_minutes"):
            due |= models.Q(gateway_id=gateway_id, last_probe_at__lte=probed_by_then(now, minutes))
        return self.filter(due)


# A probe's time is when the probe started (gateways.probes.runner), a moment after its run began (the
# command's start-up, the keys before it in the run); the timer's next run, one interval later, then starts
# a moment short of a full interval after that stamp. Without slack that run finds the key not yet due, and
# a key is probed every interval plus one timer period (5 minutes on the README's timer: 10 instead of 5,
# 65 instead of 60). The slack is at most a minute, and at most half the interval, so a key is never probed
# twice within half its interval.
PROBE_DUE_SLACK = timedelta(minutes=1)


def probed_by_then(now: datetime, interval_minutes: int) -> datetime:
    """The latest last-probe time at which a key of this interval is due at `now`: the one rule of "due"."""
    interval = timedelta(minutes=interval_minutes)
    return now - interval + min(PROBE_DUE_SLACK, interval / 2)


class KeyState(models.TextChoices):
    ACTIVE = "active", "Active"
    DISABLED = "disabled", "Disabled"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"


class GatewayKey(models.Model):
    """A team's secret for one gateway. Write-only: the plaintext leaves only in its assignee's config."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, models.CASCADE, related_name="keys")
    gateway = models.ForeignKey(Gateway, models.PROTECT, related_name="keys")
    label = models.CharField(max_length=100)
    secret_ciphertext = models.TextField(blank=True, editable=False)
    secret_key_id = models.CharField(max_length=8, blank=True, db_index=True, editable=False)
    masked = models.CharField(max_length=20, editable=False)
    fingerprint = models.CharField(max_length=64, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    is_enabled = models.BooleanField(default=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Overrides of the gateway's defaults; blank or null means "use the gateway's".
    model = models.CharField(max_length=100, blank=True)
    opus_model = models.CharField(max_length=100, blank=True)
    sonnet_model = models.CharField(max_length=100, blank=True)
    haiku_model = models.CharField(max_length=100, blank=True)
    custom_model_option = models.CharField(max_length=100, blank=True)
    custom_model_option_name = models.CharField(max_length=100, blank=True)
    timeout_ms = models.PositiveIntegerField(null=True, blank=True)
    disable_experimental_betas = models.BooleanField(null=True, blank=True)
    custom_headers = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    # When what a download sets last changed: the secret (a rotation), the key's overrides, or its gateway's
    # INSTALLED_GATEWAY_FIELDS. A download or a probe before this used the old ones. A label, an expiry or a
    # gateway's name, notes or probe settings leave it: no file sets them (a comment names the label).
    config_changed_at = models.DateTimeField(default=timezone.now)
    # When what a live device's settings.json holds last changed (INSTALLED_GATEWAY_FIELDS, KEY_OVERRIDE_FIELDS):
    # a device installed before this must run its installer again. A rotation leaves it: the helper fetches the key.
    settings_changed_at = models.DateTimeField(default=timezone.now, editable=False)
    expiry_recorded_at = models.DateTimeField(null=True, blank=True, editable=False)  # key.expired is in the trail
    last_probe_verdict = models.CharField(max_length=20, blank=True)
    last_probe_at = models.DateTimeField(null=True, blank=True)
    # When the secret was last replaced: a holder who downloaded before then still has the old one.
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    # A scheduled probe run's hold on the key (portal.claims): two servers never probe it twice.
    probe_claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    probe_claim = models.UUIDField(null=True, blank=True, editable=False)

    objects = GatewayKeyQuerySet.as_manager()
    vault_sealed = True  # rotate_encryption_key re-encrypts secret_ciphertext

    class Meta:
        ordering = ["team", ReadingOrder("label").asc(), "label"]  # teams, then labels, as people read them
        constraints = [
            models.UniqueConstraint(fields=["team", "fingerprint"], name="unique_secret_per_team"),
            # A revoked key gives its label up, so its replacement can carry the same name.
            models.UniqueConstraint(
                fields=["team", "label"], condition=models.Q(revoked_at__isnull=True), name="unique_label_per_team"
            ),
        ]
        indexes = [
            models.Index(fields=["gateway", "team"], name="key_gateway_team"),
            # The connections list filters and sorts by these (failing probe, expired key).
            models.Index(fields=["last_probe_verdict"], name="key_last_verdict"),
            models.Index(fields=["expires_at"], name="key_expires"),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.masked})"

    def clean(self) -> None:
        if self.gateway_id is None:
            return  # the admin never adds keys; a form without a gateway has nothing to style against
        style = self.gateway.model_id_style
        names = (*rules.KEY_MODEL_FIELDS, *rules.KEY_RULES)
        apply_rules(self, names, lambda fields: rules.clean_key_overrides(fields, style=style))

    @property
    def vault_label(self) -> str:
        return f"Key {self.pk} ({rules.one_line(self.label)})"  # printed by rotate_encryption_key

    @property
    def short_fingerprint(self) -> str:
        return self.fingerprint[:12]

    @property
    def associated_data(self) -> str:
        return f"gateways.GatewayKey:{self.id}"

    def set_secret(self, secret: crypto.Secret | str) -> None:
        """Encrypt a cleaned secret into this row (see gateways.rules.clean_secret)."""
        self.secret_ciphertext, self.secret_key_id = crypto.get_keyring().encrypt(
            crypto.reveal(secret), associated_data=self.associated_data
        )
        self.masked = mask(crypto.reveal(secret))
        self.fingerprint = fingerprint(crypto.reveal(secret))

    def reveal_secret(self) -> crypto.Secret:
        """The plaintext, wrapped, for building its assignee's config or a probe. Never log or store it."""
        if not self.secret_ciphertext:
            raise crypto.DecryptionError("This key was revoked and its secret destroyed.")
        return crypto.Secret(crypto.get_keyring().decrypt(self.secret_ciphertext, associated_data=self.associated_data))

    @property
    def state(self) -> str:
        if self.revoked_at:
            return KeyState.REVOKED
        if not self.is_enabled:
            return KeyState.DISABLED
        if self.expires_at and self.expires_at <= timezone.now():
            return KeyState.EXPIRED
        return KeyState.ACTIVE

    @property
    def is_usable(self) -> bool:
        return self.state == KeyState.ACTIVE

    def expires_within(self, window: timedelta) -> bool:
        """Usable now, and expiring before `window` has passed."""
        return self.is_usable and self.expires_at is not None and self.expires_at <= timezone.now() + window

    def is_due_for_probe(self, now) -> bool:
        """Whether the gateway's probe interval has passed since this key's last probe.

        The Python twin of GatewayKeyQuerySet.due_for_probe, which the probe command uses; tests hold the two
        to one answer."""
        if self.last_probe_at is None:
            return True
        return self.last_probe_at <= probed_by_then(now, self.gateway.probe_interval_minutes)

    def setting(self, name: str):
        """The key's own value of an override (KEY_OVERRIDES), else its gateway's default."""
        value = getattr(self, name)
        if value is None or value == "":
            return getattr(self.gateway, KEY_OVERRIDES[name])
        return value

    @property
    def current_probe_verdict(self) -> str:
        """The latest probe's verdict, or '' when the secret or settings changed after it: it tested something else."""
        if self.last_probe_at is None or self.last_probe_at < self.config_changed_at:
            return ""
        return self.last_probe_verdict

    @property
    def is_failing(self) -> bool:
        """Usable and failing its latest probe, which still counts: a rotation or settings change since starts over.

        A disabled, expired or revoked key is not failing: its state says more, and the portal does not probe it.
        """
        return self.is_usable and self.current_probe_verdict not in ("", "ok")

    @property
    def is_refused_by_gateway(self) -> bool:
        """Usable here, but its latest probe, which still counts, found the gateway refusing the key itself."""
        return self.is_usable and self.current_probe_verdict in KEY_REFUSED_VERDICTS

    def refused_since(self) -> datetime | None:
        """When the gateway began refusing it (the SQL rule refused_since), or None while it is not refused."""
        if not self.is_refused_by_gateway:
            return None
        since = GatewayKey.objects.filter(pk=self.pk).annotate(since=refused_since()).values_list("since", flat=True)
        return since.first() or self.last_probe_at

    @property
    def betas_disabled(self) -> bool:
        return bool(self.setting("disable_experimental_betas"))


class AssignmentQuerySet(models.QuerySet):
    def visible_to(self, user) -> AssignmentQuerySet:
        """Admins and auditors see their teams' assignments; everyone sees their own."""
        if not user.is_authenticated:
            return self.none()
        if user.is_staff:
            return self
        # Both sides of the OR on this table's own columns, so each can use its index (key_id, user_id)
        # instead of every assignment being joined to its key first.
        overseen_keys = GatewayKey.objects.filter(team__in=Team.objects.overseen_by(user).values("pk")).values("pk")
        return self.filter(models.Q(key__in=overseen_keys) | models.Q(user=user))

    def holding_present_secret(self) -> AssignmentQuerySet:
        """Holders who downloaded (or were shown) their key's present secret: Assignment.holds_present_secret."""
        return self.filter(downloaded_present_secret())


def downloaded_present_secret() -> models.Q:
    """Assignment.holds_present_secret in SQL: the secret the last download carried is the key's.

    A row from before downloads recorded their secret falls back to the times: downloaded since the last rotation.
    """
    recorded = models.Q(last_download_fingerprint=models.F("key__fingerprint")) & ~models.Q(
        last_download_fingerprint=""
    )
    unrecorded = models.Q(last_download_fingerprint="") & (
        models.Q(key__rotated_at__isnull=True) | models.Q(last_download_at__gte=models.F("key__rotated_at"))
    )
    return models.Q(last_download_at__isnull=False) & (recorded | unrecorded)


def downloaded_earlier_secret() -> models.Q:
    """Assignment.rotated_since_download in SQL: the last download carried a secret the key no longer has."""
    recorded = ~models.Q(last_download_fingerprint="") & ~models.Q(
        last_download_fingerprint=models.F("key__fingerprint")
    )
    unrecorded = models.Q(last_download_fingerprint="", last_download_at__lt=models.F("key__rotated_at"))
    return models.Q(last_download_at__isnull=False) & (recorded | unrecorded)


def downloaded_before_a_change() -> models.Q:
    """Assignment.changed_since_download in SQL: what the last download set changed since, its secret or its
    settings (a rotation undone, back to the secret it carried, changed neither). A row from before downloads
    recorded their secret falls back to the times: downloaded before the key's last change of either."""
    settings_since = models.Q(last_download_at__lt=models.F("key__settings_changed_at"))
    unrecorded = models.Q(last_download_fingerprint="", last_download_at__lt=models.F("key__config_changed_at"))
    return downloaded_earlier_secret() | settings_since | unrecorded


def replacements(*, user, team, gateway, key, same_gateway: bool) -> AssignmentQuerySet:
    """The holder's other usable keys of the same team that the gateway does not refuse, on the revoked key's gateway
    or on others, newest assignment
    first, assigned before or after the revocation. The holder's notice names the first instead of asking for a new
    key: one on the same gateway (a rollover), else one on another gateway (maybe a move: the notice says so).

    The arguments are values, or OuterRefs (replacement_columns)."""
    others = (
        Assignment.objects.filter(usable_key("key__"), user=user, key__team=team)
        .exclude(key=key)
        # Nor one the gateway refuses (its own card says so): the holder would set it up to be refused again.
        .exclude(probe_counts("key__"), key__last_probe_verdict__in=KEY_REFUSED_VERDICTS)
    )
    on_gateway = others.filter(key__gateway=gateway) if same_gateway else others.exclude(key__gateway=gateway)
    return on_gateway.order_by("-created_at", "-pk")


class Replacement(NamedTuple):
    """A usable key the holder of a revoked one also has: its label, and its gateway's name when it is another's."""

    label: str
    elsewhere: str | None


def replacement_for(*, user_id: int, key: GatewayKey) -> Replacement | None:
    """The usable key `user_id` holds in place of their revoked `key`, if any (replacements): one query or two."""
    if key.revoked_at is None:
        return None
    where = {"user": user_id, "team": key.team_id, "gateway": key.gateway_id, "key": key.pk}
    label = replacements(**where, same_gateway=True).values_list("key__label", flat=True).first()
    if label is not None:
        return Replacement(label, None)
    found = replacements(**where, same_gateway=False).values_list("key__label", "key__gateway__name").first()
    return Replacement(*found) if found else None


def replacement_columns() -> dict[str, models.Case]:
    """Assignment.replaced_by as columns of an assignment (key_replaced_by, key_replaced_elsewhere), so a list
    asks once for all its rows. Only a revoked key's row looks for one."""
    # Two subqueries rather than one ordered by "same gateway first": SQLite cannot read the outer row in a
    # subquery's ORDER BY.
    found = {
        same: replacements(
            user=models.OuterRef("user"),
            team=models.OuterRef("key__team"),
            gateway=models.OuterRef("key__gateway"),
            key=models.OuterRef("key"),
            same_gateway=same,
        )
        for same in (True, False)
    }

    def first(same: bool, column: str) -> models.Subquery:
        return models.Subquery(found[same].values(column)[:1], output_field=models.CharField())

    def if_revoked(value: models.Expression) -> models.Case:
        return models.Case(models.When(key__revoked_at__isnull=False, then=value), default=models.Value(None))

    return {
        "key_replaced_by": if_revoked(Coalesce(first(True, "key__label"), first(False, "key__label"))),
        "key_replaced_elsewhere": if_revoked(
            models.Case(
                models.When(models.Exists(found[True]), then=models.Value(None)),
                default=first(False, "key__gateway__name"),
                output_field=models.CharField(),
            )
        ),
    }


class Assignment(models.Model):
    """A key given to a developer: one configuration they can download."""

    key = models.ForeignKey(GatewayKey, models.CASCADE, related_name="assignments")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="assignments")
    assigned_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    last_download_at = models.DateTimeField(null=True, blank=True)
    last_download_format = models.CharField(max_length=20, blank=True)
    last_download_ip = models.GenericIPAddressField(null=True, blank=True)
    download_count = models.PositiveIntegerField(default=0)
    # The fingerprint of the secret the last download carried (blank on rows from before it was recorded): a
    # rotation undone, back to the secret the holder has, leaves their copy the present one.
    last_download_fingerprint = models.CharField(max_length=64, blank=True, editable=False)

    objects = AssignmentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["key", "user"], name="unique_assignment")]
        indexes = [
            models.Index(fields=["user", "key"], name="assignment_user_key"),
            # The connections list sorts by these (ties by id), newest or oldest first.
            models.Index(fields=["created_at", "id"], name="assignment_assigned"),
            models.Index(fields=["last_download_at", "id"], name="assignment_last_download"),
        ]

    def __str__(self) -> str:
        return f"{self.key.label} → {self.user}"

    @property
    def is_self_assigned(self) -> bool:
        """An admin gave the key to themselves: the one way an admin can read a key back."""
        return self.assigned_by_id is not None and self.assigned_by_id == self.user_id

    @property
    def rotated_since_download(self) -> bool:
        """The secret changed after this holder's last download: the copy they have holds the old one."""
        if not self.last_download_at:
            return False
        if self.last_download_fingerprint:  # a rotation back to the secret they downloaded changed nothing for them
            return self.last_download_fingerprint != self.key.fingerprint
        rotated = self.key.rotated_at
        return bool(rotated and self.last_download_at < rotated)

    @property
    def holds_present_secret(self) -> bool:
        """The holder downloaded (or was shown) the key's present secret: a copy of an earlier one was the last
        rotation's to drop at the gateway. As downloaded_present_secret() says it in SQL."""
        return bool(self.last_download_at) and not self.rotated_since_download

    @property
    def changed_since_download(self) -> bool:
        """What a download sets changed after this holder's last download: the copy they have holds the old one.
        As downloaded_before_a_change() says it in SQL."""
        if not self.last_download_at:
            return False
        return self.last_download_at < self.changed_at

    @property
    def changed_at(self) -> datetime:
        """When what this holder's download sets last changed: the key's secret or settings (config_changed_at), or
        only its settings when the download carried the present secret (a rotation undone is no change for it)."""
        if self.last_download_fingerprint and not self.rotated_since_download:
            return self.key.settings_changed_at
        return self.key.config_changed_at

    @property
    def has_device_to_reinstall(self) -> bool:
        """A live device of the holder on this assignment holds older settings (Device.needs_reinstall).

        my_assignments annotates it (live_device_to_reinstall), so a list asks once for all its rows.
        """
        annotated = getattr(self, "live_device_to_reinstall", None)
        if annotated is not None:
            return bool(annotated)
        return self.devices.live().needing_reinstall().exists()

    def key_refused_since(self) -> datetime | None:
        """GatewayKey.refused_since, from my_assignments' annotation (key_refused_at) where it has one."""
        if not hasattr(self, "key_refused_at"):
            return self.key.refused_since()
        return self.key_refused_at or (self.key.last_probe_at if self.key.is_refused_by_gateway else None)

    def replaced_by(self) -> Replacement | None:
        """The usable key the holder has in place of this revoked one (replacement_for), if any.

        my_assignments annotates it (replacement_columns), so a list asks once for all its rows.
        """
        if hasattr(self, "key_replaced_by"):
            label = self.key_replaced_by
            return Replacement(label, getattr(self, "key_replaced_elsewhere", None)) if label is not None else None
        return replacement_for(user_id=self.user_id, key=self.key)

    def notice(self, *, soon: timedelta) -> tuple[str, str] | None:
        """What the holder must know about this key, as (kind, sentence): the first of HOLDER_NOTICES that applies."""
        key = self.key
        if key.state == KeyState.REVOKED:
            return key.state, revoked_notice(key, self.replaced_by())
        if key.state in (KeyState.DISABLED, KeyState.EXPIRED):
            return key.state, HOLDER_NOTICES[key.state].format(key=key)
        # Before rotated and changed: while the gateway refuses the key, a new download cannot help.
        if since := self.key_refused_since():
            return "failing", HOLDER_NOTICES["failing"].format(key=key, when=written_time(since))
        if key.rotated_at and self.rotated_since_download:
            return "rotated", HOLDER_NOTICES["rotated"].format(key=key, when=written_time(key.rotated_at))
        if self.changed_since_download:
            return "changed", HOLDER_NOTICES["changed"].format(key=key, when=written_time(self.changed_at))
        if self.has_device_to_reinstall:
            when = written_time(key.settings_changed_at)
            return "changed", HOLDER_NOTICES["changed_on_device"].format(key=key, when=when)
        if key.expires_at and key.expires_within(soon):
            return "expiring", HOLDER_NOTICES["expiring"].format(key=key, when=written_time(key.expires_at))
        return None


# What a developer is told on My set-up about a key they hold, by what happened to it.
HOLDER_NOTICES = {
    KeyState.REVOKED: "The key {key.label} was revoked: it no longer works. Ask your team admin for a new one.",
    KeyState.DISABLED: "The key {key.label} is disabled by your team admin: it does not work for now.",
    KeyState.EXPIRED: "The key {key.label} has expired: it no longer works. Ask your team admin to renew it.",
    "failing": "Since {when}, the gateway refuses the key {key.label}: the portal's checks find it refused there "
    "(disabled, expired or out of balance at the gateway, for instance), so Claude Code cannot use it. This is not "
    "your set-up: downloading again or /logout will not help. Your team admin's dashboard lists the key; ask them to "
    "have it fixed at the gateway.",
    "rotated": "The key {key.label} was rotated on {when}, after your last download: "
    "the set-up you have holds the old secret. Download it again.",
    "changed": "The settings of the key {key.label} or of its gateway changed on {when}, after your last download: "
    "the set-up you have still holds the old ones. Download it again, and on a device that fetches the key live, "
    "run the install command again.",
    # The same kind for a holder whose live device is behind, whether or not they ever downloaded.
    "changed_on_device": "The settings of the key {key.label} or of its gateway changed on {when}, after a device "
    "of yours that fetches the key live was installed: its settings.json still holds the old ones. Run the install "
    "command again on that device (make one with Install on a new device below); My devices marks which device.",
    "expiring": "The key {key.label} expires on {when}. Ask your team admin to renew it in time.",
}


# What a revoked key's holder is told to do when they hold another usable key of the team (replacement_for): after
# My set-up's "The key X was revoked: it no longer works." and the revoked card's "This key was revoked, so ...".
REPLACEMENT_ADVICE = {
    # A key of the same team and gateway, assigned before or after the revocation.
    "same_gateway": "Your team admin has given you the key {replacement.label} for the same gateway: use that one.",
    # A key of the same team for another gateway: maybe a move, maybe not.
    "elsewhere": "You also hold the key {replacement.label} of the same team, for another gateway "
    "({replacement.elsewhere}), which needs a set-up of its own: if it takes this one's place, set that one up; if "
    "not, ask your team admin for a new key.",
}


def replacement_advice(replacement: Replacement) -> str:
    """What the holder of a revoked key should do with the key they hold in its place (REPLACEMENT_ADVICE)."""
    kind = "same_gateway" if replacement.elsewhere is None else "elsewhere"
    return REPLACEMENT_ADVICE[kind].format(replacement=replacement)


def revoked_notice(key: GatewayKey, replacement: Replacement | None) -> str:
    """What My set-up tells the holder of the revoked `key`, and the mail telling them of the revocation."""
    if replacement is None:
        return HOLDER_NOTICES[KeyState.REVOKED].format(key=key)
    return f"The key {key.label} was revoked: it no longer works. {replacement_advice(replacement)}"


# An install link lives this long and works once.
DEVICE_INSTALL_MINUTES = 15
# A key fetch writes the device's "last seen" at most this often; fetches in between write nothing.
LAST_SEEN_EVERY_SECONDS = 60


# Device.state's values, as the API's schema describes them.
DEVICE_STATES = {
    "waiting": "made, its install link not used yet",
    "expired": "its install link expired unused",
    "never_fetched": "its install link was used, but it never fetched its key (its installer stopped on the machine, "
    "or cannot reach the portal)",
    "live": "fetches its key",
    "refused": "its fetches are refused while the key is disabled, expired or revoked (key_state) or its owner is "
    "deactivated",
    "unassigned": "the key is no longer assigned to its owner",
    "removed": "removed; its fetches are refused",
}


class DeviceQuerySet(models.QuerySet):
    def visible_to(self, user) -> DeviceQuerySet:
        """Everyone sees their own devices; admins and auditors also their teams' (staff: all)."""
        if not user.is_authenticated:
            return self.none()
        if user.is_staff:
            return self
        overseen = Team.objects.overseen_by(user).values("pk")
        return self.filter(models.Q(key__team__in=overseen) | models.Q(user=user))

    def can_fetch(self) -> DeviceQuerySet:
        """Installed, not removed, still holding its assignment, of a usable key: the devices whose token a fetch
        would answer with the key, whether or not they have fetched it yet.

        A device of a disabled, expired or revoked key, or of a deactivated account, has every fetch refused
        (gateways.devices.refusal_reason). The key page lists these, so an admin sees (and can remove) a device
        whose installer stopped on the machine: its token works, though it never fetched.
        """
        return self.filter(
            usable_key("key__"),
            installed_at__isnull=False,
            revoked_at__isnull=True,
            assignment__isnull=False,
            user__is_active=True,
        )

    def listed(self) -> DeviceQuerySet:
        """Every device but an install link replaced before its use: that one was never on a machine (its audit row
        stays), and the newer link of the same name is the device the lists show."""
        return self.exclude(removed_reason=DeviceRemoval.REPLACED)

    def live(self) -> DeviceQuerySet:
        """The devices that fetch the key: those that can, and have (the SQL form of Device.state's "live").

        One that never fetched the key (its installer stopped on the machine) holds no secret, old or new, so a
        rollout waits for nothing from it, and its first fetch will bring the present one.
        """
        return self.can_fetch().filter(last_seen_at__isnull=False)

    def needing_reinstall(self) -> DeviceQuerySet:
        """Installed before the key's settings or its gateway's last changed: the SQL form of Device.needs_reinstall."""
        return self.filter(installed_at__lt=models.F("key__settings_changed_at"))

    def current(self) -> DeviceQuerySet:
        """Holding the key's present secret, installed since its settings last changed: nothing left to do."""
        return self.filter(
            installed_at__gte=models.F("key__settings_changed_at"), fetched_fingerprint=models.F("key__fingerprint")
        )


class DeviceRemoval(models.TextChoices):
    """Why the portal, not a person, removed a device (Device.removed_reason); the audit row says it in words."""

    REPLACED = "replaced", "replaced by a new install link of the same name before it was used"


class Device(models.Model):
    """One machine of one developer holding one assignment live: it fetches the key when Claude Code asks.

    It has two credentials, each stored as a SHA-256 digest and found by a short id, like access
    tokens: the one-time install code (15 minutes) and the device token the install mints
    (portal.models.TokenScope.KEY_FETCH). Neither plaintext is kept.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="devices")
    key = models.ForeignKey(GatewayKey, models.CASCADE, related_name="devices")
    # Null once the assignment is removed: the device stays listed, and its fetches are refused with a sentence.
    assignment = models.ForeignKey(Assignment, models.SET_NULL, null=True, blank=True, related_name="devices")
    name = models.CharField(max_length=100)
    platform = models.CharField(max_length=10, choices=Platform.choices)
    created_at = models.DateTimeField(default=timezone.now)
    install_lookup_id = models.CharField(max_length=16, unique=True, editable=False)
    install_digest = models.CharField(max_length=64, editable=False)
    install_expires_at = models.DateTimeField()
    installed_at = models.DateTimeField(null=True, blank=True)
    token_lookup_id = models.CharField(max_length=16, unique=True, null=True, blank=True, editable=False)
    token_digest = models.CharField(max_length=64, blank=True, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_seen_ip = models.GenericIPAddressField(null=True, blank=True)
    claude_version = models.CharField(max_length=20, blank=True)
    # The fingerprint of the secret it last received: equal to the key's once it fetched since the last rotation.
    fetched_fingerprint = models.CharField(max_length=64, blank=True, editable=False)
    # The day of its last key.fetched audit row, and of its last refusal row (with the reason): one a day at most.
    fetch_audited_on = models.DateField(null=True, blank=True, editable=False)
    refusal_audited_on = models.DateField(null=True, blank=True, editable=False)
    refusal_reason = models.CharField(max_length=20, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+")
    revoked_by_username = models.CharField(max_length=150, blank=True)  # kept when that user is deleted
    # Blank when a person removed it. "replaced": its link, never used, gave way to a newer one of the same name and
    # system (gateways.devices.create_device); revoked_at refuses it as any removal, revoked_by is who asked for the
    # newer link, and no device list shows it, since it was never on a machine.
    removed_reason = models.CharField(max_length=20, choices=DeviceRemoval.choices, blank=True, editable=False)

    objects = DeviceQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="device_user_recent"),
            models.Index(fields=["key", "-created_at"], name="device_key_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"

    @property
    def is_live(self) -> bool:
        return self.state == "live"

    @property
    def needs_reinstall(self) -> bool:
        """Installed before the key's settings or its gateway's last changed: its settings.json holds the old ones.

        The helper fetches only the key, so a new base URL, auth scheme, model id or variable reaches the device
        when its install command runs again (GatewayKey.settings_changed_at). A rotation reaches it at the next
        fetch, and does not hide a change made before it. DeviceQuerySet.needing_reinstall() is the same rule in SQL.
        """
        return bool(self.installed_at and self.installed_at < self.key.settings_changed_at)

    @property
    def has_current_secret(self) -> bool:
        """Whether its last fetch carried the key's present secret (so it fetched since the last rotation)."""
        return bool(self.fetched_fingerprint) and self.fetched_fingerprint == self.key.fingerprint

    @property
    def state(self) -> str:
        """One of DEVICE_STATES: waiting, expired, never_fetched, live, refused, unassigned or removed."""
        if self.revoked_at:
            return "removed"
        if not self.assignment_id:
            return "unassigned"
        if self.installed_at:
            # Its fetches are refused while the key is disabled, expired or revoked (key_state says which), or
            # while its owner's account is deactivated; DeviceQuerySet.live() is the same rule in SQL.
            if self.key.state != KeyState.ACTIVE or not self.user.is_active:
                return "refused"
            # The link was used when the installer was served: one that stopped on the machine never fetches.
            return "live" if self.last_seen_at else "never_fetched"
        return "expired" if self.install_expires_at <= timezone.now() else "waiting"


class Verdict(models.TextChoices):
    OK = "ok", "OK"
    AUTH_FAILED = "auth_failed", "Authentication failed"
    FORBIDDEN = "forbidden", "Forbidden"
    CLIENT_RESTRICTED = "client_restricted", "Key locked to Claude Code"
    MODEL_NOT_FOUND = "model_not_found", "Model not found"
    WRONG_BASE_URL = "wrong_base_url", "Wrong base URL"
    BETAS_REJECTED = "betas_rejected", "Experimental betas rejected"
    BAD_REQUEST = "bad_request", "Bad request"
    RATE_LIMITED = "rate_limited", "Rate limited"
    GATEWAY_ERROR = "gateway_error", "Gateway error"
    TIMEOUT = "timeout", "Timed out"
    UNREACHABLE = "unreachable", "Unreachable"
    TLS_ERROR = "tls_error", "TLS error"
    BAD_RESPONSE = "bad_response", "Bad response"
    REFUSED = "refused", "Refused by the portal"


# The verdicts that mean the gateway refuses the key itself (401, 403 or a spent balance): the one case where the
# holder's set-up is not the cause and My set-up says so (Assignment.notice's "failing"). Not client_restricted
# (the key works in Claude Code), nor a verdict about the gateway, the address, the model or the request.
KEY_REFUSED_VERDICTS = (Verdict.AUTH_FAILED, Verdict.FORBIDDEN)


class ProbeResultQuerySet(models.QuerySet):
    def visible_to(self, user) -> ProbeResultQuerySet:
        return self.filter(key__in=GatewayKey.objects.visible_to(user).values("pk"))


class ProbeResult(models.Model):
    """One validation run of one key against its gateway."""

    key = models.ForeignKey(GatewayKey, models.CASCADE, related_name="probes")
    gateway = models.ForeignKey(Gateway, models.CASCADE, related_name="probes")
    verdict = models.CharField(max_length=20, choices=Verdict.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    ttfb_ms = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    model = models.CharField(max_length=100, blank=True)
    hint = models.TextField(blank=True)
    warning = models.TextField(blank=True)
    error_excerpt = models.CharField(max_length=500, blank=True)
    kind = models.CharField(max_length=12, choices=ProbeMode.choices, default=ProbeMode.INFERENCE)
    trigger = models.CharField(max_length=20, default="manual")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = ProbeResultQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["key", "-created_at"], name="probe_key_recent")]

    def __str__(self) -> str:
        return f"{self.key.label}: {self.verdict}"
