"""REST endpoints for a team's notification channels."""

from __future__ import annotations

from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from alerts import services
from alerts.api import serializers as s
from alerts.models import Channel
from portal.models import Role
from portal.permissions import require_role, team_with_role

ADMINS_ONLY = "Only the team's admins can change its notification channels."


@method_decorator(sensitive_post_parameters("secret"), name="dispatch")
class TeamChannelList(generics.ListAPIView):
    """A team's channels (admins and auditors); admins add one with POST."""

    serializer_class = s.ChannelOutputSerializer

    def get_queryset(self):
        team, _ = team_with_role(
            self.request.user,
            self.kwargs["slug"],
            Role.ADMIN,
            Role.AUDITOR,
            denied="Members cannot list the team's notification channels.",
        )
        return team.channels.select_related("team", "created_by").order_by("created_at")

    @extend_schema(request=s.ChannelInputSerializer, responses={201: s.ChannelWrittenSerializer})
    def post(self, request, slug):
        team, _ = team_with_role(request.user, slug, Role.ADMIN, denied=ADMINS_ONLY)
        data = s.ChannelInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        channel = services.create_channel(team=team, actor=request.user, request=request, **data.validated_data)
        written = {**s.ChannelOutputSerializer(channel).data, "notices": services.channel_notices(channel)}
        return Response(written, status=status.HTTP_201_CREATED)


class ChannelDetail(APIView):
    def _channel(self, request, channel_id, *roles: str) -> Channel:
        visible = Channel.objects.visible_to(request.user).select_related("team", "created_by")
        channel = visible.filter(pk=channel_id).first()
        if channel is None:
            raise NotFound("No notification channel with that id is visible to you.")
        require_role(request.user, channel.team, *roles, denied=ADMINS_ONLY)
        return channel

    @extend_schema(responses=s.ChannelOutputSerializer)
    def get(self, request, channel_id):
        return Response(s.ChannelOutputSerializer(self._channel(request, channel_id)).data)

    @extend_schema(responses={204: OpenApiResponse(description="Removed; its pending deliveries are cancelled.")})
    def delete(self, request, channel_id):
        channel = self._channel(request, channel_id, Role.ADMIN)
        services.delete_channel(channel=channel, actor=request.user, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)
