from __future__ import annotations

from collections import Counter

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from portal import audit, audit_chain
from portal.models import Action, AuditEvent, PendingAuditEvent

# Rows a batch holds in memory and locks at once (a LIMIT past 64 bits would fail in the database).
MAX_BATCH_SIZE = 100_000


class Command(BaseCommand):
    help = (
        "Re-sign every audit event under the first key of PORTAL_AUDIT_KEYS, in batches. Hashes do not change, "
        "so kept heads stay valid. Safe to re-run, and after an interruption."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, batch_size, **options):
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be from 1 to {MAX_BATCH_SIZE:,}, not {batch_size}.")
        try:
            keyring = audit_chain.get_keyring()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        primary = keyring.primary_id
        signed = 0
        while True:
            # Each batch commits on its own: an interruption loses at most one batch of work.
            try:
                done = audit.resign_batch(keyring, batch_size)
            except audit.AuditChainError as exc:
                raise CommandError(f"{exc} Run verify_audit to see the whole chain.") from None
            if not done:
                break
            signed += done
            self.stderr.write(f"re-signed {signed} so far")
        with transaction.atomic():
            # Count every event under the key, not this run's share: a resumed run finishes others' work.
            total = AuditEvent.objects.filter(signing_key_id=primary).count()
            audit.record(Action.AUDIT_RESEALED, details={"events": total, "key_id": primary})
        # A server not yet restarted with the new keyring signs with the old key meanwhile: "all" would be false,
        # and the operator would remove the key those events need. Counted after the commit above, which chains
        # the queued events; a queued one still waiting needs its key to be chained (a rejected one never is).
        left = Counter(AuditEvent.objects.exclude(signing_key_id=primary).values_list("signing_key_id", flat=True))
        queued = PendingAuditEvent.objects.filter(rejected=False).exclude(signing_key_id=primary)
        left.update(queued.values_list("signing_key_id", flat=True))
        if left:
            raise CommandError(
                f"Re-signed {signed} event(s), but {left.total()} event(s) are still signed with audit key "
                f"{', '.join(sorted(left))}, recorded meanwhile by a server still on the old keyring: restart every "
                "server with the new keyring, then run it again before removing the old key."
            )
        self.stdout.write(f"Re-signed {signed} event(s); all {total} are now signed with audit key {primary}.")
