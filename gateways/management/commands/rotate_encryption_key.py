from __future__ import annotations

from collections import Counter

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from portal import audit, crypto
from portal.models import Action


def vault_models() -> list:
    """Every model whose rows hold a secret sealed under the keyring: gateway keys, and apps' own (`vault_sealed`)."""
    return [model for model in apps.get_models() if getattr(model, "vault_sealed", False)]


# Rows a batch holds in memory and locks at once (a LIMIT past 64 bits would fail in the database).
MAX_BATCH_SIZE = 100_000


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret under the first key of PORTAL_ENCRYPTION_KEYS, in batches. "
        "Safe to re-run, and after an interruption."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=200)

    def handle(self, batch_size, **options):
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be from 1 to {MAX_BATCH_SIZE:,}, not {batch_size}.")
        try:
            keyring = crypto.get_keyring()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        primary = keyring.primary_id
        moved = 0
        for model in vault_models():
            moved += self._rotate(model, keyring, batch_size, moved)
        with transaction.atomic():
            # Every secret now under the key, not only this run's share: a run that resumes after an
            # interruption finishes earlier runs' work, and the trail should show the whole rotation.
            total = sum(
                model.objects.exclude(secret_ciphertext="").filter(secret_key_id=primary).count()
                for model in vault_models()
            )
            audit.record(
                Action.ENCRYPTION_ROTATED, details={"rows": total, "rows_this_run": moved, "primary_key_id": primary}
            )
            # A server not yet restarted with the new keyring stores under the old key meanwhile: "all" would be
            # false, and the operator would remove the key those secrets need.
            left = Counter[str]()
            for model in vault_models():
                pending = model.objects.exclude(secret_ciphertext="").exclude(secret_key_id=primary)
                left.update(pending.values_list("secret_key_id", flat=True))
        if left:
            raise CommandError(
                f"Re-encrypted {moved} secret(s) under key {primary}, but {left.total()} stored secret(s) still use "
                f"key {', '.join(sorted(left))}, written meanwhile by a server still on the old keyring: restart "
                "every server with the new keyring, then run it again before removing the old key."
            )
        self.stdout.write(f"Re-encrypted {moved} secret(s) under key {primary}; all {total} stored secret(s) use it.")

    def _rotate(self, model, keyring: crypto.Keyring, batch_size: int, moved_before: int) -> int:
        """Re-encrypt one model's rows a batch at a time; returns how many moved."""
        primary = keyring.primary_id
        moved = 0
        pending = model.objects.exclude(secret_ciphertext="").exclude(secret_key_id=primary)
        while True:
            # Each batch commits on its own: an interruption loses at most one batch of work, never data.
            with transaction.atomic():
                batch = list(pending.select_for_update().order_by("pk")[:batch_size])
                if not batch:
                    return moved
                for row in batch:
                    try:
                        secret = row.reveal_secret()
                    except crypto.DecryptionError as exc:
                        raise CommandError(f"{row.vault_label}: {exc} Nothing in this batch was changed.") from None
                    row.set_secret(secret)
                model.objects.bulk_update(batch, ["secret_ciphertext", "secret_key_id"])
                moved += len(batch)
            self.stderr.write(f"re-encrypted {moved_before + moved} so far")
