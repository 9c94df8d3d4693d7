"""Forms for sign-in, invitations, the second factor and the team's SSO groups."""

from __future__ import annotations

import logging

from django import forms
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm, PasswordResetForm, UserCreationForm
from django.contrib.sites.shortcuts import get_current_site
from django.db import connection
from django.http import HttpRequest

from portal.email_confirmation import CONFIRMATION_RESEND_AFTER
from portal.invitations import email_spellings, same_address
from portal.mail import send_after_response
from portal.models import ResetLinkMail, Role
from portal.names import DOTS_ONLY_USERNAME, is_only_dots

# Django's logger for the reset mail's failures, which names the account (never the link).
logger = logging.getLogger("django.contrib.auth")

SSO_ONLY = "Sign in with SSO: on this portal, password sign-in is for staff only."


class PortalAuthenticationForm(AuthenticationForm):
    """The sign-in form; with OIDC_ONLY, a password works for staff only (break-glass), others use SSO."""

    def confirm_login_allowed(self, user) -> None:
        super().confirm_login_allowed(user)
        if settings.OIDC_ONLY and not user.is_staff:
            raise forms.ValidationError(SSO_ONLY, code="sso_only")


class PortalPasswordResetForm(PasswordResetForm):
    """With OIDC_ONLY, only staff can reset a password: everyone else has none to reset.

    Anyone may post an address, so an account is mailed a link at most once per CONFIRMATION_RESEND_AFTER, like the
    confirmation link; the page after it reads the same whether a link went, waited its turn, or had no account.
    """

    def get_users(self, email):
        """Active accounts with a password whose address is `email` in any spelling (bob@bücher.de finds the account
        stored as bob@xn--bcher-kva.de, as invitations and SSO do). The link goes to the address as stored."""
        spellings = {spelling.casefold() for spelling in email_spellings(email)}
        accounts = get_user_model()._default_manager.filter(same_address("email", email), is_active=True)
        # Django's own check after its iexact: a database's case-insensitive match is not Unicode's.
        users = (u for u in accounts if u.has_usable_password() and u.email.casefold() in spellings)
        return (u for u in users if u.is_staff) if settings.OIDC_ONLY else users

    def save(self, *args, **kwargs) -> None:
        """Mail the link after the response (portal.mail.send_after_response): looking the address up, taking the
        account's turn, rendering and sending took longer in the request for an address with an account, and the
        answer's time told it. The link is at PORTAL_URL when it is set, like every other mailed link
        (portal.http.public_url), otherwise at the host name the request came in by, read while it is at hand."""
        if settings.PORTAL_URL:
            scheme, _, address = settings.PORTAL_URL.partition("://")
            kwargs.update(domain_override=address, use_https=scheme == "https")
        elif not kwargs.get("domain_override"):
            kwargs["domain_override"] = get_current_site(kwargs.get("request")).domain
        kwargs["request"] = None  # the thread outlives the request
        mail_links = super().save

        def send() -> None:
            try:
                mail_links(*args, **kwargs)
            except Exception:  # the lookup's failure: send_mail logs its own, naming the account
                logger.exception("Failed to send password reset email")

        send_after_response(send, name="password-reset-mail")

    def send_mail(self, subject_template_name, email_template_name, context, *args, **kwargs) -> None:
        try:
            if ResetLinkMail.objects.claim(context["user"], every=CONFIRMATION_RESEND_AFTER):
                connection.close()  # not held through the SMTP session, which a slow server draws out
                super().send_mail(subject_template_name, email_template_name, context, *args, **kwargs)
        except Exception:  # Django's own send_mail logs a failure to send; this, one to take the turn or render
            logger.exception("Failed to send password reset email to %s", context["user"].pk)


class PortalPasswordChangeForm(PasswordChangeForm):
    """The old password is checked like a sign-in: django-axes counts a wrong one, refuses it while the account is
    locked out, and the audit trail records it as a failed sign-in; otherwise a signed-in browser could guess it."""

    def __init__(self, user, *args, request: HttpRequest, **kwargs) -> None:
        super().__init__(user, *args, **kwargs)
        self.request = request

    def clean_old_password(self) -> str:
        old_password = self.cleaned_data["old_password"]
        confirmed = authenticate(self.request, username=self.user.get_username(), password=old_password)
        if confirmed is None or confirmed.pk != self.user.pk:
            raise forms.ValidationError(self.error_messages["password_incorrect"], code="password_incorrect")
        return old_password


class UnfilledTextInput(forms.TextInput):
    """A text box never filled in again after a refusal: a recovery code refused by throttling is still good."""

    def format_value(self, value):
        return None


class CodeForm(forms.Form):
    code = forms.CharField(
        max_length=20,
        label="Code",
        help_text="The 6-digit code from your authenticator app, or one of your recovery codes.",
        widget=UnfilledTextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


class InvitationForm(forms.Form):
    email = forms.EmailField(label="E-mail address")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class AccountCreationForm(UserCreationForm):
    """User name and password for the account an invitation makes; the address comes from the invitation."""

    def clean_username(self):
        return refuse_only_dots(super().clean_username())


def refuse_only_dots(username: str) -> str:
    """A form's user name, or its field's error when addresses could not carry it (portal.names.is_only_dots)."""
    if is_only_dots(username):
        raise forms.ValidationError(DOTS_ONLY_USERNAME, code="only_dots")
    return username


class TeamGroupsForm(forms.Form):
    """The team's groups; each field posts back what the page showed too (show_hidden_initial), so `changed_data`
    names the groups changed on this page and a page opened before another admin's save does not undo it."""

    sso_member_group = forms.CharField(
        max_length=200,
        required=False,
        label="Members group",
        help_text="IdP group whose people join as members.",
        show_hidden_initial=True,
    )
    sso_admin_group = forms.CharField(
        max_length=200,
        required=False,
        label="Admins group",
        help_text="IdP group whose people join as admins.",
        show_hidden_initial=True,
    )

    def changes(self) -> dict[str, str]:
        """The groups changed on the page; from a post without what it showed (a script), the groups it sends."""
        return {
            name: value
            for name, value in self.cleaned_data.items()
            if (name in self.changed_data if self.add_initial_prefix(name) in self.data else name in self.data)
        }
