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
            help="A head printed by an earlier run: fail unless the chain still holds it (shows truncation).",
        )

    def handle(self, expect_head, **options):
        # Given but empty is a scheduled `--expect-head "$HEAD"` whose variable is unset: checking without
        # the anchor would report intact even after the tail it guards was deleted.
        if expect_head is not None and not expect_head.strip():
            raise CommandError(
                "The expected head is empty: give --expect-head the 64-digit hash after 'Head: ' in an earlier "
                "verify_audit's output (check that the variable holding it is set), "
                "or leave the option out to check without an anchor."
            )
        expect_head = (expect_head or "").strip().lower()
        if expect_head and not re.fullmatch(r"[0-9a-f]{64}", expect_head):
            raise CommandError("--expect-head must be the 64-digit head a previous verify_audit printed.")
        try:
            check = verify_chain(expect_head=expect_head)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if check.broken:
            raise CommandError(check.broken_sentence())
        self.stdout.write(f"The audit chain is intact: {check.checked} event(s) checked.")
        if check.later:  # chained by the portal while this ran: the next run reaches them through its head
            self.stdout.write(
                f"{check.later} event(s) chained while it ran follow the head below; their links and signatures "
                "hold, and the next run checks them up to its own head."
            )
        if check.pending:
            self.stdout.write(
                f"{check.pending} more wait to be chained, each with a valid signature of its own "
                "and a nonce no other event carries (none is a copy)."
            )
        self.stdout.write(f"Head: {check.head or '(empty chain)'}")
