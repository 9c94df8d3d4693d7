"""REST endpoints for the catalogue, keys, assignments, configurations, probes and connections."""

from __future__ import annotations

import contextlib
import functools
import logging
import uuid
from collections.abc import Callable

from csp.decorators import csp_exempt
from django.db import InterfaceError, OperationalError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.cache import patch_vary_headers
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import generics, permissions, status
from rest_framework import serializers as drf_serializers
from rest_framework.exceptions import NotFound, UnsupportedMediaType
from rest_framework.response import Response
from rest_framework.views import APIView

from gateways import devices, services
from gateways.api import serializers as s
from gateways.config import formats, live
from gateways.connections import ConnectionFilters, connection_rows, connections_csv, connections_for
from gateways.models import Assignment, Device, Gateway, ProbeResult, Verdict
from gateways.permissions import ASSIGNMENT_REMOVAL_DENIED, device_for_removal, key_with_role
from gateways.rules import UnrepresentableValue
from gateways.selectors import my_assignment, my_assignments, my_devices, team_devices
from portal import outages
from portal.api.permissions import StaffWritesOnly
from portal.api.schema import list_or_export, refusal
from portal.audit import client_ip
from portal.errors import RuleError
from portal.exports import ExportNegotiation, FileOrJSONNegotiation
from portal.models import Role, TokenScope, token_lookup, token_scope
from portal.ordering import ReadingOrder
from portal.permissions import require_role, team_with_role
from portal.sudo import require_recent_password

logger = logging.getLogger(__name__)

CATALOGUE_STAFF_ONLY = "Only staff can change the gateway catalogue."


class GatewayList(generics.ListAPIView):
    queryset = Gateway.objects.all()  # in reading order (Gateway.Meta)
    serializer_class = s.GatewayOutputSerializer
    permission_classes = [permissions.IsAuthenticated, StaffWritesOnly]
    staff_only = CATALOGUE_STAFF_ONLY

    @extend_schema(request=s.GatewayCreateSerializer, responses={201: s.GatewayWrittenSerializer})
    def post(self, request):
        data = s.GatewayInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        for required in s.GATEWAY_REQUIRED_ON_CREATE:
            if not fields.get(required):
                raise RuleError(f"{required} is required to add a gateway.", field=required)
        gateway, notices = services.create_gateway(actor=request.user, request=request, **fields)
        return Response({**s.GatewayOutputSerializer(gateway).data, "notices": notices}, status=201)


class GatewayDetail(APIView):
    permission_classes = [permissions.IsAuthenticated, StaffWritesOnly]
    staff_only = CATALOGUE_STAFF_ONLY

    @extend_schema(responses=s.GatewayOutputSerializer)
    def get(self, request, slug):
        return Response(s.GatewayOutputSerializer(get_object_or_404(Gateway, slug=slug)).data)

    @extend_schema(request=s.GatewayInputSerializer, responses=s.GatewayWrittenSerializer)
    def patch(self, request, slug):
        gateway = get_object_or_404(Gateway, slug=slug)
        data = s.GatewayInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        if changes.pop("slug", gateway.slug) != gateway.slug:
            raise RuleError("A gateway's slug cannot change; it is part of every config URL.", field="slug")
        notices = services.update_gateway(gateway=gateway, changes=changes, actor=request.user, request=request)
        return Response({**s.GatewayOutputSerializer(gateway).data, "notices": notices})


@method_decorator(sensitive_post_parameters("secret"), name="dispatch")
class TeamKeyList(generics.ListAPIView):
    serializer_class = s.KeyOutputSerializer

    def get_queryset(self):
        team, _ = team_with_role(
            self.request.user,
            self.kwargs["slug"],
            Role.ADMIN,
            Role.AUDITOR,
            denied="Members cannot list the team's keys.",
        )
        return team.keys.select_related("team", "gateway").order_by(ReadingOrder("label"), "label")

    @extend_schema(request=s.KeyCreateSerializer, responses={201: s.KeyOutputSerializer})
    def post(self, request, slug):
        team, _ = team_with_role(request.user, slug, Role.ADMIN, denied="Only the team's admins can add keys.")
        data = s.KeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        key = services.store_key(team=team, actor=request.user, request=request, **fields)
        return Response(s.KeyOutputSerializer(key).data, status=status.HTTP_201_CREATED)


@method_decorator(sensitive_post_parameters("secret"), name="dispatch")
class KeyDetail(APIView):
    @extend_schema(responses=s.KeyOutputSerializer)
    def get(self, request, key_id):
        return Response(s.KeyOutputSerializer(key_with_role(request.user, key_id)[0]).data)

    @extend_schema(request=s.KeyUpdateSerializer, responses=s.KeyOutputSerializer)
    def patch(self, request, key_id):
        key = key_with_role(request.user, key_id, Role.ADMIN)[0]
        current = s.KeyOutputSerializer(key).data
        data = s.KeyUpdateSerializer(data=request.data, partial=True, context={"current": current})
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        secret = changes.pop("secret", None)
        enabled = changes.pop("is_enabled", None)
        if secret is not None:
            require_recent_password(request)
        with transaction.atomic():  # one PATCH, one change: all of it or none
            if enabled is not None:
                key = services.set_key_enabled(key=key, enabled=enabled, actor=request.user, request=request)
            if secret is not None:
                # A new expiry sent with the secret is the new secret's: recorded in the rotation's audit row.
                expiry = changes.pop("expires_at") if "expires_at" in changes else ...
                key = services.rotate_key_secret(
                    key=key, secret=secret, expires_at=expiry, actor=request.user, request=request
                )
            key = services.update_key_settings(key=key, changes=changes, actor=request.user, request=request)
        return Response(s.KeyOutputSerializer(key).data)

    @extend_schema(responses={204: OpenApiResponse(description="Revoked; the secret is destroyed.")})
    def delete(self, request, key_id):
        """Revoke the key: its secret is destroyed and it yields no more configs; the row stays for the audit."""
        key = key_with_role(request.user, key_id, Role.ADMIN)[0]
        require_recent_password(request)
        services.revoke_key(key=key, actor=request.user, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class KeyAssignmentList(generics.ListAPIView):
    serializer_class = s.AssignmentOutputSerializer

    def get_queryset(self):
        key = key_with_role(self.request.user, self.kwargs["key_id"])[0]
        return key.assignments.select_related("user").order_by("-created_at")

    @extend_schema(request=s.AssignmentInputSerializer, responses={201: s.AssignmentOutputSerializer})
    def post(self, request, key_id):
        key = key_with_role(request.user, key_id, Role.ADMIN)[0]
        data = s.AssignmentInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assignment = services.assign_key(
            key=key, username=data.validated_data["username"], actor=request.user, request=request
        )
        return Response(s.AssignmentOutputSerializer(assignment).data, status=status.HTTP_201_CREATED)


class AssignmentDetail(APIView):
    @extend_schema(responses={204: OpenApiResponse(description="Assignment removed.")})
    def delete(self, request, assignment_id):
        assignment = Assignment.objects.visible_to(request.user).select_related("key__team", "key__gateway", "user")
        assignment = get_object_or_404(assignment, pk=assignment_id)
        require_role(request.user, assignment.key.team, Role.ADMIN, denied=ASSIGNMENT_REMOVAL_DENIED)
        services.remove_assignment(assignment=assignment, actor=request.user, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MyConfigList(generics.ListAPIView):
    serializer_class = s.ConfigOutputSerializer

    def get_queryset(self):
        return my_assignments(self.request.user)


REFUSAL = inline_serializer("Refusal", {"detail": drf_serializers.CharField(help_text="A sentence for a person.")})
# What a download answers, in every media type its formats use (gateways.config.formats).
DOWNLOAD_RESPONSES: dict[int | tuple[int, str], OpenApiResponse] = {
    **{
        (200, content_type): OpenApiResponse(
            OpenApiTypes.OBJECT if content_type == "application/json" else OpenApiTypes.STR,
            description="The configuration, as a file in the format asked for.",
        )
        for content_type in sorted({fmt.content_type for fmt in formats.FORMATS.values()})
    },
    404: OpenApiResponse(REFUSAL, description="Unknown format or assignment."),
    410: OpenApiResponse(REFUSAL, description="The key is revoked, disabled or expired: it yields no configuration."),
    422: OpenApiResponse(REFUSAL, description="The set-up holds a value this format cannot write."),
}


class MyConfigDownload(APIView):
    # Django would answer HEAD with get(), which records a download (its count, its time, an audit row)
    # and delivers nothing: HEAD gets a 405, as on the web page.
    http_method_names = [m for m in APIView.http_method_names if m != "head"]
    content_negotiation_class = FileOrJSONNegotiation

    @extend_schema(responses=DOWNLOAD_RESPONSES)
    def get(self, request, assignment_id, format_name):
        assignment = my_assignment(request.user, assignment_id)
        if assignment is None:
            raise NotFound("You have no configuration with that id. GET /api/v1/me/configs/ lists yours.")
        if format_name not in formats.FORMATS:
            raise NotFound(str(formats.UnknownFormat(format_name)))
        try:
            text, fmt = services.deliver_config(assignment=assignment, format_name=format_name, request=request)
        except services.ConfigUnavailable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_410_GONE)
        except UnrepresentableValue as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
        return formats.download_response(
            text, fmt, team_slug=assignment.key.team.slug, gateway_slug=assignment.key.gateway.slug
        )


@extend_schema_view(
    get=extend_schema(
        parameters=[
            OpenApiParameter("verdict", str, enum=list(Verdict.values), description="Only probes with this verdict."),
            OpenApiParameter("key", uuid.UUID, description="Only the probes of this key (its id)."),
            OpenApiParameter("gateway", str, description="Only the probes of this gateway (its slug)."),
        ]
    )
)
class ProbeList(generics.ListAPIView):
    """Probes of the keys of the teams you administer or audit (staff: all), newest first."""

    serializer_class = s.ProbeResultOutputSerializer

    def get_queryset(self):
        probes = ProbeResult.objects.visible_to(self.request.user).select_related("gateway", "started_by")
        probes = probes.order_by("-created_at")
        query = self.request.query_params
        if verdict := query.get("verdict"):
            if verdict not in Verdict.values:
                raise RuleError(
                    f"verdict must be one of {', '.join(Verdict.values)}, not {verdict!r}.", field="verdict"
                )
            probes = probes.filter(verdict=verdict)
        if key := query.get("key"):
            try:
                probes = probes.filter(key_id=uuid.UUID(key))
            except ValueError:
                raise RuleError(
                    f"key must be a key's id, a UUID like {uuid.UUID(int=0)}, not {key!r}.", field="key"
                ) from None
        if gateway := query.get("gateway"):
            probes = probes.filter(gateway__slug=gateway)
        return probes


def _flag(request, name: str) -> bool:
    """A true/false query parameter that defaults to true."""
    return str(request.query_params.get(name, "true")).lower() not in ("0", "false", "no")


class KeyProbeList(generics.ListAPIView):
    serializer_class = s.ProbeResultOutputSerializer

    def get_queryset(self):
        key = key_with_role(self.request.user, self.kwargs["key_id"])[0]
        return key.probes.select_related("gateway", "started_by").order_by("-created_at")

    @extend_schema(
        request=None,
        parameters=[
            OpenApiParameter("stream", bool, description="Streamed request, like Claude Code (default true)."),
            OpenApiParameter(
                "retry_betas",
                bool,
                description="Retry without context_management when it is rejected, and switch the key's configs "
                "to CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS=1 if that works (default true).",
            ),
        ],
        responses={201: s.ProbeResultOutputSerializer},
    )
    def post(self, request, key_id):
        """Probe the key now, like Claude Code would, and return the result."""
        from gateways.probes.runner import probe_key

        key = key_with_role(request.user, key_id, Role.ADMIN)[0]
        try:
            body = request.data
        except UnsupportedMediaType:  # a form or text body: none is taken, and the schema documents no 415 here
            options = " and ".join(s.ProbeRequestSerializer.query_parameters)
            raise RuleError(f"This endpoint takes no body ({options} are query parameters); send none.") from None
        # JSON null is no body either (Go's json.Marshal(nil), for one, sends it for a POST without one).
        s.ProbeRequestSerializer(data={} if body is None else body).is_valid(raise_exception=True)
        result = probe_key(
            key,
            trigger="api",
            user=request.user,
            request=request,
            stream=_flag(request, "stream"),
            retry_betas=_flag(request, "retry_betas"),
        )
        return Response(s.ProbeResultOutputSerializer(result).data, status=status.HTTP_201_CREATED)


@extend_schema_view(get=extend_schema(exclude=True))
class MyConfigDownloadWithSlash(MyConfigDownload):
    """The same download with a trailing slash; documented once, without it."""


class ConnectionList(generics.ListAPIView):
    """One row per developer x gateway x key; filters team, gateway, user, state; sort; `?export=csv`."""

    serializer_class = s.ConnectionSerializer
    content_negotiation_class = ExportNegotiation  # `Accept: text/csv` gets the CSV, as the schema says

    def get_queryset(self):
        return connections_for(self.request.user, ConnectionFilters.from_query(self.request.query_params))

    @extend_schema(
        parameters=[OpenApiParameter(n, str) for n in ("team", "gateway", "state", "sort")]
        + [
            OpenApiParameter(
                "user",
                str,
                description="One developer's rows: their whole user name (not part of it); longer than a user "
                "name can be is a 400.",
            ),
            OpenApiParameter("export", str, enum=["csv"], description="Download every match as a file."),
        ],
        responses=list_or_export(
            s.ConnectionSerializer, {"text/csv": "?export=csv: a header row, then one row per connection."}
        ),
    )
    def get(self, request, *args, **kwargs):
        export = request.query_params.get("export")
        if export == "csv":
            return connections_csv(self.get_queryset())
        if export is not None:  # as the audit list: a format asked for and not given is a refusal, not JSON
            raise RuleError(f"export must be csv, not {export!r}.", field="export")
        return super().get(request, *args, **kwargs)

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset()) or []  # KeysetPagination always answers a page
        return self.get_paginated_response(self.get_serializer(list(connection_rows(page)), many=True).data)


class MyConfigDevices(APIView):
    @extend_schema(
        request=s.DeviceInputSerializer,
        responses={
            201: s.DeviceCreatedSerializer,
            404: OpenApiResponse(REFUSAL, description="You have no configuration with that id (any more)."),
            410: DOWNLOAD_RESPONSES[410],
        },
    )
    @sensitive_variables("code", "url", "answer")  # the one-time install code, and the link and answer that hold it
    def post(self, request, assignment_id):
        """Make a device for one of your configurations: a one-time install link (15 minutes) and its command."""
        assignment = my_assignment(request.user, assignment_id)
        if assignment is None:
            raise NotFound("You have no configuration with that id. GET /api/v1/me/configs/ lists yours.")
        data = s.DeviceInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            device, code = devices.create_device(
                assignment=assignment, actor=request.user, request=request, **data.validated_data
            )
        except devices.DeviceRefused as exc:
            # The statuses of this configuration's download: taken back meanwhile is 404, a key that yields
            # no configuration (revoked, disabled, expired) 410; the sentence is the device's, which says why.
            gone = exc.reason != "unassigned"
            return Response({"detail": str(exc)}, status=status.HTTP_410_GONE if gone else status.HTTP_404_NOT_FOUND)
        url = devices.install_url(request, code)
        answer = {
            "id": device.pk,
            "name": device.name,
            "platform": device.platform,
            "install_url": url,
            "install_command": devices.install_command(url, device.platform),
            "expires_at": device.install_expires_at,
        }
        response = Response(s.DeviceCreatedSerializer(answer).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"  # the link installs the device once: no cache may keep it
        return response


class DeviceList(generics.ListAPIView):
    """Your devices; with `?team=`, that team's devices (its admins and auditors)."""

    serializer_class = s.DeviceOutputSerializer

    def get_queryset(self):
        slug = self.request.query_params.get("team")
        if not slug:
            return my_devices(self.request.user)
        team, _ = team_with_role(
            self.request.user,
            slug,
            Role.ADMIN,
            Role.AUDITOR,
            denied="Only the team's admins and auditors list its devices.",
        )
        return team_devices(team)

    @extend_schema(
        parameters=[OpenApiParameter("team", str, description="A team's slug: its devices, not yours.")],
        responses={
            200: s.DeviceOutputSerializer,
            403: refusal(
                403,
                "With ?team=, a team you are not an admin or auditor of; or a session that still owes its second "
                "factor.",
            ),
            404: refusal(404, "With ?team=, no team of yours has that slug."),
        },
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class DeviceDetail(APIView):
    @extend_schema(responses={204: OpenApiResponse(description="Removed: its next key fetch is refused.")})
    def delete(self, request, device_id):
        """Remove a device at once (its owner, or an admin of its team)."""
        device = device_for_removal(request.user, device_id)
        devices.remove_device(device=device, actor=request.user, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


# The two doors a device uses. Plain views: they answer text, not JSON, and the key fetch is on
# every developer's path to the gateway, so it skips what DRF adds (see README, "Live keys").
def _text(body: str, status_code: int, content_type: str = "text/plain") -> HttpResponse:
    response = HttpResponse(body + ("" if body.endswith("\n") else "\n"), status=status_code)
    response["Content-Type"] = f"{content_type}; charset=utf-8"
    response["Cache-Control"] = "no-store"
    if status_code == 401:
        response["WWW-Authenticate"] = 'Bearer realm="device key"'
    return response


def _get_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Refuse any method but GET (HEAD too: a HEAD at the install link would use it up) with a sentence.

    Django's require_GET answers an empty text/html 405, and a write without a CSRF cookie, as curl
    sends it, would get the CSRF page first; these doors change nothing on anything but a GET.
    """

    @functools.wraps(view)
    def get_only(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method != "GET":
            response = _text(f'Method "{request.method}" not allowed: this address answers GET only.', 405)
            response["Allow"] = "GET"
            return response
        return view(request, *args, **kwargs)

    return csrf_exempt(get_only)


HTTP_BEARER = "Bearer"  # the HTTP authorization scheme, not a gateway's AuthScheme
NO_DEVICE_TOKEN = (
    "Send this device's token as Authorization: Bearer <token>; the helper the install command wrote does."
)
API_TOKEN_HERE = (
    "This is a personal access token; the key endpoint takes a device token, which the install command writes."
)


@sensitive_variables("raw")
def _log_fetch_refused(request: HttpRequest, raw: str, refused: devices.DeviceRefused) -> None:
    """One INFO line per refused fetch, naming the device, its owner, team and key, and why; never the token.

    INFO, and each time rather than once a day like the refusal's audit row: the view cannot tell which fetch
    wrote that row without reading the device before every fetch, the path every developer's helper takes every
    few minutes. A refused fetch already earns Django's WARNING line ("Forbidden: /api/v1/device/key") and an
    access-log line; this one says whose device it is and why, and LOG_LEVEL=WARNING leaves it out.
    """
    if not logger.isEnabledFor(logging.INFO):  # then not even the read of the names
        return
    where = client_ip(request) or "an unknown address"
    lookup_id = token_lookup(raw, TokenScope.KEY_FETCH)
    device = None
    if refused.reason != "unknown" and lookup_id:  # the token matched this device: its names may be told
        # The refusal is answered whatever happens here: a database gone since the fetch leaves the line unnamed.
        with contextlib.suppress(OperationalError, InterfaceError):
            device = (
                Device.objects.filter(token_lookup_id=lookup_id)
                .values("name", "user__username", "key__team__slug", "key__label")
                .first()
            )
    if device is None:
        logger.info("Key fetch from %s refused (%s): %s", where, refused.reason, refused)
        return
    logger.info(
        "Key fetch refused for device %r of %s (team %s, key %r) from %s (%s): %s",
        device["name"],
        device["user__username"],
        device["key__team__slug"],
        device["key__label"],
        where,
        refused.reason,
        refused,
    )


@csp_exempt()  # plain text, never a page: no policy to build on every developer's fetch
@_get_only
@sensitive_variables("raw", "secret")
def device_key(request: HttpRequest) -> HttpResponse:
    """GET /api/v1/device/key: the device token in, the key's plaintext out (text/plain, no-store)."""
    scheme, _, raw = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    raw = raw.strip()
    if scheme.casefold() != HTTP_BEARER.casefold() or not raw:
        return _text(NO_DEVICE_TOKEN, 401)
    if token_scope(raw) == TokenScope.API:
        return _text(API_TOKEN_HERE, 401)
    try:
        secret = devices.fetch_key(raw_token=raw, request=request)
    except devices.DeviceRefused as exc:
        _log_fetch_refused(request, raw, exc)
        return _text(str(exc), exc.status)
    except (OperationalError, InterfaceError) as exc:
        # The helper prints a plain-text refusal's first line to the developer: an outage, not a refused key.
        logger.error(
            "A device's key fetch could not use the database at %s: %s",
            outages.database_place(),
            outages.database_error_line(exc),
        )
        name = devices.portal_name()
        response = _text(
            f"{name[:1].upper()}{name[1:]} cannot reach its database right now; try again in a minute.", 503
        )
        response["Retry-After"] = str(outages.RETRY_AFTER_SECONDS)
        return response
    response = HttpResponse(secret.reveal(), content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


@csp_exempt()  # plain text: the installer is a script, never a page
@_get_only
@sensitive_variables("code", "token")
def device_install(request: HttpRequest, code: str) -> HttpResponse:
    """GET <install_url>: once, the installer for the device's platform, with its new token inside."""
    key_url = devices.key_url(request)
    content_type = "text/plain"

    def render(device, token: str) -> str:
        nonlocal content_type
        setup = live.LiveSetup(
            portal_name=devices.portal_name(),
            key_url=key_url,
            device_name=device.name,
            platform=device.platform,
            config=live.live_config(device.key.gateway, device.key),
            token=token,
        )
        text, content_type = live.render_device_installer(setup)
        return text

    try:
        _, script = devices.install_device(code=code, request=request, render=render)
    except devices.DeviceRefused as exc:
        return _install_refused(request, str(exc), exc.status)
    except UnrepresentableValue as exc:
        return _install_refused(request, str(exc), 422)
    return _text(script, 200, content_type)


def _asks_for_shell_script(request: HttpRequest) -> bool:
    """Whether Accept names text/x-shellscript itself, as only the documented curl command does (*/* does not)."""
    ranges = request.headers.get("Accept", "").split(",")
    return any(part.split(";")[0].strip().lower() == formats.SHELL_SCRIPT for part in ranges)


def _install_refused(request: HttpRequest, sentence: str, status_code: int) -> HttpResponse:
    """A refused install link: its 4xx and sentence, or, for `curl … | sh`, a script that prints it and exits 1.

    `curl -f` drops the body of a 4xx, so `curl -fsSL <url> | sh` showed only "error: 410" and sh,
    given nothing, exited 0. Dropping -f, or --fail-with-body, would hand sh any error page (a
    proxy's 502 HTML) to run, so -f stays and a refusal must come as a 200 for curl to pass it on.
    The 200 goes only to a request that asks for a shell script by name (the documented command
    sends Accept: text/x-shellscript); a browser, a plain `curl` and PowerShell's irm, which
    shows a 4xx body as its error so that iex runs nothing (a script's `exit` would close
    the window), all get the true status. The script says the same sentence, quoted, and fails.
    """
    if _asks_for_shell_script(request):
        response = _text(live.render_install_refusal_sh(sentence), 200, formats.SHELL_SCRIPT)
    else:
        response = _text(sentence, status_code)
    patch_vary_headers(response, ["Accept"])
    return response
