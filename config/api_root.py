"""The API's front door: `/api/v1/` lists the main endpoints, `/api/v1/docs/` is interactive documentation.

The docs are Swagger UI from drf-spectacular-sidecar, served from the portal's own static files (no
CDN); its start-up script is a separate file, so the page keeps the strict Content-Security-Policy.
"""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularSwaggerSplitView
from rest_framework.exceptions import NotAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

# The endpoints a newcomer starts from, by URL name; the schema and the docs list every operation.
MAIN_ENDPOINTS = {
    "gateways": "api-gateways",
    "teams": "api-teams",
    "my_configs": "api-my-configs",
    "probes": "api-probes",
    "audit_events": "api-audit-events",
    "connections": "api-connections",
    "devices": "api-devices",
}


class ApiRoot(APIView):
    """Where the API starts: links to its main lists, its schema and its interactive docs."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT}, summary="The API root: links to the main endpoints")
    def get(self, request: Request) -> Response:
        link = request.build_absolute_uri
        return Response(
            {
                "docs": link(reverse("api-docs")),
                "schema": link(reverse("api-schema")),
                "endpoints": {name: link(reverse(url_name)) for name, url_name in MAIN_ENDPOINTS.items()},
            }
        )


class ApiDocs(SpectacularSwaggerSplitView):
    """Swagger UI inside the portal's own layout; `?script` serves its start-up script."""

    url_name = "api-schema"
    template_name = "api_docs.html"
    title = "API"

    def handle_exception(self, exc):
        # A person who is not signed in is sent to sign in, like on every other page; any other refusal (a
        # wrong method; a credential the API refuses: a device token, a dead access token) gets the API's
        # answer, JSON with a sentence as at the schema, not the page's renderer's HTML error.
        if isinstance(exc, NotAuthenticated):
            return redirect_to_login(self.request.get_full_path())
        self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().handle_exception(exc)
