"""Pages: a team's channels (a section of the team page, posted here) and the Deliveries list."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from alerts import services
from alerts.forms import ChannelForm
from alerts.models import Channel, DeliveryStatus
from alerts.selectors import deliveries_for, delivery_teams
from portal import handover
from portal.errors import RuleError, add_to_form
from portal.models import Role, Team
from portal.pagination import MAX_POSITION, query_number
from portal.permissions import require_role, team_with_role

DELIVERIES_PER_PAGE = 100
ADMINS_ONLY = "Only the team's admins can change its notification channels."


def _team_page(team: Team) -> str:
    return reverse("team", args=[team.slug]) + "#notifications"


def _channel(request: HttpRequest, channel_id) -> Channel:
    channel = Channel.objects.visible_to(request.user).select_related("team").filter(pk=channel_id).first()
    if channel is None:
        raise Http404("No notification channel with that id is visible to you.")
    require_role(request.user, channel.team, Role.ADMIN, denied=ADMINS_ONLY)
    return channel


@login_required
@require_POST
@sensitive_post_parameters("secret")
def channel_add(request: HttpRequest, slug: str) -> HttpResponse:
    """Add a channel; a refusal returns to the team page with what was typed (never the secret) and why."""
    team, _ = team_with_role(request.user, slug, Role.ADMIN, denied=ADMINS_ONLY)
    form = ChannelForm(request.POST)
    if form.is_valid():
        try:
            channel = services.create_channel(team=team, actor=request.user, request=request, **form.cleaned_data)
        except RuleError as exc:
            add_to_form(form, exc)
        else:
            messages.success(request, f"Channel added: {channel}. Send a test to see it arrive.")
            for notice in services.channel_notices(channel):
                messages.warning(request, notice)
            return redirect(_team_page(team))
    if form.data.get("secret") and "secret" not in form.errors:
        form.add_error("secret", "Type the signing secret again: a refused form never keeps it.")
    handover.keep_refused_form(request, form, page=reverse("team", args=[team.slug]), leave_out=("secret",))
    return redirect(_team_page(team))


@login_required
@require_POST
def channel_remove(request: HttpRequest, channel_id) -> HttpResponse:
    channel = _channel(request, channel_id)
    services.delete_channel(channel=channel, actor=request.user, request=request)
    messages.success(request, f"Channel removed: {channel}.")
    return redirect(_team_page(channel.team))


@login_required
@require_POST
def channel_test(request: HttpRequest, channel_id) -> HttpResponse:
    channel = _channel(request, channel_id)
    services.send_test(channel=channel, actor=request.user)
    messages.success(request, f"A test message to {channel} waits for the next `manage.py notify` run.")
    return redirect(_team_page(channel.team))


@login_required
def delivery_list(request: HttpRequest) -> HttpResponse:
    """What was sent where, what failed and why, attempt by attempt (team admins and staff)."""
    team_slug = request.GET.get("team", "")
    rows = deliveries_for(request.user, team_slug=team_slug)
    if request.GET.get("status") in DeliveryStatus.values:
        rows = rows.filter(status=request.GET["status"])
    before = request.GET.get("before", "")
    before_id = query_number(before, maximum=MAX_POSITION)
    if before and before_id is None:
        messages.error(request, f"before must be a delivery id, not {before[:40]!r}; showing the newest.")
    if before_id:
        rows = rows.filter(id__lt=before_id)
    page = list(rows[: DELIVERIES_PER_PAGE + 1])
    query = request.GET.copy()
    query.pop("before", None)
    context = {
        "deliveries": page[:DELIVERIES_PER_PAGE],
        "next_before": page[DELIVERIES_PER_PAGE - 1].id if len(page) > DELIVERIES_PER_PAGE else None,
        "query": query.urlencode(),
        "teams": delivery_teams(request.user),
        "statuses": DeliveryStatus.choices,
    }
    return render(request, "alerts/delivery_list.html", context)
