"""django-axes' `axes_reset_username`, audited: each lock-out lifted is an `account.unlocked` event."""

from __future__ import annotations

from axes.management.commands import axes_reset_username

from portal import lockouts
from portal.commands import utf8_argument


class Command(axes_reset_username.Command):
    def handle(self, *args, **options):
        names = [utf8_argument(name, "The user name") for name in options["username"]]  # all before any is lifted
        count = sum(
            lockouts.lift(lockouts.attempts_matching(username=name), via="manage.py axes_reset_username")
            for name in names
        )
        self.stdout.write(f"{count} attempts removed." if count else "No attempts found.")
