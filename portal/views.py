"""Pages for teams, members, access tokens, the audit trail and sudo mode."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from portal import audit, exports, handover, services
from portal.decorators import staff_required
from portal.errors import RuleError, add_to_form
from portal.forms import MemberForm, SudoForm, TeamForm, TokenForm
from portal.http import AuthenticatedHttpRequest, local_path
from portal.models import AccessToken, Action, AuditEvent, Membership, Role, Team
from portal.pagination import MAX_POSITION, first_rows, page_asked, query_number
from portal.permissions import is_staff, team_with_role
from portal.selectors import teams_with_members
from portal.sudo import (
    SUDO_PASSWORD_FIELD,
    check_password,
    enter_sudo_mode,
    in_sudo_mode,
    pending_action,
    stale_action_sentence,
    sudo_redirect,
)

AUDIT_PER_PAGE = 100
TOKENS_PER_PAGE = 100
NEW_TOKEN = "new-access-token"


@login_required
@sensitive_post_parameters("password", SUDO_PASSWORD_FIELD)
def sudo(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The password prompt; when an action waits for it, the prompt posts that action with the password."""
    next_url = local_path(request, request.GET.get("next") or request.POST.get("next") or "") or reverse("home")
    pending = pending_action(request, request.GET.get("pending", "")) if request.method == "GET" else None
    if pending:
        context = {
            "action": pending["path"],
            "fields": pending["fields"],
            "purpose": pending["purpose"],
            "next": next_url,
            # Back from confirming by SSO: the action needs one click, no password.
            "confirmed": in_sudo_mode(request),
            "pending_url": request.get_full_path(),
        }
        return render(request, "portal/sudo.html", context)
    if request.method == "GET" and request.GET.get("pending"):
        # Back (from SSO, or a page left open) after the action stopped waiting: say so rather than drop it.
        messages.warning(request, stale_action_sentence(request, request.GET["pending"]))
        if in_sudo_mode(request):
            return redirect(next_url)
    form = SudoForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if check_password(request, form.cleaned_data["password"]):
            enter_sudo_mode(request)
            return redirect(next_url)
        form.add_error("password", "That password (or code) is not right.")
    return render(request, "portal/sudo.html", {"form": form, "next": next_url})


@login_required
def team_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    teams = teams_with_members(request.user)
    form = TeamForm() if is_staff(request.user) else None
    return render(request, "portal/team_list.html", {"teams": teams, "form": form})


@login_required
@require_POST
@staff_required("Only staff can create teams.")
def team_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = TeamForm(request.POST)
    if form.is_valid():
        try:
            team = services.create_team(actor=request.user, request=request, **form.cleaned_data)
        except RuleError as exc:
            add_to_form(form, exc)
        else:
            messages.success(request, f"Team {team.name} created. Add its members next.")
            return redirect("team", slug=team.slug)
    teams = Team.objects.visible_to(request.user)
    return render(request, "portal/team_list.html", {"teams": teams, "form": form}, status=400)


@login_required
@require_POST
def member_add(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """Add a member or change a role; a refusal returns to the team page with what was typed and why."""
    team, _ = team_with_role(request.user, slug, Role.ADMIN)
    form = MemberForm(request.POST)
    if form.is_valid():
        try:
            services.add_member(team=team, actor=request.user, request=request, **form.cleaned_data)
        except RuleError as exc:
            add_to_form(form, exc)
        else:
            messages.success(
                request, f"{form.cleaned_data['username']} is now {form.cleaned_data['role']} of {team.name}."
            )
            return redirect("team", slug=team.slug)
    # The team page is gateways' (it lists keys), so the refused form travels there through the session.
    team_page = reverse("team", args=[team.slug])
    handover.keep_refused_form(request, form, page=team_page)
    return redirect(team_page)


@login_required
@require_POST
def member_remove(request: AuthenticatedHttpRequest, slug: str, username: str) -> HttpResponse:
    team, _ = team_with_role(request.user, slug, Role.ADMIN)
    membership = get_object_or_404(
        Membership.objects.select_related("user", "team"), team=team, user__username=username
    )
    try:
        taken_back = services.remove_member(membership=membership, actor=request.user, request=request)
    except RuleError as exc:
        messages.error(request, str(exc))
        return redirect("team", slug=team.slug)
    if membership.user == request.user and not is_staff(request.user):  # the team's page is no longer theirs
        messages.success(request, f"You left {team.name}, and gave back the team's keys assigned to you.")
        return redirect("teams")
    said = f"{username} was removed from {team.name}, with their assignments."
    labels = taken_back.get("keys_taken_back")
    if isinstance(labels, list) and labels:
        # Adding them back brings no assignment back: the admin must know which keys to assign again.
        named = format_html_join(", ", "<bdi>{}</bdi>", ((label,) for label in labels))
        said = format_html("{} Keys taken back: {} (assign them again if this was a mistake).", said, named)
    copies = taken_back.get("static_copies") or []
    if isinstance(copies, list) and copies:
        # As the offboarding page says: the portal took the key back, but a downloaded copy works until rotated.
        links = format_html_join(
            ", ",
            '<a href="{}"><span class="visually-hidden">Rotate </span><bdi>{}</bdi></a>',
            ((reverse("key-rotate", args=[c["id"]]), c["label"]) for c in copies),
        )
        said = format_html("{} A copy they downloaded still works until you rotate the key: rotate {}.", said, links)
    messages.success(request, said)
    return redirect("team", slug=team.slug)


@login_required
def audit_list(request: AuthenticatedHttpRequest) -> HttpResponseBase:
    events = AuditEvent.objects.visible_to(request.user)
    filter_error = ""
    try:
        events = audit.filter_events(events, request.GET)
    except RuleError as exc:
        filter_error = str(exc)
        events = events.none()
    export = request.GET.get("export")
    if export in ("csv", "jsonl") and not filter_error:
        return exports.export_audit_events(events, export)
    before = request.GET.get("before", "")
    before_id = query_number(before, maximum=MAX_POSITION)
    if before and before_id is None:
        messages.error(request, f"before must be an event id, not {before[:40]!r}; showing the newest events.")
    ordering = audit.ordering_for(request.GET)
    page = audit.before_event(events, ordering, before_id) if before_id else events
    rows = first_rows(page.order_by(*ordering), AUDIT_PER_PAGE + 1, ids_first=True)
    has_more = len(rows) > AUDIT_PER_PAGE
    rows = rows[:AUDIT_PER_PAGE]
    query = request.GET.copy()
    for name in ("before", "export"):  # the links add their own
        query.pop(name, None)
    context = {
        "events": rows,
        "rows": [audit.audit_row(event) for event in rows],
        "next_before": rows[-1].id if has_more else None,
        "query": query.urlencode(),
        "actions": Action.choices,
        "teams": Team.objects.visible_to(request.user),
        "filter_error": filter_error,
    }
    return render(request, "portal/audit_list.html", context, status=400 if filter_error else 200)


@login_required
@never_cache  # a new token is shown once, on this page
def token_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The user's personal access tokens, for the API and `curl ... | sh`; a new one is shown once."""
    # A token acts without sudo mode on the API, so making one needs the password like rotating a key.
    if request.method == "POST" and (needs_password := sudo_redirect(request)):
        return needs_password
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        days = form.cleaned_data["days"] or settings.ACCESS_TOKEN_DEFAULT_DAYS
        expires_at = timezone.now() + timedelta(days=days)
        _, new_token = services.issue_token(
            user=request.user, name=form.cleaned_data["name"], expires_at=expires_at, request=request
        )
        # Shown by the GET this redirects to, so a reload of that page cannot make a second token.
        handover.keep_shown_once(request, NEW_TOKEN, new_token, secrets=[new_token])
        return redirect("tokens")
    new_token = handover.take_shown_once(request, NEW_TOKEN) if request.method == "GET" else None
    # Revoked and expired tokens stay listed (what was made, and when): newest first, a page at a time.
    tokens = AccessToken.objects.filter(user=request.user).order_by("-created_at", "-pk")
    page, first_page = page_asked(request, tokens, TOKENS_PER_PAGE)
    context = {
        "tokens": page.rows,
        "first_page": first_page,
        "next_cursor": page.next_cursor,
        "form": form,
        "new_token": new_token,
    }
    return render(request, "portal/tokens.html", context)


@login_required
@require_POST
def token_revoke(request: AuthenticatedHttpRequest, token_id: int) -> HttpResponse:
    """Revoke one of one's tokens, back on the page of the list it was revoked from (its `next`, as Remove a device)."""
    token = get_object_or_404(AccessToken, pk=token_id, user=request.user)
    services.revoke_token(token=token, actor=request.user, request=request)
    messages.success(request, f"Token {token.name or token.lookup_id} revoked.")
    return redirect(local_path(request, request.POST.get("next", "")) or reverse("tokens"))
