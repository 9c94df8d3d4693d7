"""django-axes' `axes_reset`, audited: each lock-out lifted is an `account.unlocked` event (portal.lockouts)."""

from __future__ import annotations

from axes.management.commands import axes_reset

from portal import lockouts


class Command(axes_reset.Command):
    def handle(self, *args, **options):
        count = lockouts.lift(lockouts.attempts_matching(), via="manage.py axes_reset")
        self.stdout.write(f"{count} attempts removed." if count else "No attempts found.")
