from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from gateways.models import GatewayKey
from portal import audit, crypto
from portal.models import Action


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret under the first key of PORTAL_ENCRYPTION_KEYS, in batches. "
        "Safe to re-run, and after an interruption."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=200)

    def handle(self, batch_size, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be 1 or more.")
        try:
            keyring = crypto.get_keyring()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        primary = keyring.primary_id
        moved = 0
        stored = GatewayKey.objects.exclude(secret_ciphertext="")
        pending = stored.exclude(secret_key_id=primary)
        while True:
            # Each batch commits on its own: an interruption loses at most one batch of work, never data.
            with transaction.atomic():
                batch = list(pending.select_for_update().order_by("pk")[:batch_size])
                if not batch:
                    break
                for key in batch:
                    try:
                        secret = key.reveal_secret()
                    except crypto.DecryptionError as exc:
                        raise CommandError(
                            f"Key {key.pk} ({key.label}): {exc} Nothing in this batch was changed."
                        ) from None
                    key.set_secret(secret)
                GatewayKey.objects.bulk_update(batch, ["secret_ciphertext", "secret_key_id"])
                moved += len(batch)
            self.stderr.write(f"re-encrypted {moved} so far")
        with transaction.atomic():
            # Every secret now under the key, not only this run's share: a run that resumes after an
            # interruption finishes earlier runs' work, and the trail should show the whole rotation.
            total = stored.filter(secret_key_id=primary).count()
            audit.record(
                Action.ENCRYPTION_ROTATED, details={"rows": total, "rows_this_run": moved, "primary_key_id": primary}
            )
        self.stdout.write(f"Re-encrypted {moved} secret(s) under key {primary}; all {total} stored secret(s) use it.")
