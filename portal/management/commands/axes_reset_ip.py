"""django-axes' `axes_reset_ip`, audited: each lock-out lifted is an `account.unlocked` event (portal.lockouts)."""

from __future__ import annotations

from axes.management.commands import axes_reset_ip
from django.core.management.base import CommandError

from portal import lockouts
from portal.errors import RuleError


class Command(axes_reset_ip.Command):
    def handle(self, *args, **options):
        try:  # every address checked before any lock-out is lifted
            matching = [lockouts.attempts_matching(ip=ip) for ip in options["ip"]]
        except RuleError as exc:
            raise CommandError(str(exc)) from None
        count = sum(lockouts.lift(attempts, via="manage.py axes_reset_ip") for attempts in matching)
        self.stdout.write(f"{count} attempts removed." if count else "No attempts found.")
