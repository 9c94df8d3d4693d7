"""Input and output serializers for channels, kept apart so an output can never echo the signing secret."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from alerts import rules
from alerts.models import Channel, ChannelKind
from portal.api.serializers import InputSerializer
from portal.models import Team


class ChannelOutputSerializer(serializers.ModelSerializer):
    team: serializers.SlugRelatedField[Team] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    target = serializers.CharField(
        source="display_target", read_only=True, help_text="A Slack URL shows only its start."
    )
    signed = serializers.BooleanField(source="has_secret", read_only=True)
    created_by: serializers.SlugRelatedField[AbstractBaseUser] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Channel
        fields = ["id", "team", "kind", "target", "signed", "enabled", "created_by", "created_at"]
        read_only_fields = fields


class ChannelWrittenSerializer(ChannelOutputSerializer):
    """A channel as adding it answers: with what the admin must know, as gateway writes answer `notices`."""

    notices = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text='Why the channel will not deliver yet, e.g. "This portal sends no mail: ..."; empty when all is well.',
    )

    class Meta(ChannelOutputSerializer.Meta):
        fields = [*ChannelOutputSerializer.Meta.fields, "notices"]
        read_only_fields = fields


@extend_schema_field(
    {
        "anyOf": [
            {
                "type": "string",
                "minLength": rules.MIN_SECRET,
                "maxLength": rules.MAX_SECRET,
                "pattern": "^[^\\u0000-\\u001f\\u007f]*$",  # on one line: no control character
            },
            {"type": "string", "maxLength": 0},
        ]
    }
)
class WebhookSecretField(serializers.CharField):
    """A webhook's signing secret, as the schema states the rule (alerts.rules.clean_channel), which refuses one
    that breaks it with its own sentence: a webhook's is 16 to 200 characters on one line, another kind's empty."""


class ChannelInputSerializer(InputSerializer):
    """A notification channel of the team: a signed webhook, a Slack-compatible incoming webhook, or an e-mail
    address."""

    shown_by = (ChannelWrittenSerializer,)

    kind = serializers.ChoiceField(ChannelKind.choices)
    target = serializers.CharField(max_length=rules.MAX_TARGET, help_text="The URL to POST to, or an e-mail address.")
    secret = WebhookSecretField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=rules.MAX_SECRET,
        help_text=f"Required for a webhook: {rules.MIN_SECRET} to {rules.MAX_SECRET} characters on one line, which "
        "sign each body (X-Portal-Signature); stored encrypted, never returned. Slack and e-mail channels take none: "
        'leave it out or send "".',
    )
    enabled = serializers.BooleanField(required=False, default=True)
