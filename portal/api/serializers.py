from __future__ import annotations

from rest_framework import serializers

from portal.models import AuditEvent, Membership, Role, Team


class TeamCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    slug = serializers.SlugField(max_length=50)


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
        fields = ["name", "slug", "created_at", "your_role", "members"]
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
