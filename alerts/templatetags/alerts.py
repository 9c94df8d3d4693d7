"""The team page's Notifications section, rendered by alerts so gateways need not know of channels."""

from __future__ import annotations

from django import template

from alerts.forms import ChannelForm
from alerts.models import Channel
from portal import handover
from portal.models import Role

register = template.Library()


def _channel_form(context, team) -> ChannelForm:
    """A new form, or the one just refused (alerts.views.channel_add) with what was typed and why."""
    request = context.get("request")
    refused = request and handover.take_refused_form(
        request, ChannelForm, page=request.path, make=lambda data: ChannelForm(data, auto_id="channel_%s")
    )
    return refused or ChannelForm(auto_id="channel_%s")


@register.inclusion_tag("alerts/team_channels.html", takes_context=True)
def team_channels(context, team, role: str | None) -> dict:
    """The team's channels for its admins and auditors; the form to add one for its admins."""
    overseer = role in (Role.ADMIN, Role.AUDITOR)
    channels = list(Channel.objects.filter(team=team).select_related("created_by")) if overseer else []
    return {
        "team": team,
        "shown": overseer,
        "is_admin": role == Role.ADMIN,
        "channels": channels,
        "form": _channel_form(context, team) if role == Role.ADMIN else None,
        "csrf_token": context.get("csrf_token"),
    }
