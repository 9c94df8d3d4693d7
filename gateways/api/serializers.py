"""Input and output serializers, kept apart so an output can never echo the write-only secret."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from gateways import rules
from gateways.config.formats import FORMATS
from gateways.models import (
    DEVICE_STATES,
    GATEWAY_FIELDS,
    KEY_OVERRIDE_FIELDS,
    KEY_SETTING_FIELDS,
    Assignment,
    Device,
    Gateway,
    GatewayKey,
    Platform,
    ProbeResult,
)
from gateways.rules import (
    EXTRA_ENV_HELP,
    PROBE_INTERVAL_MAX,
    PROBE_INTERVAL_MIN,
    PROBE_INTERVAL_RULE,
    TIMEOUT_MS_MAX,
    TIMEOUT_MS_MIN,
    TIMEOUT_MS_RULE,
)
from portal.api.serializers import InputSerializer, LowercaseSlugField

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from portal.models import Team

GATEWAY_OUTPUT_FIELDS = [
    "slug",
    *GATEWAY_FIELDS,
    "empties_api_key",
    "credential_variable",
    "is_preset",
    "created_at",
    "updated_at",
]


DOCS_URL_HELP = 'The gateway\'s documentation, an absolute URL; "" when it has none.'


class GatewayOutputSerializer(serializers.ModelSerializer):
    # "" for a gateway without a docs link, as other tools read it: the schema says so (a URI, or empty).
    docs_url = serializers.URLField(read_only=True, allow_blank=True, help_text=DOCS_URL_HELP)
    empties_api_key = serializers.BooleanField(read_only=True)
    credential_variable = serializers.CharField(read_only=True)

    class Meta:
        model = Gateway
        fields = GATEWAY_OUTPUT_FIELDS
        read_only_fields = fields


class GatewayWrittenSerializer(GatewayOutputSerializer):
    """A gateway as creating or editing it answers: with what the portal changed in what was sent, and why."""

    notices = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text='What the portal changed in the values sent, e.g. "Removed the trailing /v1 ...".',
    )

    class Meta(GatewayOutputSerializer.Meta):
        fields = [*GATEWAY_OUTPUT_FIELDS, "notices"]
        read_only_fields = fields


# JSON fields as the API takes them: typed, so the schema says what goes in.
ENV_OBJECT = serializers.DictField(
    child=serializers.CharField(allow_blank=True), required=False, help_text=EXTRA_ENV_HELP
)
TROUBLESHOOTING = serializers.ListField(
    child=serializers.ListField(child=serializers.CharField(), min_length=2, max_length=2), required=False
)


# A number past the rule's range is refused with the rule's sentence, not the column's limit.
TIMEOUT_MS_FIELD = {
    "min_value": TIMEOUT_MS_MIN,
    "max_value": TIMEOUT_MS_MAX,
    "error_messages": {"min_value": TIMEOUT_MS_RULE, "max_value": TIMEOUT_MS_RULE},
}
# The same for the probe interval: past the column, PostgreSQL's integer and SQLite's would each quote their own limit.
PROBE_INTERVAL_FIELD = {
    "min_value": PROBE_INTERVAL_MIN,
    "max_value": PROBE_INTERVAL_MAX,
    "error_messages": {"min_value": PROBE_INTERVAL_RULE, "max_value": PROBE_INTERVAL_RULE},
}
RANGED_FIELDS = {"timeout_ms": TIMEOUT_MS_FIELD, "probe_interval_minutes": PROBE_INTERVAL_FIELD}


# What a write's fields take besides being optional: the ranges above, and what the schema says a field is.
FIELD_KWARGS: dict[str, dict[str, object]] = {
    **RANGED_FIELDS,
    "docs_url": {"help_text": f'{DOCS_URL_HELP} Send "" to clear it.'},
}


def optional(fields) -> dict:
    """Every field may be left out: a POST names what it sets, a PATCH what it changes."""
    return {name: {"required": False, **FIELD_KWARGS.get(name, {})} for name in fields}


class GatewayInputSerializer(InputSerializer, serializers.ModelSerializer):
    """Fields a staff member may set; the catalogue rules (gateways.rules) run in the service."""

    shown_by = (GatewayWrittenSerializer,)

    # The service answers a taken or upper-case slug with a sentence; a PATCH repeats the gateway's own slug.
    slug = LowercaseSlugField(max_length=50, required=False)
    extra_env = ENV_OBJECT
    troubleshooting = TROUBLESHOOTING

    class Meta:
        model = Gateway
        fields = ("slug", *GATEWAY_FIELDS)
        extra_kwargs = optional(GATEWAY_FIELDS)


# What a new gateway must name; the view refuses each one missing with a sentence that names it.
GATEWAY_REQUIRED_ON_CREATE = ("slug", "name", "base_url")


@extend_schema_serializer(component_name="GatewayInput")  # the name POST's body had before it said what is required
class GatewayCreateSerializer(GatewayInputSerializer):
    """POST's request schema: GatewayInputSerializer, with what a new gateway must name required."""

    slug = LowercaseSlugField(max_length=50)

    class Meta(GatewayInputSerializer.Meta):
        extra_kwargs = {**optional(GATEWAY_FIELDS), **{n: {"required": True} for n in GATEWAY_REQUIRED_ON_CREATE[1:]}}


class KeyOutputSerializer(serializers.ModelSerializer):
    team: serializers.SlugRelatedField[Team] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    gateway: serializers.SlugRelatedField[Gateway] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    fingerprint = serializers.CharField(source="short_fingerprint", read_only=True)
    state = serializers.CharField(read_only=True)

    class Meta:
        model = GatewayKey
        fields = [
            "id",
            "team",
            "gateway",
            "label",
            "masked",
            "fingerprint",
            "state",
            "is_enabled",
            "expires_at",
            "revoked_at",
            *KEY_OVERRIDE_FIELDS,
            "created_at",
            "config_changed_at",
            "last_probe_verdict",
            "last_probe_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "last_probe_verdict": {
                "help_text": "The verdict of the key's last probe, as it was saved. It no longer counts when "
                "config_changed_at is later than last_probe_at (the probe tested an old secret or settings): "
                "the pages and the connections report then show no verdict, and the key is not failing."
            }
        }


class ExpiryField(serializers.DateTimeField):
    """An expiry: with a UTC offset always taken; without one, read in TIME_ZONE unless the clocks show that
    time twice or never there (rules.expiry_from_wall_time says which instants, and to send the offset)."""

    def enforce_timezone(self, value):
        if timezone.is_naive(value):
            try:
                value = rules.expiry_from_wall_time(value, timezone.get_current_timezone(), offset_possible=True)
            except rules.RuleError as exc:
                raise serializers.ValidationError(str(exc), code="ambiguous_timezone") from None
        return super().enforce_timezone(value)


# What a JSON value that is not a string is, as a refusal names it (never the value: a header may hold a credential).
JSON_KINDS = ((bool, "true or false"), ((int, float), "a number"), (list, "a list"), (dict, "an object"))


class HeaderValueField(serializers.CharField):
    """A custom header's value: a JSON string only. DRF's CharField takes a number as its digits, so
    {"X-Team": 5} was stored as the header value "5", where the schema says a value is a string."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            what = next((name for kind, name in JSON_KINDS if isinstance(data, kind)), "another value")
            raise serializers.ValidationError(
                f"A header's value must be text, in quotes; {what} is not.", code="invalid"
            )
        return super().to_internal_value(data)


class KeySettingsSerializer(InputSerializer, serializers.ModelSerializer):
    """What a key's writes take; what its answers show may be sent back and is ignored."""

    shown_by = (KeyOutputSerializer,)
    fixed = {
        "id": "",
        "team": "A key stays in its team: add the key to the other team instead.",
        "gateway": "A key stays on its gateway: add a key on the other gateway instead.",
        "revoked_at": "Revoke a key with DELETE /api/v1/keys/{id}/.",
    }

    custom_headers = serializers.DictField(child=HeaderValueField(allow_blank=True), required=False)
    expires_at = ExpiryField(
        required=False,
        allow_null=True,
        help_text="ISO 8601 with its UTC offset; one without is read in TIME_ZONE. With a new secret (PATCH), the "
        "new secret's expiry, recorded with the rotation; absent keeps the expiry, null clears it.",
    )

    class Meta:
        model = GatewayKey
        fields = KEY_SETTING_FIELDS
        extra_kwargs = optional(fields)


class GatewaySlugField(serializers.SlugRelatedField):
    """A gateway named by its slug. A NUL character, which no slug holds, is refused before the query: PostgreSQL
    fails on one in a query (a 500) where SQLite finds nothing."""

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            raise serializers.ValidationError("No gateway's slug holds a NUL character (\\u0000): remove it.")
        return super().to_internal_value(data)


class KeyCreateSerializer(KeySettingsSerializer):
    gateway = GatewaySlugField(slug_field="slug", queryset=Gateway.objects.all())
    secret = serializers.CharField(write_only=True, trim_whitespace=False, max_length=4096)

    class Meta(KeySettingsSerializer.Meta):
        fields = ("gateway", *KEY_SETTING_FIELDS, "secret")
        extra_kwargs = {**optional(KEY_SETTING_FIELDS), "label": {"required": True}}


class KeyUpdateSerializer(KeySettingsSerializer):
    secret = serializers.CharField(write_only=True, required=False, trim_whitespace=False, max_length=4096)

    class Meta(KeySettingsSerializer.Meta):
        fields = (*KEY_SETTING_FIELDS, "secret", "is_enabled")
        extra_kwargs = optional((*KEY_SETTING_FIELDS, "is_enabled"))


class ProbeRequestSerializer(InputSerializer):
    """POST /keys/{id}/probes/ takes no body: its options are query parameters, and any field is refused."""

    shown_by = ()
    query_parameters = ("stream", "retry_betas")


class AssignmentOutputSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    key = serializers.UUIDField(source="key_id", read_only=True)
    self_assigned = serializers.BooleanField(source="is_self_assigned", read_only=True)

    class Meta:
        model = Assignment
        fields = [
            "id",
            "key",
            "username",
            "self_assigned",
            "created_at",
            "last_download_at",
            "last_download_format",
            "download_count",
        ]
        read_only_fields = fields


class AssignmentInputSerializer(InputSerializer):
    """Assign the key to a member of its team, by user name."""

    shown_by = (AssignmentOutputSerializer,)

    username = serializers.CharField(max_length=150)


class HolderNoticeSerializer(serializers.Serializer):
    """What My set-up tells the holder about the key (gateways.models.Assignment.notice)."""

    kind = serializers.ChoiceField(
        choices=["revoked", "disabled", "expired", "failing", "rotated", "changed", "expiring"],
        help_text="failing: the portal's probe finds the gateway refusing the key (not the holder's set-up). "
        "rotated or changed: the downloaded set-up, or a live device's settings, predates the change; download it "
        "again or run the install command again.",
    )
    sentence = serializers.CharField(help_text="The sentence My set-up shows.")


class ConfigOutputSerializer(serializers.ModelSerializer):
    """One of the caller's configurations: what it is and where to download it."""

    gateway: serializers.SlugRelatedField[Gateway] = serializers.SlugRelatedField(
        source="key.gateway", slug_field="slug", read_only=True
    )
    gateway_name = serializers.CharField(source="key.gateway.name", read_only=True)
    team: serializers.SlugRelatedField[Team] = serializers.SlugRelatedField(
        source="key.team", slug_field="slug", read_only=True
    )
    key_label = serializers.CharField(source="key.label", read_only=True)
    masked = serializers.CharField(source="key.masked", read_only=True)
    state = serializers.CharField(source="key.state", read_only=True)
    expires_at = serializers.DateTimeField(source="key.expires_at", read_only=True, allow_null=True)
    formats = serializers.SerializerMethodField()
    notice = serializers.SerializerMethodField()

    class Meta:
        model = Assignment
        fields = [
            "id",
            "gateway",
            "gateway_name",
            "team",
            "key_label",
            "masked",
            "state",
            "expires_at",
            "last_download_at",
            "formats",
            "notice",
        ]
        read_only_fields = fields

    @extend_schema_field(HolderNoticeSerializer(allow_null=True))
    def get_notice(self, assignment) -> dict | None:
        notice = assignment.notice(soon=timedelta(days=settings.EXPIRY_WARNING_DAYS))
        return {"kind": notice[0], "sentence": notice[1]} if notice else None

    def get_formats(self, assignment) -> dict[str, str]:
        request = self.context.get("request")
        urls = {}
        for name in FORMATS:
            url = reverse("api-config-download", args=[assignment.id, name])
            urls[name] = request.build_absolute_uri(url) if request else url
        return urls


class ProbeResultOutputSerializer(serializers.ModelSerializer):
    key = serializers.UUIDField(source="key_id", read_only=True)
    gateway: serializers.SlugRelatedField[Gateway] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    started_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = ProbeResult
        fields = [
            "id",
            "key",
            "gateway",
            "verdict",
            "status_code",
            "ttfb_ms",
            "latency_ms",
            "model",
            "hint",
            "warning",
            "error_excerpt",
            "kind",
            "trigger",
            "started_by",
            "details",
            "created_at",
        ]
        read_only_fields = fields


class ConnectionSerializer(serializers.Serializer):
    """One row of the connections report (gateways.connections.COLUMNS, in that order)."""

    assignment = serializers.IntegerField()
    user = serializers.CharField()
    team = serializers.CharField()
    gateway = serializers.CharField()
    key_id = serializers.CharField()
    key_label = serializers.CharField()
    masked = serializers.CharField()
    key_state = serializers.CharField()
    assigned_since = serializers.DateTimeField()
    last_download_at = serializers.DateTimeField(allow_null=True)
    last_download_format = serializers.CharField()
    last_download_ip = serializers.CharField(allow_null=True)
    download_stale = serializers.BooleanField()
    latest_verdict = serializers.CharField(
        help_text="The key's latest probe verdict while it still counts: empty when the key was never probed or "
        "its secret or settings changed since (as the failing filter and the key page count it)."
    )
    latest_probe_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    live_devices = serializers.IntegerField(help_text="Devices that fetch this key live (installed, not removed).")
    live_devices_current = serializers.IntegerField(
        help_text="Of those, the ones that fetched since the last rotation and were installed since the key's "
        "settings or its gateway's last changed."
    )
    last_live_fetch_at = serializers.DateTimeField(
        allow_null=True, help_text="When one of those devices last fetched the key (null: none has)."
    )


class DeviceCreatedSerializer(serializers.Serializer):
    """What POST answers, once: the install link and the command to paste; neither is shown again."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    platform = serializers.CharField()
    install_url = serializers.URLField()
    install_command = serializers.CharField()
    expires_at = serializers.DateTimeField()


class DeviceOutputSerializer(serializers.ModelSerializer):
    gateway: serializers.SlugRelatedField[Gateway] = serializers.SlugRelatedField(
        source="key.gateway", slug_field="slug", read_only=True
    )
    key = serializers.UUIDField(source="key_id", read_only=True)
    key_label = serializers.CharField(source="key.label", read_only=True)
    user: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(slug_field="username", read_only=True)
    state = serializers.ChoiceField(
        choices=list(DEVICE_STATES), read_only=True, help_text="; ".join(f"{k}: {v}" for k, v in DEVICE_STATES.items())
    )
    key_state = serializers.CharField(source="key.state", read_only=True)
    last_seen = serializers.DateTimeField(source="last_seen_at", read_only=True, allow_null=True)
    has_current_secret = serializers.BooleanField(read_only=True)
    needs_reinstall = serializers.BooleanField(
        read_only=True,
        help_text="Installed before the key's settings or its gateway's last changed: its settings.json holds the "
        "old ones, so run the install command again.",
    )
    revoked_by = serializers.CharField(source="revoked_by_username", read_only=True)

    class Meta:
        model = Device
        fields = [
            "id",
            "name",
            "platform",
            "user",
            "assignment",
            "gateway",
            "key",
            "key_label",
            "state",
            "key_state",
            "created_at",
            "install_expires_at",
            "installed_at",
            "last_seen",
            "last_seen_ip",
            "claude_version",
            "has_current_secret",
            "needs_reinstall",
            "revoked_at",
            "revoked_by",
        ]
        read_only_fields = fields


class DeviceInputSerializer(InputSerializer, serializers.ModelSerializer):
    """A new device: its name and platform (the install command depends on it)."""

    shown_by = (DeviceCreatedSerializer, DeviceOutputSerializer)

    class Meta:
        model = Device
        fields = ("name", "platform")
        # The service trims and checks the name (gateways.devices.clean_device), with its own sentences.
        extra_kwargs = {
            "name": {"max_length": 100, "allow_blank": True},  # the service's limit (clean_device)
            "platform": {
                "required": True,
                "error_messages": {"invalid_choice": f'must be one of {", ".join(Platform.values)}, not "{{input}}".'},
            },
        }
