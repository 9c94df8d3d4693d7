"""Pages for one's own account (password, second factor), the staff user list, and a team's SSO groups."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Exists, OuterRef, Prefetch, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import base36_to_int, urlsafe_base64_encode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from portal import audit, email_confirmation, handover, services, two_factor
from portal.account_forms import CodeForm, PortalPasswordChangeForm, PortalPasswordResetForm, TeamGroupsForm
from portal.crypto import remember
from portal.errors import RuleError
from portal.forms import NOTHING_CHANGED
from portal.http import AuthenticatedHttpRequest, local_path, public_url
from portal.models import Action, ExternalIdentity, Membership, Role, UnconfirmedEmail
from portal.permissions import team_with_role
from portal.sudo import sudo_redirect

USERS_PER_PAGE = 100
RECOVERY_CODES = "recovery-codes"
USER_STATES = {"active": {"is_active": True}, "inactive": {"is_active": False}, "all": {}}


def _otp_verified(request: AuthenticatedHttpRequest) -> bool:
    """Whether this session passed a second factor (django_otp's OTPMiddleware adds `is_verified`)."""
    return bool(getattr(request.user, "is_verified", lambda: False)())


def _next_url(request: HttpRequest, default: str = "home") -> str:
    return local_path(request, request.POST.get("next") or request.GET.get("next") or "") or reverse(default)


@login_required
def account(request: AuthenticatedHttpRequest) -> HttpResponse:
    user = request.user
    device = two_factor.totp_device(user)
    context = {
        "has_password": user.has_usable_password(),
        "device": device,
        "recovery_left": StaticToken.objects.filter(device__user=user).count() if device else 0,
        "identities": ExternalIdentity.objects.filter(user=user),
        "memberships": Membership.objects.filter(user=user).select_related("team"),
        "two_factor_required": settings.REQUIRE_2FA_FOR_ADMINS and two_factor.is_admin_anywhere(user),
        "email_unconfirmed": email_confirmation.email_unconfirmed(user),
    }
    return render(request, "portal/account.html", context)


@login_required
@require_POST
def email_confirmation_send(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Mail the account's own address the link that confirms it (see UnconfirmedEmail)."""
    try:
        email_confirmation.send_confirmation(user=request.user, request=request)
    except RuleError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"A link went to {request.user.email}. Open it while signed in as {request.user.get_username()} "
            f"within {settings.INVITATION_DAYS} days to confirm the address.",
        )
    return redirect("account")


@login_required
@never_cache  # the page's address holds the link's token
def email_confirm(request: AuthenticatedHttpRequest, token: str) -> HttpResponse:
    """The mailed link: a button that confirms the address (a mail scanner opening the link confirms nothing)."""
    if refusal := email_confirmation.confirmation_refusal(request.user, token):
        return render(request, "portal/email_confirm.html", {"refusal": refusal}, status=400)
    if request.method == "POST":
        if email_confirmation.confirm_email(user=request.user, actor=request.user, via="mailed link", request=request):
            messages.success(request, f"{request.user.email} is confirmed: you can sign in with SSO now too.")
        else:
            messages.info(request, f"{request.user.email} was confirmed already.")
        return redirect("account")
    context = {"unconfirmed": email_confirmation.email_unconfirmed(request.user)}
    return render(request, "portal/email_confirm.html", context)


@login_required
@never_cache  # the page holds the new authenticator's secret
def two_factor_enrol(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Enrol an authenticator app: scan, type its first code, get the recovery codes (shown once)."""
    replacing = two_factor.has_second_factor(request.user)
    if replacing and (needs_password := sudo_redirect(request)):
        return needs_password
    device = two_factor.start_enrolment(request.user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        codes = two_factor.confirm_enrolment(request=request, device=device, code=form.cleaned_data["code"])
        if codes is not None:
            messages.success(request, "Two-factor authentication is on: sign-ins now ask for a code.")
            return _show_recovery_codes_once(request, codes, _next_url(request))
        form.add_error("code", "That code is not right. Type the newest code your app shows (and check its clock).")
    context = {
        "form": form,
        "qr": two_factor.qr_code_data_uri(device),
        "secret": two_factor.secret_for_typing(device),
        "replacing": replacing,
        "next": _next_url(request),
        "required": two_factor.must_enrol(request.user),
    }
    return render(request, "portal/two_factor_enrol.html", context)


@login_required
@never_cache  # a refused code is not kept in a cache
def two_factor_verify(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The second step of a sign-in: a code from the authenticator, or a recovery code."""
    next_url = _next_url(request)
    if _otp_verified(request) or not two_factor.has_second_factor(request.user):
        return redirect(next_url)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if two_factor.verify_session(request, form.cleaned_data["code"]):
            return redirect(next_url)
        form.add_error("code", "That code is not right, or was used already. Wait for a new code and try again.")
    return render(request, "portal/two_factor_verify.html", {"form": form, "next": next_url})


@login_required
@require_POST
def two_factor_remove(request: AuthenticatedHttpRequest) -> HttpResponse:
    if needs_password := sudo_redirect(request):
        return needs_password
    if two_factor.remove_second_factor(user=request.user, actor=request.user, request=request):
        messages.success(request, "Two-factor authentication is off. Sign-ins ask for your password only.")
    return redirect("account")


def _show_recovery_codes_once(request: AuthenticatedHttpRequest, codes: list[str], next_url: str) -> HttpResponse:
    """Redirect to the codes' page, so a reload of it is a GET and cannot make a second set."""
    handover.keep_shown_once(request, RECOVERY_CODES, {"codes": codes, "next": next_url}, secrets=codes)
    return redirect("recovery-codes")


@login_required
@never_cache
def recovery_codes_renew(request: AuthenticatedHttpRequest) -> HttpResponse:
    """POST makes a new set of recovery codes; the GET it redirects to shows them, once."""
    if request.method != "POST":
        made = handover.take_shown_once(request, RECOVERY_CODES)
        if made is None:
            messages.info(request, "Recovery codes are shown once. If you lost them, make new ones here.")
            return redirect("account")
        return render(request, "portal/recovery_codes.html", made)
    if not two_factor.has_second_factor(request.user):
        messages.error(request, "Enrol an authenticator app first; recovery codes come with it.")
        return redirect("account")
    if needs_password := sudo_redirect(request):
        return needs_password
    codes = two_factor.renew_recovery_codes(request=request)
    messages.success(request, "New recovery codes made; the old ones no longer work.")
    return _show_recovery_codes_once(request, codes, reverse("account"))


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's view in the portal's look; audited. An SSO-only account has no password to change."""

    form_class = PortalPasswordChangeForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated and not request.user.has_usable_password():
            return render(request, "registration/password_change_form.html", {"sso_only": True})
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form):
        with transaction.atomic():  # the new password, and its audit row, or neither
            response = super().form_valid(form)
            audit.record(
                Action.PASSWORD_CHANGED, actor=self.request.user, request=self.request, details={"via": "form"}
            )
        return response


class PasswordResetView(auth_views.PasswordResetView):
    """Reset by e-mail; without mail set up the page says to ask staff for a link instead."""

    form_class = PortalPasswordResetForm
    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"

    def dispatch(self, request, *args, **kwargs):
        if not settings.EMAIL_CONFIGURED:
            return render(request, "registration/password_reset_form.html", {"no_mail": True})
        return super().dispatch(request, *args, **kwargs)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    success_url = reverse_lazy("password_reset_complete")

    def get_user(self, uidb64):
        """Only an active account's: a link mailed before offboarding must not set the deactivated account's password."""
        user = super().get_user(uidb64)
        return user if user is not None and user.is_active else None

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        if not self.validlink and self.kwargs.get("token") == self.reset_url_token:
            context["expired_at"] = self.link_expired_at()
        return context

    def link_expired_at(self) -> datetime | None:
        """When the link opened in this session ran out, if that is all that is wrong with it; else None.

        Its form, opened just before the deadline, may be sent just after: the person should learn that this
        was all. A used, altered or foreign token (or none) gets the page's general sentence, as before.
        """
        token = self.request.session.get(auth_views.INTERNAL_RESET_SESSION_TOKEN)
        if self.user is None or not isinstance(token, str):
            return None
        generator = self.token_generator
        try:
            made = base36_to_int(token.split("-")[0])
        except ValueError:
            return None
        age = (generator._now() - datetime(2001, 1, 1)).total_seconds() - made  # as check_token counts, unrounded
        if made < 0 or int(age) <= settings.PASSWORD_RESET_TIMEOUT:
            return None
        # check_token as at the moment the token was made: genuine and unused, whatever its age.
        as_made = copy.copy(generator)
        as_made._now = lambda: datetime(2001, 1, 1) + timedelta(seconds=made)
        if not as_made.check_token(self.user, token):
            return None
        moment = timezone.now() - timedelta(seconds=age - settings.PASSWORD_RESET_TIMEOUT)
        return moment.replace(microsecond=0) + timedelta(seconds=round(moment.microsecond / 1e6))

    def form_valid(self, form):
        # All or nothing: a process that dies half-way leaves the old password and the link still good, never a
        # new password with the invitation link's holder still in the account. Nothing here mails or calls out.
        with transaction.atomic():
            response = super().form_valid(form)
            audit.record(Action.PASSWORD_CHANGED, actor=form.user, request=self.request, details={"via": "reset link"})
            # The link went to the account's address, or staff handed it over: either way the address is vouched
            # for, and an account made from an invitation link is its owner's now, without what the link's holder
            # set up.
            reclaimed = email_confirmation.reclaim_by_reset(user=form.user, request=self.request)
        if reclaimed is not None:
            messages.info(
                self.request,
                "Your address is confirmed. Access tokens, devices and the second factor set up in this account "
                "before the reset were removed: whoever used your invitation link may have made them.",
            )
        return response


def _staff_only(request: HttpRequest) -> None:
    if not request.user.is_staff:
        raise PermissionDenied("Only staff can see and manage every account.")


@login_required
def user_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Every account for staff: search, active or not, last sign-in, teams, second factor, SSO."""
    _staff_only(request)
    query = request.GET.get("q", "").strip()[:150]
    state = request.GET.get("state", "active")
    if state not in USER_STATES:
        messages.error(request, f"state must be one of {', '.join(USER_STATES)}; showing active accounts.")
        state = "active"
    users = get_user_model().objects.filter(**USER_STATES[state]).order_by("username")
    if query:
        users = users.filter(
            Q(username__ucontains=query)  # any case, in every alphabet (portal.ordering)
            | Q(email__ucontains=query)
            | Q(first_name__ucontains=query)
            | Q(last_name__ucontains=query)
        )
    users = users.annotate(
        has_2fa=Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)),
        has_sso=Exists(ExternalIdentity.objects.filter(user=OuterRef("pk"))),
        email_unconfirmed=Exists(UnconfirmedEmail.objects.standing().filter(user=OuterRef("pk"))),
    ).prefetch_related(Prefetch("memberships", queryset=Membership.objects.select_related("team")))
    page = Paginator(users, USERS_PER_PAGE).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    context = {"page": page, "query": query, "state": state, "states": list(USER_STATES), "params": params.urlencode()}
    return render(request, "portal/user_list.html", context)


# The handover purpose of a reset link staff made: shown once, on the page the POST redirects to.
RESET_LINK = "reset-link"


@login_required
@require_http_methods(["GET", "POST"])
@never_cache  # the link is shown once
def user_reset_link(request: AuthenticatedHttpRequest, username: str) -> HttpResponse:
    """A password-reset link for staff to hand over when mail is not set up (sudo mode: it opens the account).

    The POST makes it and redirects (303) to a GET of the same address, which shows it once: a reload shows
    nothing more and makes no second link.
    """
    _staff_only(request)
    user = get_object_or_404(get_user_model(), username=username)
    if request.method == "GET":
        shown = handover.take_shown_once(request, RESET_LINK)
        if not shown or shown["username"] != username:
            messages.info(
                request,
                f"A reset link is shown once, when it is made: make another for {username} below if it was lost "
                "(the one before stays good until it is used or runs out).",
            )
            return redirect("users")
        context = {"subject": user, "link": shown["link"], "hours": shown["hours"]}  # handed to someone else
        return render(request, "portal/reset_link.html", context)
    if needs_password := sudo_redirect(request):
        return needs_password
    if not user.is_active:
        messages.error(request, f"{username} is deactivated; a reset link would not let them in.")
        return redirect("users")
    token = default_token_generator.make_token(user)
    remember(token)
    path = reverse(
        "password_reset_confirm", kwargs={"uidb64": urlsafe_base64_encode(force_bytes(user.pk)), "token": token}
    )
    audit.record(Action.PASSWORD_RESET_LINK, actor=request.user, request=request, target=username)
    shown = {"username": username, "link": public_url(request, path), "hours": settings.PASSWORD_RESET_TIMEOUT // 3600}
    handover.keep_shown_once(request, RESET_LINK, shown, secrets=[token])
    return HttpResponseRedirect(request.path, status=303)


@login_required
@require_POST
def user_confirm_email(request: AuthenticatedHttpRequest, username: str) -> HttpResponse:
    """Staff vouch that an account's address is its owner's, when the portal sends no mail (sudo mode)."""
    _staff_only(request)
    user = get_object_or_404(get_user_model(), username=username)
    if needs_password := sudo_redirect(request):
        return needs_password
    if email_confirmation.confirm_email(user=user, actor=request.user, via="staff", request=request):
        messages.success(request, f"{user.email} is confirmed as {username}'s address; SSO may sign in to it now.")
    else:
        messages.info(request, f"{username}'s address needed no confirming.")
    return redirect(_next_url(request, "users"))


@login_required
@require_POST
def team_groups(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """Name the identity-provider groups whose people join the team as members or admins."""
    team, _ = team_with_role(request.user, slug, Role.ADMIN, denied="Only the team's admins can change its groups.")
    form = TeamGroupsForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Group names are one line of at most 200 characters.")
        return redirect("team", slug=team.slug)
    if not form.changes():
        messages.info(request, NOTHING_CHANGED)
        return redirect("team", slug=team.slug)
    try:
        services.update_team_groups(team=team, changes=form.changes(), actor=request.user, request=request)
        messages.success(request, f"{team.name}'s SSO groups saved; memberships follow them at each SSO sign-in.")
    except RuleError as exc:
        messages.error(request, str(exc))
    return redirect("team", slug=team.slug)
