"""REST endpoints for teams, members and the audit trail."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.renderers import OpenApiJsonRenderer2
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework import generics, permissions, status
from rest_framework.exceptions import NotFound
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from portal import audit, exports, services
from portal.api import serializers as s
from portal.api.permissions import StaffWritesOnly
from portal.api.schema import list_or_export
from portal.models import AuditEvent, Membership, Role
from portal.permissions import team_with_role
from portal.selectors import teams_with_members


class FormatParamNegotiation(DefaultContentNegotiation):
    """Content negotiation that also reads ?format=json|yaml, which the rest of the API ignores (URL_FORMAT_OVERRIDE)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return super().select_renderer(request, renderers, format_suffix or request.query_params.get("format"))


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema, for signed-in callers; a refusal is JSON `{"detail": ...}` like every error."""

    content_negotiation_class = FormatParamNegotiation

    def handle_exception(self, exc):
        self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().handle_exception(exc)

    def perform_content_negotiation(self, request, force=False):
        # A browser accepts text/html and anything else: it would get YAML as a download. It gets JSON,
        # which it shows. Tools that ask for a type, or ?format=, get what they ask for as before.
        if "text/html" in request.META.get("HTTP_ACCEPT", "") and not request.query_params.get("format"):
            return OpenApiJsonRenderer2(), OpenApiJsonRenderer2.media_type
        return super().perform_content_negotiation(request, force)


class TeamList(generics.ListAPIView):
    serializer_class = s.TeamOutputSerializer
    permission_classes = [permissions.IsAuthenticated, StaffWritesOnly]
    staff_only = "Only staff can create teams."

    def get_queryset(self):
        return teams_with_members(self.request.user)

    @extend_schema(request=s.TeamCreateSerializer, responses={201: s.TeamOutputSerializer})
    def post(self, request):
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
        data = s.TeamUpdateSerializer(data=request.data, context={"current": {"name": team.name, "slug": team.slug}})
        data.is_valid(raise_exception=True)
        services.update_team_groups(team=team, changes=data.validated_data, actor=request.user, request=request)
        team = get_object_or_404(teams_with_members(request.user), slug=slug)
        return Response(s.TeamOutputSerializer(team, context={"request": request}).data)


class TeamMemberList(generics.ListAPIView):
    serializer_class = s.MemberSerializer

    def get_queryset(self):
        team, _ = team_with_role(self.request.user, self.kwargs["slug"])
        return team.memberships.select_related("user").order_by("user__username")

    @extend_schema(
        request=s.MemberInputSerializer,
        responses={
            201: OpenApiResponse(s.MemberSerializer, description="Added: a new member of the team."),
            200: OpenApiResponse(
                s.MemberSerializer, description="Already a member: their role is now the one sent (changed or kept)."
            ),
        },
    )
    def post(self, request, slug):
        """Add a member (201), or set the role of one who is already in the team (200)."""
        team, _ = team_with_role(request.user, slug, Role.ADMIN, denied="Only the team's admins can add members.")
        data = s.MemberInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership, created = services.put_member(team=team, actor=request.user, request=request, **data.validated_data)
        answer = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(s.MemberSerializer(membership).data, status=answer)


class TeamMemberDetail(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, slug, username):
        team, _ = team_with_role(request.user, slug, Role.ADMIN, denied="Only the team's admins can remove members.")
        membership = (
            Membership.objects.select_related("user", "team").filter(team=team, user__username=username).first()
        )
        if membership is None:  # as a removal that finds them gone meanwhile answers (services.remove_member)
            raise NotFound(services.not_a_member(username, team))
        services.remove_member(membership=membership, actor=request.user, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


EXPORT_PARAM = OpenApiParameter("export", str, enum=["csv", "jsonl"], description="Download every match as a file.")


class AuditEventList(generics.ListAPIView):
    """The audit trail, newest first; `?export=csv|jsonl` downloads every match."""

    serializer_class = s.AuditEventSerializer
    content_negotiation_class = exports.ExportNegotiation  # `Accept: text/csv` gets the CSV, as the schema says
    sort_ids_first = True  # wide rows (details, user agent, hashes): see portal.pagination.first_rows

    def get_queryset(self):
        events = AuditEvent.objects.visible_to(self.request.user)
        query = self.request.query_params
        return audit.filter_events(events, query).order_by(*audit.ordering_for(query))

    @extend_schema(
        parameters=[OpenApiParameter(n, str) for n in ("team", "actor", "action", "gateway", "since", "until")]
        + [EXPORT_PARAM],
        responses=list_or_export(
            s.AuditEventSerializer,
            {
                "text/csv": "?export=csv: a header row, then one row per event.",
                "application/x-ndjson": "?export=jsonl: one JSON object per line.",
            },
        ),
    )
    def get(self, request, *args, **kwargs):
        export = request.query_params.get("export")
        if export:
            return exports.export_audit_events(self.get_queryset(), export)
        return super().get(request, *args, **kwargs)
