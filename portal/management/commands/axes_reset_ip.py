"""django-axes' `axes_reset_ip`, audited: each lock-out lifted is an `account.unlocked` event (portal.lockouts)."""

from __future__ import annotations

from axes.management.commands import axes_reset_ip

from portal import lockouts


class Command(axes_reset_ip.Command):
    def handle(self, *args, **options):
        count = sum(
            lockouts.lift(lockouts.attempts_matching(ip=ip), via="manage.py axes_reset_ip") for ip in options["ip"]
        )
        self.stdout.write(f"{count} attempts removed." if count else "No attempts found.")
