"""Signals portal sends to the apps built on it, and the sign-in hooks of the audit trail."""

from __future__ import annotations

from axes.conf import settings  # Django's, with the defaults of the AXES_ settings the portal leaves unset
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_failure_limit
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import Signal, receiver

from portal import audit, lockouts
from portal.models import Action

# Sent with `membership=`, `actor=` and `request=` inside the transaction that removes a member from a team,
# before the membership row goes. A receiver drops what the member held in that team and returns a dict
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
    """Every password tried and refused is recorded; of the tries the lock-out refuses unchecked, only the first
    of each lock (marked `locked_out`), or anyone could add a row to the trail per request for as long as it lasts.

    Which tries the lock refused is marked on the request by the lock itself (portal.lockouts.LockOutBackend): a
    count read here may have grown with a burst's other requests while this one's password was checked.
    """
    locked_out = lockouts.refused_by_lock(request)
    if locked_out and _tries_the_lock_refused(request, credentials) > 1:
        return
    # The username tried is worth keeping; the password never reaches this signal unmasked.
    audit.record(
        Action.SIGN_IN_FAILED,
        request=request,
        target=str(credentials.get("username", ""))[:150],
        details={"locked_out": True} if locked_out else None,
    )


def _tries_the_lock_refused(request, credentials) -> int:
    """How many tries django-axes' lock-out on this user name and address has refused, this one included.

    Axes counts the tries its lock-out refuses too (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT, its default), so
    each lock's first refused try finds the count at the limit and later ones above it. Axes' own receiver may
    have counted this try already (it then leaves the count on the request), or not yet.
    """
    if request is None or not settings.AXES_ENABLED or not settings.AXES_LOCK_OUT_AT_FAILURE:
        return 0
    counted = getattr(request, "axes_failures_since_start", None)
    before = counted - 1 if counted is not None else AxesProxyHandler.get_failures(request, credentials)
    return max(0, before - get_failure_limit(request, credentials) + 1)
