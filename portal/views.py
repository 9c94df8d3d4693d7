"""Pages for teams, members, the audit trail and connections."""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from gateways.models import Gateway
from portal import audit, exports, services, two_factor
from portal.api.views import CONNECTION_COLUMNS, export_events
from portal.connections import STATES, ConnectionFilters, FilterError, connection_rows, connections_for
from portal.forms import MemberForm, SudoForm, TeamForm, TokenForm
from portal.models import AccessToken, Action, AuditEvent, Membership, Role, Team
from portal.permissions import team_with_role

SUDO_SESSION_KEY = "sudo_until"
CONNECTIONS_PER_PAGE = 100
AUDIT_PER_PAGE = 100


def sudo_redirect(request: HttpRequest) -> HttpResponse | None:
    """Ask for the password again before a sensitive action, at most every SUDO_MODE_SECONDS.

    Call it after the permission check, so nobody is asked for a password to learn they may not act.
    """
    if request.session.get(SUDO_SESSION_KEY, 0) > time.time():
        return None
    # A POST cannot be replayed after the password prompt: return to the page it came from.
    next_url = request.get_full_path() if request.method == "GET" else request.POST.get("next", reverse("home"))
    messages.info(request, "Confirm your password first; then repeat the action.")
    return redirect(f"{reverse('sudo')}?{urlencode({'next': next_url})}")


@login_required
@sensitive_post_parameters("password")
def sudo(request: HttpRequest) -> HttpResponse:
    next_url = request.GET.get("next") or request.POST.get("next") or reverse("home")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = reverse("home")
    form = SudoForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        secret = form.cleaned_data["password"]
        # A code from the authenticator app confirms it is you as well as the password (and SSO accounts have none).
        if two_factor.check_totp(request.user, secret) is not None:
            user = request.user
        else:
            user = authenticate(request, username=request.user.get_username(), password=secret)
        if user is not None and user.pk == request.user.pk:
            request.session[SUDO_SESSION_KEY] = time.time() + settings.SUDO_MODE_SECONDS
            return redirect(next_url)
        form.add_error("password", "That password (or code) is not right.")
    return render(request, "portal/sudo.html", {"form": form, "next": next_url})


@login_required
def team_list(request: HttpRequest) -> HttpResponse:
    teams = Team.objects.visible_to(request.user).prefetch_related(
        Prefetch("memberships", queryset=Membership.objects.select_related("user"))
    )
    form = TeamForm() if request.user.is_staff else None
    return render(request, "portal/team_list.html", {"teams": teams, "form": form})


@login_required
@require_POST
def team_create(request: HttpRequest) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied("Only staff can create teams.")
    form = TeamForm(request.POST)
    if form.is_valid():
        try:
            team = services.create_team(actor=request.user, request=request, **form.cleaned_data)
        except services.ServiceError as exc:
            form.add_error("slug", str(exc))
        else:
            messages.success(request, f"Team {team.name} created. Add its members next.")
            return redirect("team", slug=team.slug)
    teams = Team.objects.visible_to(request.user)
    return render(request, "portal/team_list.html", {"teams": teams, "form": form}, status=400)


@login_required
def team_detail(request: HttpRequest, slug: str) -> HttpResponse:
    team, role = team_with_role(request.user, slug)
    overseer = role in (Role.ADMIN, Role.AUDITOR)
    keys = (
        team.keys.select_related("gateway").prefetch_related("assignments__user").order_by("label") if overseer else []
    )
    context = {
        "team": team,
        "role": role,
        "is_admin": role == Role.ADMIN,
        "memberships": team.memberships.select_related("user"),
        "keys": keys,
        "failing": [k for k in keys if k.last_probe_verdict not in ("", "ok")],
        "member_form": MemberForm(),
        "roles": Role.choices,
        "gateways": Gateway.objects.all(),
    }
    return render(request, "portal/team_detail.html", context)


@login_required
@require_POST
def member_add(request: HttpRequest, slug: str) -> HttpResponse:
    team, _ = team_with_role(request.user, slug, Role.ADMIN)
    form = MemberForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a user name and a role.")
    else:
        try:
            services.add_member(team=team, actor=request.user, request=request, **form.cleaned_data)
            messages.success(
                request, f"{form.cleaned_data['username']} is now {form.cleaned_data['role']} of {team.name}."
            )
        except services.ServiceError as exc:
            messages.error(request, str(exc))
    return redirect("team", slug=team.slug)


@login_required
@require_POST
def member_remove(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    team, _ = team_with_role(request.user, slug, Role.ADMIN)
    membership = get_object_or_404(
        Membership.objects.select_related("user", "team"), team=team, user__username=username
    )
    try:
        services.remove_member(membership=membership, actor=request.user, request=request)
        messages.success(request, f"{username} was removed from {team.name}, with their assignments.")
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    return redirect("team", slug=team.slug)


@login_required
def audit_list(request: HttpRequest) -> HttpResponse:
    events = AuditEvent.objects.visible_to(request.user)
    try:
        events = audit.filter_events(events, request.GET)
    except audit.AuditFilterError as exc:
        messages.error(request, str(exc))
        events = events.none()
    export = request.GET.get("export")
    if export in ("csv", "jsonl"):
        return export_events(events, export)
    before = request.GET.get("before", "")
    page = events.filter(id__lt=int(before)) if before.isdigit() else events
    rows = list(page.order_by("-id")[: AUDIT_PER_PAGE + 1])
    has_more = len(rows) > AUDIT_PER_PAGE
    rows = rows[:AUDIT_PER_PAGE]
    query = request.GET.copy()
    query.pop("before", None)
    context = {
        "events": rows,
        "next_before": rows[-1].id if has_more else None,
        "query": query.urlencode(),
        "actions": Action.choices,
        "teams": Team.objects.visible_to(request.user),
        "gateways": Gateway.objects.all(),
    }
    return render(request, "portal/audit_list.html", context)


@login_required
def connection_list(request: HttpRequest) -> HttpResponse:
    try:
        filters = ConnectionFilters.from_query(request.GET)
    except FilterError as exc:
        messages.error(request, str(exc))
        filters = ConnectionFilters()
    rows = connections_for(request.user, filters)
    if request.GET.get("export") == "csv":
        return exports.csv_response(connection_rows(rows), CONNECTION_COLUMNS, "connections.csv")
    page = int(request.GET["page"]) if request.GET.get("page", "").isdigit() else 1
    start = (max(page, 1) - 1) * CONNECTIONS_PER_PAGE
    chunk = list(rows[start : start + CONNECTIONS_PER_PAGE + 1])
    query = request.GET.copy()
    query.pop("sort", None)
    query.pop("page", None)
    context = {
        "rows": list(connection_rows(chunk[:CONNECTIONS_PER_PAGE])),
        "page": page,
        "has_next": len(chunk) > CONNECTIONS_PER_PAGE,
        "filters": filters,
        "states": STATES,
        "teams": Team.objects.visible_to(request.user),
        "gateways": Gateway.objects.all(),
        "query": query.urlencode(),
    }
    return render(request, "portal/connection_list.html", context)


@login_required
@never_cache  # a new token is shown once, on this page
def token_list(request: HttpRequest) -> HttpResponse:
    """The user's personal access tokens, for the API and `curl ... | sh`; a new one is shown once."""
    form = TokenForm(request.POST or None)
    new_token = None
    if request.method == "POST" and form.is_valid():
        days = form.cleaned_data["days"]
        expires_at = timezone.now() + timedelta(days=days) if days else None
        _, new_token = services.issue_token(
            user=request.user, name=form.cleaned_data["name"], expires_at=expires_at, request=request
        )
        form = TokenForm()
    tokens = AccessToken.objects.filter(user=request.user).order_by("-created_at")
    return render(request, "portal/tokens.html", {"tokens": tokens, "form": form, "new_token": new_token})


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(AccessToken, pk=token_id, user=request.user)
    services.revoke_token(token=token, actor=request.user, request=request)
    messages.success(request, f"Token {token.name or token.lookup_id} revoked.")
    return redirect("tokens")


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def not_found(request: HttpRequest, exception=None) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(
            {"detail": f"There is nothing at {request.path}. The API is described at /api/v1/schema/."}, status=404
        )
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(
            {"detail": "The portal failed on its side; the error is logged. Try again later."}, status=500
        )
    return render(request, "500.html", status=500)
