"""Input and output serializers for channels, kept apart so an output can never echo the signing secret."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
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


class ChannelInputSerializer(InputSerializer):
    shown_by = (ChannelWrittenSerializer,)

    kind = serializers.ChoiceField(ChannelKind.choices)
    target = serializers.CharField(max_length=rules.MAX_TARGET, help_text="The URL to POST to, or an e-mail address.")
    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=rules.MAX_SECRET,
        help_text="webhook only: signs each body (X-Portal-Signature); stored encrypted, never returned.",
    )
    enabled = serializers.BooleanField(required=False, default=True)
