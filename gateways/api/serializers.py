"""Input and output serializers, kept apart so an output can never echo the write-only secret."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from gateways.config.formats import FORMATS
from gateways.models import Assignment, AuthScheme, Gateway, GatewayKey, ProbeMode, ProbeResult
from gateways.rules import ModelIdStyle
from gateways.services import GATEWAY_FIELDS, KEY_OVERRIDE_FIELDS

GATEWAY_OUTPUT_FIELDS = [
    "slug",
    *GATEWAY_FIELDS,
    "empties_api_key",
    "credential_variable",
    "is_preset",
    "created_at",
    "updated_at",
]


class GatewayOutputSerializer(serializers.ModelSerializer):
    empties_api_key = serializers.BooleanField(read_only=True)
    credential_variable = serializers.CharField(read_only=True)

    class Meta:
        model = Gateway
        fields = GATEWAY_OUTPUT_FIELDS
        read_only_fields = fields


class GatewayInputSerializer(serializers.Serializer):
    """Fields a staff member may set; the catalogue rules (gateways.rules) run in the service."""

    slug = serializers.SlugField(max_length=50, required=False)
    name = serializers.CharField(max_length=100, required=False)
    base_url = serializers.CharField(max_length=300, required=False)
    auth_scheme = serializers.ChoiceField(AuthScheme.choices, required=False)
    requires_sk_prefix = serializers.BooleanField(required=False)
    model_id_style = serializers.ChoiceField(ModelIdStyle.choices, required=False)
    default_model = serializers.CharField(max_length=100, required=False, allow_blank=True)
    default_opus_model = serializers.CharField(max_length=100, required=False, allow_blank=True)
    default_sonnet_model = serializers.CharField(max_length=100, required=False, allow_blank=True)
    default_haiku_model = serializers.CharField(max_length=100, required=False, allow_blank=True)
    custom_model_option = serializers.CharField(max_length=100, required=False, allow_blank=True)
    custom_model_option_name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    timeout_ms = serializers.IntegerField(required=False, allow_null=True)
    disable_experimental_betas = serializers.BooleanField(required=False)
    extra_env = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False)
    docs_url = serializers.URLField(required=False, allow_blank=True)
    console_hint = serializers.CharField(max_length=300, required=False, allow_blank=True)
    notes = serializers.CharField(required=False, allow_blank=True)
    troubleshooting = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField(), min_length=2, max_length=2), required=False
    )
    probe_mode = serializers.ChoiceField(ProbeMode.choices, required=False)
    probe_prompt = serializers.CharField(max_length=200, required=False)
    probe_model = serializers.CharField(max_length=100, required=False, allow_blank=True)
    probe_interval_minutes = serializers.IntegerField(min_value=1, max_value=7 * 24 * 60, required=False)


class KeySettingsSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=100, required=False)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    model = serializers.CharField(max_length=100, required=False, allow_blank=True)
    opus_model = serializers.CharField(max_length=100, required=False, allow_blank=True)
    sonnet_model = serializers.CharField(max_length=100, required=False, allow_blank=True)
    haiku_model = serializers.CharField(max_length=100, required=False, allow_blank=True)
    custom_model_option = serializers.CharField(max_length=100, required=False, allow_blank=True)
    custom_model_option_name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    timeout_ms = serializers.IntegerField(required=False, allow_null=True)
    disable_experimental_betas = serializers.BooleanField(required=False, allow_null=True)
    custom_headers = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False)


class KeyCreateSerializer(KeySettingsSerializer):
    gateway = serializers.SlugRelatedField(slug_field="slug", queryset=Gateway.objects.all())
    label = serializers.CharField(max_length=100)
    secret = serializers.CharField(write_only=True, trim_whitespace=False, max_length=4096)


class KeyUpdateSerializer(KeySettingsSerializer):
    secret = serializers.CharField(write_only=True, required=False, trim_whitespace=False, max_length=4096)
    is_enabled = serializers.BooleanField(required=False)


class KeyOutputSerializer(serializers.ModelSerializer):
    team = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    gateway = serializers.SlugRelatedField(slug_field="slug", read_only=True)
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


class AssignmentInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)


class AssignmentOutputSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    key = serializers.UUIDField(source="key_id", read_only=True)

    class Meta:
        model = Assignment
        fields = ["id", "key", "username", "created_at", "last_download_at", "last_download_format", "download_count"]
        read_only_fields = fields


class ConfigOutputSerializer(serializers.ModelSerializer):
    """One of the caller's configurations: what it is and where to download it."""

    gateway = serializers.SlugRelatedField(source="key.gateway", slug_field="slug", read_only=True)
    gateway_name = serializers.CharField(source="key.gateway.name", read_only=True)
    team = serializers.SlugRelatedField(source="key.team", slug_field="slug", read_only=True)
    key_label = serializers.CharField(source="key.label", read_only=True)
    masked = serializers.CharField(source="key.masked", read_only=True)
    state = serializers.CharField(source="key.state", read_only=True)
    expires_at = serializers.DateTimeField(source="key.expires_at", read_only=True)
    formats = serializers.SerializerMethodField()

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
        ]
        read_only_fields = fields

    def get_formats(self, assignment) -> dict[str, str]:
        request = self.context.get("request")
        urls = {}
        for name in FORMATS:
            url = reverse("api-config-download", args=[assignment.id, name])
            urls[name] = request.build_absolute_uri(url) if request else url
        return urls


class ProbeResultOutputSerializer(serializers.ModelSerializer):
    key = serializers.UUIDField(source="key_id", read_only=True)
    gateway = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    started_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

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
    latest_verdict = serializers.CharField()
    latest_probe_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
