"""The accounts panel of the team page (invitations, SSO groups), so the team view itself needs no change."""

from __future__ import annotations

from django import template
from django.conf import settings

from portal.account_forms import TeamGroupsForm
from portal.models import Invitation, Role

register = template.Library()


@register.inclusion_tag("portal/team_accounts.html", takes_context=True)
def team_accounts(context) -> dict:
    team, role = context["team"], context.get("role")
    is_admin = role == Role.ADMIN
    return {
        "team": team,
        "is_admin": is_admin,
        "pending": Invitation.objects.usable().filter(team=team).count() if is_admin else 0,
        "groups_form": TeamGroupsForm(
            initial={"sso_member_group": team.sso_member_group, "sso_admin_group": team.sso_admin_group}
        ),
        "sso_enabled": bool(settings.OIDC_ISSUER),
        "csrf_token": context.get("csrf_token"),
    }
