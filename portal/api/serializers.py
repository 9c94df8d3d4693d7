from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.models import AuditEvent, Invitation, Membership, Role, Team


@extend_schema_field({"type": "string", "pattern": "^[-a-z0-9_]+$"})
class LowercaseSlugField(serializers.SlugField):
    """A team's or gateway's slug. The schema says lowercase; the service refuses upper case with its own
    sentence, which names the lowercase slug to use (portal.services.clean_slug)."""


class TeamCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    slug = LowercaseSlugField(max_length=50)


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["username", "role", "created_at"]
        read_only_fields = fields


class MemberInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(Role.choices, default=Role.MEMBER)


class TeamOutputSerializer(serializers.ModelSerializer):
    members = MemberSerializer(source="memberships", many=True, read_only=True)
    your_role = serializers.SerializerMethodField()

    class Meta:
        model = Team
        fields = ["name", "slug", "created_at", "your_role", "members", "sso_member_group", "sso_admin_group"]
        read_only_fields = fields

    def get_your_role(self, team) -> str | None:
        return team.role_of(self.context["request"].user)


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_username", read_only=True)
    team = serializers.CharField(source="team_slug", read_only=True)
    gateway = serializers.CharField(source="gateway_slug", read_only=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "action",
            "team",
            "gateway",
            "target",
            "ip_address",
            "user_agent",
            "details",
            "hash",
        ]
        read_only_fields = fields


# --- Accounts (issue 13): team SSO groups and invitations ---


class TeamUpdateSerializer(serializers.Serializer):
    sso_member_group = serializers.CharField(max_length=200, allow_blank=True, required=False)
    sso_admin_group = serializers.CharField(max_length=200, allow_blank=True, required=False)


class InvitationSerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="team.slug", read_only=True)
    invited_by = serializers.CharField(source="created_by.username", read_only=True, default=None, allow_null=True)

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "team", "invited_by", "created_at", "expires_at"]
        read_only_fields = fields


class InvitationInputSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(Role.choices, default=Role.MEMBER)


class InvitationCreatedSerializer(InvitationSerializer):
    """The new invitation with its link, which is shown this once."""

    accept_url = serializers.URLField(read_only=True)
    emailed = serializers.BooleanField(read_only=True, help_text="Whether the link was also sent by e-mail.")

    class Meta(InvitationSerializer.Meta):
        fields = [*InvitationSerializer.Meta.fields, "accept_url", "emailed"]
        read_only_fields = fields
