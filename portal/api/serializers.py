from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from typing import Any, ClassVar

from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.errors import echoed
from portal.models import AuditEvent, Invitation, Membership, Role, Team


@extend_schema_field({"type": "string", "pattern": "^[-a-z0-9_]+$"})
class LowercaseSlugField(serializers.SlugField):
    """A team's or gateway's slug. The schema says lowercase; the service refuses upper case with its own
    sentence, which names the lowercase slug to use (portal.services.clean_slug)."""


NAMED_AT_MOST = 5  # unknown fields named in a refusal; the rest are counted


def _and_list(names: list[str]) -> str:
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names) or "no field"


@functools.cache
def _shown_names(serializer_class: type[InputSerializer]) -> frozenset[str]:
    return frozenset(name for output in serializer_class.shown_by for name, _ in output().fields.items())


def _same(sent: Any, current: Any) -> bool:
    """Whether a value sent back is the one shown: a time may be written with another offset or precision."""
    if isinstance(sent, str) and isinstance(current, str) and sent != current:
        try:
            sent_at, current_at = parse_datetime(sent), parse_datetime(current)
        except ValueError:
            return False
        return sent_at is not None and current_at is not None and sent_at == current_at
    return sent == current


class InputSerializer(serializers.Serializer):
    """A request body of the API: a field it neither takes nor shows is refused, never silently dropped.

    PATCH {"enabled": false} on a key (whose field is is_enabled) answered 200 and left the key enabled.
    `shown_by` names the serializers that answer for the same resource: what they show may be sent back
    (GET, then PATCH of the whole object) and is ignored, unless the body holds nothing this one takes,
    when it can only be a change that would be dropped. Inherit it first: `(InputSerializer, ModelSerializer)`.

    `fixed` names shown fields that never change through this endpoint (a team's name, a key's gateway). A PATCH
    that gives one a value other than the object's own, passed as `context={"current": <what GET shows>}`, asks
    for a change that would be dropped, and is refused: {"name": "x", "sso_member_group": "g"} answered 200 and
    left the name as it was. Fields that change by themselves (a probe's verdict, timestamps) are not fixed, so a
    body read before a probe ran is still taken.
    """

    shown_by: ClassVar[tuple[type[serializers.Serializer], ...]] = ()
    fixed: ClassVar[dict[str, str]] = {}  # field -> what to do instead of sending another value
    query_parameters: ClassVar[tuple[str, ...]] = ()  # options the endpoint reads from the query string instead

    def to_internal_value(self, data: Any) -> Any:
        refused = self.unexpected_fields(data) if isinstance(data, Mapping) else {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if refused and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**exc.detail, **refused}) from None
            raise
        if refused:
            raise serializers.ValidationError(refused)
        return value

    def unexpected_fields(self, data: Mapping[str, Any]) -> dict[str, list[str]]:
        """Each field of the body this serializer refuses, with its sentence (keyed by its name, cut if long)."""
        taken = [name for name, field in self.fields.items() if not field.read_only]
        shown = _shown_names(type(self)) | {name for name, field in self.fields.items() if field.read_only}
        refused: dict[str, list[str]] = {}
        sets_something = any(n in taken for n in data)
        unexpected = [name for name in data if name not in taken and not (name in shown and sets_something)]
        for name in unexpected[:NAMED_AT_MOST]:
            if name in shown:
                sentence = f"This endpoint shows it but does not set it; it sets {_and_list(taken)}."
            elif name in self.query_parameters:
                sentence = f"This endpoint reads it from the query string, not the body: send ?{name}=... instead."
            elif not taken:
                options = f" ({_and_list(list(self.query_parameters))} are query parameters)"
                sentence = f"This endpoint takes no body{options if self.query_parameters else ''}; send none."
            elif near := difflib.get_close_matches(name, taken, n=1):
                sentence = f"This endpoint takes no field by that name; did you mean {near[0]}?"
            else:
                sentence = f"This endpoint takes no field by that name; it takes {_and_list(taken)}."
            refused.setdefault(echoed(name), []).append(sentence)
        current = self.context.get("current")
        if isinstance(current, Mapping) and sets_something:
            for name, instead in self.fixed.items():
                if name in data and name in current and not _same(data[name], current[name]):
                    refused[name] = [
                        f"This endpoint does not change {name}; send it as it is ({current[name]!r}) or leave it "
                        f"out. {instead}".strip()
                    ]
        if len(unexpected) > NAMED_AT_MOST:  # a body of 80,000 made-up names is not answered name by name
            more = len(unexpected) - NAMED_AT_MOST
            refused["non_field_errors"] = [f"The body has {more} more fields this endpoint does not take."]
        return refused


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["username", "role", "created_at"]
        read_only_fields = fields


class MemberInputSerializer(InputSerializer):
    """Add an account to the team with a role, or set the role of someone already in it."""

    shown_by = (MemberSerializer,)

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


class TeamCreateSerializer(InputSerializer):
    """A new team: its name and slug (staff); its creator becomes its admin."""

    shown_by = (TeamOutputSerializer,)

    name = serializers.CharField(max_length=100)
    slug = LowercaseSlugField(max_length=50)


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


class TeamUpdateSerializer(InputSerializer):
    """The identity-provider groups whose people join the team as members or admins (team admins)."""

    shown_by = (TeamOutputSerializer,)
    fixed = dict.fromkeys(("name", "slug"), "A team's name and slug never change (README, Roles).")

    sso_member_group = serializers.CharField(max_length=200, allow_blank=True, required=False)
    sso_admin_group = serializers.CharField(max_length=200, allow_blank=True, required=False)


class InvitationSerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="team.slug", read_only=True)
    invited_by = serializers.CharField(source="created_by.username", read_only=True, default=None, allow_null=True)

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "team", "invited_by", "created_at", "expires_at"]
        read_only_fields = fields


class InvitationCreatedSerializer(InvitationSerializer):
    """The new invitation with its link, which is shown this once."""

    accept_url = serializers.URLField(read_only=True)
    emailed = serializers.BooleanField(read_only=True, help_text="Whether the link was also sent by e-mail.")

    class Meta(InvitationSerializer.Meta):
        fields = [*InvitationSerializer.Meta.fields, "accept_url", "emailed"]
        read_only_fields = fields


class InvitationInputSerializer(InputSerializer):
    """Invite an e-mail address to the team with a role."""

    shown_by = (InvitationCreatedSerializer,)

    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(Role.choices, default=Role.MEMBER)
