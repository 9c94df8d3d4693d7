"""Deliver the notifications that are due; fit for cron, and run by `probe --due` after probing."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from alerts.delivery import deliver_due


class Command(BaseCommand):
    help = (
        "Tell teams about keys that expire soon, then send every notification that is due (retries included). "
        "Safe to run on several servers at once: each delivery is claimed in the database."
    )

    def handle(self, **options):
        outcome = deliver_due()
        self.stdout.write(
            f"{outcome['sent']} sent, {outcome['retrying']} to retry, {outcome['failed']} given up; "
            f"{outcome['expiring']} new expiry warning(s)."
        )
