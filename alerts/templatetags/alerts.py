"""The team page's Notifications section, rendered by alerts so gateways need not know of channels."""

from __future__ import annotations

from django import template

from alerts.forms import ChannelForm
from alerts.models import Channel
from portal.models import Role

register = template.Library()


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
        "form": ChannelForm(auto_id="channel_%s"),
        "csrf_token": context.get("csrf_token"),
    }
