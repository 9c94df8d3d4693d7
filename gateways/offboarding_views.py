"""Pages to offboard a member from a team (its admins) or an account from the portal (staff)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from gateways import offboarding
from gateways.models import GatewayKey
from portal.errors import RuleError
from portal.models import Membership, Role, Team
from portal.permissions import team_with_role


def _page(request: HttpRequest, plan: offboarding.Offboarding, back: str) -> HttpResponse:
    """GET shows what offboarding takes away; POST does it and shows the keys to rotate."""
    done = False
    if request.method == "POST":
        try:
            offboarding.offboard(plan, actor=request.user, request=request)
            done = True
        except RuleError as exc:
            messages.error(request, str(exc))
    rotatable = set(
        GatewayKey.objects.filter(team__in=Team.objects.administered_by(request.user)).values_list("pk", flat=True)
    )
    copies = [(a, a.key_id in rotatable) for a in plan.static_copies]
    context = {"plan": plan, "subject": plan.user, "done": done, "copies": copies, "back": back}
    return render(request, "gateways/offboard.html", context)


@login_required
def member_offboard(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    team, _ = team_with_role(request.user, slug, Role.ADMIN, denied="Only the team's admins can offboard its members.")
    membership = get_object_or_404(Membership.objects.select_related("user"), team=team, user__username=username)
    return _page(request, offboarding.for_member(team, membership.user), back=reverse("team", args=[team.slug]))


@login_required
def user_offboard(request: HttpRequest, username: str) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied("Only staff can offboard an account from the portal.")
    user = get_object_or_404(get_user_model(), username=username)
    if not user.is_active and request.method == "GET":
        messages.info(request, f"{username} is deactivated already; offboarding again takes back anything left.")
    return _page(request, offboarding.for_account(user), back=reverse("users"))
