"""Confirming an account's address: the invited address of an account whoever held the invitation link made
waits for its owner (UnconfirmedEmail), and single sign-on does not enter the account by it until then."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from portal import audit, mail, two_factor
from portal.errors import RuleError
from portal.http import public_url
from portal.models import AccessToken, Action, UnconfirmedEmail
from portal.signals import account_reclaimed

# Links that confirm an account's address (see UnconfirmedEmail): signed, for one account and address, and
# they last as long as an invitation. One may be mailed every few minutes, so nobody can flood the mailbox.
CONFIRMATION_SALT = "portal.email-confirmation"
CONFIRMATION_RESEND_AFTER = timedelta(minutes=5)


def email_unconfirmed(user) -> bool:
    """Whether the account's address still waits for its owner to confirm it."""
    return bool(user.email) and UnconfirmedEmail.objects.standing().filter(user=user).exists()


def confirmation_url(request: HttpRequest, user) -> str:
    token = signing.dumps([user.pk, user.email.lower()], salt=CONFIRMATION_SALT)
    return public_url(request, reverse("email-confirm", args=[token]))


@transaction.atomic
def send_confirmation(*, user, request: HttpRequest) -> None:
    """Mail the account's address a link that confirms it; a RuleError says why not."""
    mark = UnconfirmedEmail.objects.standing().select_for_update(of=("self",)).filter(user=user).first()
    if mark is None or not user.email:
        raise RuleError(f"Your address {user.email or '(none)'} needs no confirming.")
    if not settings.EMAIL_CONFIGURED:
        raise RuleError("This portal sends no mail, so it cannot send you the link. Ask staff to confirm your address.")
    now = timezone.now()
    if mark.link_sent_at and now - mark.link_sent_at < CONFIRMATION_RESEND_AFTER:
        minutes = int(CONFIRMATION_RESEND_AFTER.total_seconds() // 60)
        raise RuleError(
            f"A link went to {user.email} less than {minutes} minutes ago: look for it (spam folders too), "
            "or ask for another one after that."
        )
    context = {"user": user, "link": confirmation_url(request, user), "days": settings.INVITATION_DAYS}
    subject = "Confirm your address on the gateway portal"
    if not mail.send(to=user.email, subject=subject, template="portal/mail/confirm_email.txt", context=context):
        raise RuleError("The mail server did not take the mail. Try again later, or ask staff to confirm your address.")
    mark.link_sent_at = now
    mark.save(update_fields=["link_sent_at"])


def confirmation_refusal(user, token: str) -> str | None:
    """Why this link does not confirm the signed-in account's address, as a sentence; None when it does."""
    try:
        user_pk, email = signing.loads(token, salt=CONFIRMATION_SALT, max_age=timedelta(days=settings.INVITATION_DAYS))
    except signing.SignatureExpired:
        return "This confirmation link has expired. Send yourself a new one from your account page."
    except signing.BadSignature:
        return (
            "This confirmation link is not valid: check that it was copied whole, or send yourself a new one "
            "from your account page."
        )
    if user_pk != user.pk:
        return "This link confirms another account's address. Sign out, then sign in as that account to use it."
    if email != user.email.lower():
        return "This link was sent to an address this account no longer uses. Send a new one from your account page."
    return None


@transaction.atomic
def confirm_email(*, user, actor, via: str, request: HttpRequest | None = None, details: dict | None = None) -> bool:
    """The account's address is its owner's (a mailed link opened, a reset through it, or staff's word); audited,
    with `details` (what a reset took back) beside the address and the way.

    False when there was nothing to confirm.
    """
    removed, _ = UnconfirmedEmail.objects.filter(user=user).delete()
    if removed:
        recorded = {"email": user.email, "via": via, **(details or {})}
        audit.record(Action.EMAIL_CONFIRMED, actor=actor, request=request, target=user.get_username(), details=recorded)
    return bool(removed)


@transaction.atomic
def reclaim_by_reset(*, user, request: HttpRequest) -> dict | None:
    """A password reset through the unconfirmed address of an account made from an invitation link: the address's
    owner takes the account back. The address is confirmed, and what the link's holder may have set up is taken
    away: access tokens, the second factor, devices (the password change already ended other sessions).

    Returns what was taken away, or None when the address was confirmed already (nothing to take back).
    """
    if not email_unconfirmed(user):
        return None
    now = timezone.now()
    tokens = AccessToken.objects.filter(user=user, revoked_at__isnull=True).update(revoked_at=now)
    second_factor = two_factor.remove_second_factor(user=user, actor=user, request=request)
    taken: dict = {"access_tokens_revoked": tokens, "second_factor_removed": second_factor}
    for _, answer in account_reclaimed.send(sender=UnconfirmedEmail, user=user, request=request):
        if isinstance(answer, dict):
            taken.update(answer)
    confirm_email(user=user, actor=user, via="password reset", request=request, details=taken)
    return taken
