"""REST endpoints for teams, members, the audit trail and connections."""

from __future__ import annotations

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, permissions, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from portal import audit, exports, services
from portal.api import serializers as s
from portal.connections import ConnectionFilters, FilterError, connection_rows, connections_for
from portal.models import AuditEvent, Membership, Role, Team
from portal.permissions import team_with_role


def teams_with_members(user):
    return Team.objects.visible_to(user).prefetch_related(
        Prefetch("memberships", queryset=Membership.objects.select_related("user"))
    )


class TeamList(APIView):
    @extend_schema(responses=s.TeamOutputSerializer(many=True))
    def get(self, request):
        teams = teams_with_members(request.user)
        return Response(s.TeamOutputSerializer(teams, many=True, context={"request": request}).data)

    @extend_schema(request=s.TeamCreateSerializer, responses={201: s.TeamOutputSerializer})
    def post(self, request):
        if not request.user.is_staff:
            raise PermissionDenied("Only staff can create teams.")
        data = s.TeamCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        team = services.create_team(actor=request.user, request=request, **data.validated_data)
        return Response(s.TeamOutputSerializer(team, context={"request": request}).data, status=201)


class TeamDetail(APIView):
    @extend_schema(responses=s.TeamOutputSerializer)
    def get(self, request, slug):
        team = get_object_or_404(teams_with_members(request.user), slug=slug)
        return Response(s.TeamOutputSerializer(team, context={"request": request}).data)

    @extend_schema(request=s.TeamUpdateSerializer, responses=s.TeamOutputSerializer)
    def patch(self, request, slug):
        """Name the identity-provider groups whose people join the team as members or admins (team admins)."""
        team, _ = team_with_role(
            request.user, slug, Role.ADMIN, denied="Only the team's admins can change its settings."
        )
        data = s.TeamUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.update_team_groups(team=team, changes=data.validated_data, actor=request.user, request=request)
        team = get_object_or_404(teams_with_members(request.user), slug=slug)
        return Response(s.TeamOutputSerializer(team, context={"request": request}).data)


class TeamMemberList(APIView):
    @extend_schema(responses=s.MemberSerializer(many=True))
    def get(self, request, slug):
        team = get_object_or_404(Team.objects.visible_to(request.user), slug=slug)
        return Response(s.MemberSerializer(team.memberships.select_related("user"), many=True).data)

    @extend_schema(request=s.MemberInputSerializer, responses={201: s.MemberSerializer})
    def post(self, request, slug):
        """Add a member, or change the role of one who is already in the team."""
        team = get_object_or_404(Team.objects.visible_to(request.user), slug=slug)
        if not Team.objects.administered_by(request.user).filter(pk=team.pk).exists():
            raise PermissionDenied("Only the team's admins can add members.")
        data = s.MemberInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.add_member(team=team, actor=request.user, request=request, **data.validated_data)
        return Response(s.MemberSerializer(membership).data, status=status.HTTP_201_CREATED)


class TeamMemberDetail(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, slug, username):
        team = get_object_or_404(Team.objects.visible_to(request.user), slug=slug)
        if not Team.objects.administered_by(request.user).filter(pk=team.pk).exists():
            raise PermissionDenied("Only the team's admins can remove members.")
        membership = get_object_or_404(
            Membership.objects.select_related("user", "team"), team=team, user__username=username
        )
        services.remove_member(membership=membership, actor=request.user, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuditCursor(CursorPagination):
    ordering = "-id"
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "limit"


AUDIT_COLUMNS = list(s.AuditEventSerializer.Meta.fields)
EXPORT_PARAM = OpenApiParameter("export", str, enum=["csv", "jsonl"], description="Download every match as a file.")


class AuditEventList(generics.ListAPIView):
    """The audit trail, newest first, paginated by cursor; `?export=csv|jsonl` downloads every match."""

    serializer_class = s.AuditEventSerializer
    pagination_class = AuditCursor

    def get_queryset(self):
        try:
            return audit.filter_events(AuditEvent.objects.visible_to(self.request.user), self.request.query_params)
        except audit.AuditFilterError as exc:
            raise ValidationError({"detail": str(exc)}) from None

    @extend_schema(
        parameters=[OpenApiParameter(n, str) for n in ("team", "actor", "action", "gateway", "since", "until")]
        + [EXPORT_PARAM]
    )
    def get(self, request, *args, **kwargs):
        export = request.query_params.get("export")
        if export:
            return export_events(self.get_queryset(), export)
        return super().get(request, *args, **kwargs)


def export_events(events, export: str):
    rows = (s.AuditEventSerializer(e).data for e in events.order_by("id").iterator(chunk_size=2000))
    if export == "csv":
        return exports.csv_response(rows, AUDIT_COLUMNS, "audit-events.csv")
    if export == "jsonl":
        return exports.jsonl_response(rows, "audit-events.jsonl")
    raise ValidationError({"detail": f"export must be csv or jsonl, not {export!r}."})


CONNECTION_COLUMNS = list(s.ConnectionSerializer().fields)


class ConnectionList(APIView):
    """One row per developer x gateway x key; filters team, gateway, state; sort; `?export=csv`."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        parameters=[OpenApiParameter(n, str) for n in ("team", "gateway", "state", "sort")] + [EXPORT_PARAM],
        responses=s.ConnectionSerializer(many=True),
    )
    def get(self, request):
        try:
            filters = ConnectionFilters.from_query(request.query_params)
        except FilterError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        rows = connection_rows(connections_for(request.user, filters))
        if request.query_params.get("export") == "csv":
            return exports.csv_response(rows, CONNECTION_COLUMNS, "connections.csv")
        return Response(s.ConnectionSerializer(list(rows), many=True).data)
