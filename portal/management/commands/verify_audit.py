from __future__ import annotations

import re

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from portal.audit import verify_chain


class Command(BaseCommand):
    help = (
        "Walk the audit chain oldest first, checking every link, hash and signature, and name the first "
        "broken link. Prints the chain's head: keep it outside the database and pass it later as --expect-head."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--expect-head",
            default="",
            help="A head printed by an earlier run: fail unless the chain still holds it (shows truncation).",
        )

    def handle(self, expect_head, **options):
        expect_head = expect_head.strip().lower()
        if expect_head and not re.fullmatch(r"[0-9a-f]{64}", expect_head):
            raise CommandError("--expect-head must be the 64-digit head a previous verify_audit printed.")
        try:
            check = verify_chain(expect_head=expect_head)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if check.broken:
            where = f"at event {check.broken.event_id}" if check.broken.event_id else "at the end of the chain"
            raise CommandError(
                f"The audit chain is broken {where}: {check.broken.reason}. "
                f"{check.checked} event(s) before it are intact."
            )
        self.stdout.write(f"The audit chain is intact: {check.checked} event(s) checked.")
        if check.pending:
            self.stdout.write(f"{check.pending} more wait to be chained, each with a valid signature of its own.")
        self.stdout.write(f"Head: {check.head or '(empty chain)'}")
