"""Sign-in lock-outs (django-axes' access attempts): telling a try the lock refused from one whose password was
checked, and lifting them, audited wherever it is done.

Unlocking someone early is a security act an auditor must see: the admin site's delete of an attempt and axes'
own reset commands (`manage.py axes_reset`, `axes_reset_ip`, `axes_reset_username`, `axes_reset_ip_username`,
which the portal's commands of the same names replace) all come here. Each attempt lifted is one
`account.unlocked` event naming the user name tried and the address, never what was typed.
"""

from __future__ import annotations

import ipaddress

from axes.backends import AxesStandaloneBackend
from axes.exceptions import AxesBackendPermissionDenied
from axes.models import AccessAttempt
from django.conf import settings
from django.db import router, transaction
from django.db.models import Q, QuerySet, Sum
from django.http import HttpRequest

from portal import audit
from portal.errors import RuleError, echoed
from portal.models import Action

# Set on a request whose sign-in the lock refused before any password was checked.
REFUSED_BY_LOCK = "portal_refused_by_lock"


class LockOutBackend(AxesStandaloneBackend):
    """Axes' lock, which also marks the request it refuses (REFUSED_BY_LOCK).

    Whether a failed sign-in had its password checked is known only here: a failure count read afterwards may have
    grown with other requests of a burst while this one's password was hashed, and a checked guess would then pass
    for a refused one and go unrecorded (portal.signals.record_failed_sign_in).
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        try:
            return super().authenticate(request, username, password, **kwargs)
        except AxesBackendPermissionDenied:
            setattr(request, REFUSED_BY_LOCK, True)
            raise


def refused_by_lock(request: HttpRequest | None) -> bool:
    return bool(getattr(request, REFUSED_BY_LOCK, False))


def attempts_matching(*, ip: str | None = None, username: str | None = None) -> QuerySet[AccessAttempt]:
    """The attempts axes' reset would remove for these (none given: all of them); RuleError for an `ip` that is none."""
    attempts = AccessAttempt.objects.all()
    if ip:
        attempts = attempts.filter(ip_address=ip_address(ip))
    if username:
        attempts = attempts.filter(username=username)
    return attempts


def ip_address(text: str) -> str:
    """`text`, checked to be an IP address, else RuleError: PostgreSQL's inet column fails on anything else, where
    SQLite would only find nothing, and a typo must not read as "no lock-out there". Kept as typed: SQLite compares
    it as text with the address axes recorded."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is None or getattr(address, "scope_id", None):  # a zone (fe80::1%eth0) is never recorded
        raise RuleError(
            f"{echoed(text)!r} is not an IP address; give the address the lock-out was recorded for, "
            "like 203.0.113.7 or 2001:db8::1."
        )
    return text


def lift(attempts: QuerySet[AccessAttempt], *, actor=None, request: HttpRequest | None = None, via: str) -> int:
    """Delete these attempts, each with its audit event, in one transaction; returns how many were lifted.

    The failed sign-ins are counted before any row goes: django-axes adds up a user name's failures from one
    address over its rows, and `locked_out` says whether they had reached AXES_FAILURE_LIMIT.
    """
    with transaction.atomic(using=router.db_for_write(AccessAttempt)):
        rows = list(attempts.order_by("pk"))
        pairs = {(a.username, a.ip_address) for a in rows}
        failures = {pair: _failed_sign_ins(*pair) for pair in pairs}
        lifted = 0
        for attempt in rows:
            if not AccessAttempt.objects.filter(pk=attempt.pk).delete()[0]:
                continue  # lifted meanwhile, by someone else or by a successful sign-in
            lifted += 1
            count = failures[(attempt.username, attempt.ip_address)]
            audit.record(
                Action.ACCOUNT_UNLOCKED,
                actor=actor,
                request=request,
                target=attempt.username or "",
                details={
                    "via": via,
                    "ip_address": attempt.ip_address,
                    "failed_sign_ins": count,
                    "locked_out": count >= settings.AXES_FAILURE_LIMIT,
                },
            )
        return lifted


def _failed_sign_ins(username: str | None, ip_address: str | None) -> int:
    same = AccessAttempt.objects.filter(Q(username=username) & Q(ip_address=ip_address))
    return same.aggregate(total=Sum("failures_since_start"))["total"] or 0
