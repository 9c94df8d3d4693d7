"""REST endpoints for a team's invitations: create (the link is shown once), list pending, withdraw."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from portal import invitations
from portal.api import serializers as s
from portal.models import Invitation, Role, Team
from portal.permissions import team_with_role

ADMINS_ONLY = "Only the team's admins can see and send its invitations."


def _admin_team(request, slug: str) -> Team:
    team, _ = team_with_role(request.user, slug, Role.ADMIN, denied=ADMINS_ONLY)
    return team


class TeamInvitationList(generics.ListAPIView):
    """Pending invitations of the team (admins); POST invites an address with a role."""

    serializer_class = s.InvitationSerializer

    def get_queryset(self):
        team = _admin_team(self.request, self.kwargs["slug"])
        pending = Invitation.objects.usable().filter(team=team).select_related("team", "created_by")
        return pending.order_by("-created_at")

    @extend_schema(request=s.InvitationInputSerializer, responses={201: s.InvitationCreatedSerializer})
    def post(self, request, slug):
        team = _admin_team(request, slug)
        data = s.InvitationInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invitation, raw = invitations.create_invitation(
            team=team, actor=request.user, request=request, **data.validated_data
        )
        link = invitations.accept_url(request, raw)
        # Shown this once and never stored: the serializer reads them off the instance.
        setattr(invitation, "accept_url", link)  # noqa: B010
        setattr(invitation, "emailed", invitations.send_invitation(invitation, link))  # noqa: B010
        response = Response(s.InvitationCreatedSerializer(invitation).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"  # the link works once: no cache may keep it
        return response


class TeamInvitationDetail(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, slug, invitation_id: int):
        """Withdraw a pending invitation: its link stops working."""
        team = _admin_team(request, slug)
        invitation = get_object_or_404(Invitation.objects.select_related("team"), pk=invitation_id, team=team)
        invitations.withdraw_invitation(invitation=invitation, actor=request.user, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)
