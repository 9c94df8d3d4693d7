"""django-axes' `axes_reset_ip_username`, audited: each lock-out lifted is an `account.unlocked` event."""

from __future__ import annotations

from axes.management.commands import axes_reset_ip_username
from django.core.management.base import CommandError

from portal import lockouts
from portal.commands import utf8_argument
from portal.errors import RuleError


class Command(axes_reset_ip_username.Command):
    def handle(self, *args, **options):
        username = utf8_argument(options["username"], "The user name")
        try:
            attempts = lockouts.attempts_matching(ip=options["ip"], username=username)
        except RuleError as exc:
            raise CommandError(str(exc)) from None
        count = lockouts.lift(attempts, via="manage.py axes_reset_ip_username")
        self.stdout.write(f"{count} attempts removed." if count else "No attempts found.")
