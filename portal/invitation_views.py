"""Pages for inviting people to a team by e-mail, and for the invitee who opens the link."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from portal import email_confirmation, handover, invitations
from portal.account_forms import AccountCreationForm, InvitationForm
from portal.errors import RuleError
from portal.invitations import INVITATION_SESSION_KEY
from portal.models import Invitation, Role, Team
from portal.oidc import invitation_sign_in_url
from portal.permissions import team_with_role

NEW_INVITATION = "new-invitation"
UNKNOWN_LINK = (
    "This invitation link is not valid: check that it was copied whole, or ask the team's admin for a new one."
)


def _admin_team(request: HttpRequest, slug: str) -> Team:
    team, _ = team_with_role(request.user, slug, Role.ADMIN, denied="Only the team's admins can invite people.")
    return team


@login_required
@never_cache  # a new invitation's link is shown once, on this page
def team_invitations(request: HttpRequest, slug: str) -> HttpResponse:
    """Pending invitations of a team, and the form for a new one (its link is shown once, and mailed if set up)."""
    team = _admin_team(request, slug)
    form = InvitationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            invitation, raw = invitations.create_invitation(
                team=team, actor=request.user, request=request, **form.cleaned_data
            )
        except RuleError as exc:
            form.add_error("email" if exc.field == "email" else None, str(exc))
        else:
            link = invitations.accept_url(request, raw)
            emailed = invitations.send_invitation(invitation, link)
            # With mail set up the admin expects it went: a failure is said (distinct from mail being off).
            mail_failed = settings.EMAIL_CONFIGURED and not emailed
            # Shown by the GET this redirects to, once: a reload does not invite again (nor refuse a second time).
            shown = {"id": invitation.pk, "link": link, "emailed": emailed, "mail_failed": mail_failed}
            handover.keep_shown_once(request, NEW_INVITATION, shown, secrets=[raw])
            return redirect("team-invitations", slug=team.slug)
    made = handover.take_shown_once(request, NEW_INVITATION) if request.method == "GET" else None
    if made and (shown_invitation := Invitation.objects.filter(pk=made["id"], team=team).first()):
        context = {"team": team, "invitation": shown_invitation, "link": made["link"], "emailed": made["emailed"]}
        context["mail_failed"] = made.get("mail_failed", False)
        return render(request, "portal/invitation_created.html", context)
    pending = Invitation.objects.usable().filter(team=team).select_related("created_by")
    return render(request, "portal/team_invitations.html", {"team": team, "form": form, "pending": pending})


@login_required
@require_POST
def invitation_withdraw(request: HttpRequest, slug: str, invitation_id: int) -> HttpResponse:
    team = _admin_team(request, slug)
    invitation = get_object_or_404(Invitation, pk=invitation_id, team=team)
    try:
        invitations.withdraw_invitation(invitation=invitation, actor=request.user, request=request)
        messages.success(request, f"The invitation for {invitation.email} is withdrawn; its link no longer works.")
    except RuleError as exc:
        messages.error(request, str(exc))
    return redirect("team-invitations", slug=team.slug)


def _refused(request: HttpRequest, message: str, status: int) -> HttpResponse:
    return render(request, "portal/invitation_refused.html", {"message": message}, status=status)


@never_cache
def invitation_open(request: HttpRequest, token: str) -> HttpResponse:
    """The link from the mail: keep its token in the session and move on to an address without it."""
    invitation = Invitation.objects.find(token)
    if invitation is None:
        return _refused(request, UNKNOWN_LINK, 404)
    if refusal := invitation.refusal():
        return _refused(request, refusal, 410)
    request.session[INVITATION_SESSION_KEY] = token
    return redirect("invitation-accept")


@never_cache
@sensitive_post_parameters("password1", "password2")
def invitation_accept(request: HttpRequest) -> HttpResponse:
    """Join the team: with the account you are signed in with, a new account, or a sign-in with SSO."""
    token = request.session.get(INVITATION_SESSION_KEY, "")
    invitation = Invitation.objects.find(token) if token else None
    if invitation is None:
        return _refused(request, "Open the link from your invitation again: this browser has none in hand.", 404)
    if refusal := invitation.refusal():
        request.session.pop(INVITATION_SESSION_KEY, None)
        return _refused(request, refusal, 410)
    passwords_allowed = not settings.OIDC_ONLY
    form = AccountCreationForm(request.POST if request.POST.get("action") == "create" else None)
    if request.method == "POST":
        try:
            if request.POST.get("action") == "join" and request.user.is_authenticated:
                try:
                    invitations.accept_invitation(invitation=invitation, user=request.user, request=request)
                except RuleError as exc:
                    # Used, withdrawn or run out since the page was shown, or sent before they left the team.
                    return _refused(request, str(exc), 409)
                return _joined(request, invitation)
            creating = request.POST.get("action") == "create" and not request.user.is_authenticated
            if creating and passwords_allowed and form.is_valid():
                with transaction.atomic():
                    user = invitations.create_account(
                        username=form.cleaned_data["username"],
                        email=invitation.email,
                        password=form.cleaned_data["password1"],
                        via="invitation",
                        request=request,
                        email_confirmed=False,  # holding the link does not show the mailbox is yours
                    )
                    invitations.accept_invitation(invitation=invitation, user=user, request=request)
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                _ask_to_confirm(request, user)
                return _joined(request, invitation)
        except RuleError as exc:
            form.add_error("username" if exc.field == "username" else None, str(exc))
    context = {
        "invitation": invitation,
        "form": form,
        "passwords_allowed": passwords_allowed,
        # A sign-in started from this page, and only from it, joins this invitation (portal.oidc).
        "sso_url": invitation_sign_in_url(request, next_url=reverse("team", args=[invitation.team.slug])),
    }
    return render(request, "portal/invitation_accept.html", context)


def _ask_to_confirm(request: HttpRequest, user) -> None:
    """Mail the new account's address its confirmation link, or say how it gets confirmed without mail.

    Only single sign-on needs the address confirmed: without it, nothing is sent (the account page offers the link).
    """
    if not settings.OIDC_ISSUER:
        return
    try:
        email_confirmation.send_confirmation(user=user, request=request)
    except RuleError as exc:
        messages.info(request, f"Your address is not confirmed yet, so SSO cannot sign in to this account. {exc}")
    else:
        messages.info(request, f"A link went to {user.email}: open it to confirm your address (SSO needs it).")


def _joined(request: HttpRequest, invitation: Invitation) -> HttpResponse:
    request.session.pop(INVITATION_SESSION_KEY, None)
    messages.success(request, f"Welcome to {invitation.team.name}.")
    return redirect("team", slug=invitation.team.slug)
