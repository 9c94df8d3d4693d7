"""django-axes' `axes_reset_ip_username`, audited: each lock-out lifted is an `account.unlocked` event."""

from __future__ import annotations

from axes.management.commands import axes_reset_ip_username

from portal import lockouts


class Command(axes_reset_ip_username.Command):
    def handle(self, *args, **options):
        attempts = lockouts.attempts_matching(ip=options["ip"], username=options["username"])
        count = lockouts.lift(attempts, via="manage.py axes_reset_ip_username")
        self.stdout.write(f"{count} attempts removed." if count else "No attempts found.")
