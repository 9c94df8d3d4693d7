"""Pages to offboard a member from a team (its admins) or an account from the portal (staff).

GET shows what offboarding takes away; POST does it and redirects to the same page with `?done=`, which shows
what was taken away, read back from the session. A reload of that result shows it again (the membership
it came from may be gone) and never offboards a second time.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from gateways import offboarding
from gateways.models import GatewayKey
from portal.errors import RuleError
from portal.models import Membership, Role, Team
from portal.permissions import team_with_role

RESULT_SESSION_KEY = "gateways.offboarding_result"


def _summary(plan: offboarding.Offboarding) -> dict:
    """What the page lists, as plain data: the plan before, the result after (kept in the session for reloads)."""
    return {
        "subject": plan.user.get_username(),
        "team": plan.team.name if plan.team else "",
        "deactivates": plan.deactivates,
        "teams": [f"{m.team.name} ({m.role})" for m in plan.memberships],
        "assignments": [
            {"label": a.key.label, "masked": a.key.masked, "team": a.key.team.slug} for a in plan.assignments
        ],
        "tokens": [{"lookup_id": t.lookup_id, "name": t.name} for t in plan.tokens],
        "keeps_tokens": plan.keeps_tokens,
        "leaderless": [{"name": t.name, "slug": t.slug} for t in plan.leaderless],
        "copies": [
            {
                "key_id": str(a.key_id),
                "label": a.key.label,
                "masked": a.key.masked,
                "team": a.key.team.slug,
                "gateway": a.key.gateway.name,
                "last_download_at": a.last_download_at.isoformat() if a.last_download_at else "",
                "last_download_format": a.last_download_format,
            }
            for a in plan.static_copies
        ],
    }


def _nothing_left(plan: offboarding.Offboarding) -> bool:
    return not (plan.memberships or plan.assignments or plan.tokens or (plan.deactivates and plan.user.is_active))


def _render(request: HttpRequest, summary: dict, *, done: bool, back: str) -> HttpResponse:
    key_ids = [c["key_id"] for c in summary["copies"]]
    administered = Team.objects.administered_by(request.user)
    rotatable = {
        str(pk) for pk in GatewayKey.objects.filter(pk__in=key_ids, team__in=administered).values_list("pk", flat=True)
    }
    copies = [
        {
            **c,
            "last_download_at": datetime.fromisoformat(c["last_download_at"]) if c["last_download_at"] else None,
            "can_rotate": c["key_id"] in rotatable,
        }
        for c in summary["copies"]
    ]
    context = {"summary": summary, "done": done, "copies": copies, "back": back}
    return render(request, "gateways/offboard.html", context)


def _result(request: HttpRequest) -> dict | None:
    """The result this page's POST kept, when the address names it (`?done=`)."""
    kept = request.session.get(RESULT_SESSION_KEY)
    done = request.GET.get("done", "")
    if request.method != "GET" or not done or not kept:
        return None
    if kept.get("id") != done or kept.get("path") != request.path:
        return None
    return kept["summary"]


def _page(request: HttpRequest, plan: offboarding.Offboarding, back: str) -> HttpResponse:
    """GET shows what offboarding takes away; POST does it, then redirects to the result."""
    if request.method != "POST":
        return _render(request, _summary(plan), done=False, back=back)
    username = plan.user.get_username()
    if _nothing_left(plan):
        messages.info(request, f"Nothing was done: {username} holds nothing left to take back.")
        return redirect(back)
    try:
        offboarding.offboard(plan, actor=request.user, request=request)
    except RuleError as exc:
        messages.error(request, str(exc))
        return redirect(request.path)
    result_id = secrets.token_urlsafe(8)
    # The plan as carried out (offboard reads it again under lock): what the audit event records.
    request.session[RESULT_SESSION_KEY] = {"id": result_id, "path": request.path, "summary": _summary(plan)}
    return redirect(f"{request.path}?done={result_id}")


@login_required
def member_offboard(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    team, _ = team_with_role(request.user, slug, Role.ADMIN, denied="Only the team's admins can offboard its members.")
    back = reverse("team", args=[team.slug])
    if result := _result(request):
        return _render(request, result, done=True, back=back)
    membership = Membership.objects.select_related("user").filter(team=team, user__username=username).first()
    if membership is None:
        messages.info(request, f"{username} is not a member of {team.name}: there is nothing to offboard.")
        return redirect(back)
    return _page(request, offboarding.for_member(team, membership.user), back=back)


@login_required
def user_offboard(request: HttpRequest, username: str) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied("Only staff can offboard an account from the portal.")
    user = get_object_or_404(get_user_model(), username=username)
    back = reverse("users")
    if result := _result(request):
        return _render(request, result, done=True, back=back)
    plan = offboarding.for_account(user)
    if not user.is_active and request.method == "GET":
        if _nothing_left(plan):
            messages.info(request, f"{username} is offboarded already: nothing is left to take back.")
        else:
            messages.info(request, f"{username} is deactivated already; offboarding again takes back anything left.")
    return _page(request, plan, back=back)
