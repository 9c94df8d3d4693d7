"""Signals portal sends to the apps built on it, and the sign-in hooks of the audit trail."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import Signal, receiver

from portal import audit
from portal.models import Action

# Sent with `membership=` and `actor=` inside the transaction that removes a member from a team, before the
# membership row goes. A receiver drops what the member held in that team and returns a dict
# saying what, which goes into the member.removed audit event (gateways: the key assignments).
member_leaving = Signal()
# Sent with `membership=` and `actor=` inside the transaction that adds a user to a team (not on a role change).
member_added = Signal()
# Sent with `user=` and `request=` inside the transaction in which the owner of an account's unconfirmed address
# takes the account back by a password reset (portal.email_confirmation.reclaim_by_reset). A receiver removes
# what the link's holder may have set up there and returns a dict saying what (gateways: the devices).
account_reclaimed = Signal()


@receiver(user_logged_in)
def record_sign_in(sender, request, user, **kwargs) -> None:
    audit.record(Action.SIGN_IN, actor=user, request=request)


@receiver(user_logged_out)
def record_sign_out(sender, request, user, **kwargs) -> None:
    if user is not None:
        audit.record(Action.SIGN_OUT, actor=user, request=request)


@receiver(user_login_failed)
def record_failed_sign_in(sender, credentials, request=None, **kwargs) -> None:
    # The username tried is worth keeping; the password never reaches this signal unmasked.
    audit.record(
        Action.SIGN_IN_FAILED,
        request=request,
        target=str(credentials.get("username", ""))[:150],
    )
