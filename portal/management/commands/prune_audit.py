from __future__ import annotations

import json
import os
from datetime import datetime, time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_date

from portal import audit
from portal.api.serializers import AuditEventSerializer
from portal.models import Action, AuditChainHead, AuditEvent


def _unwritable(path: Path, exc: OSError) -> CommandError:
    return CommandError(f"Cannot write the export to {path}: {exc.strerror}. Choose another --output.")


class Command(BaseCommand):
    help = (
        "Remove audit events older than --before, after exporting them to a JSON Lines file; "
        "the pruning is itself recorded, and verify_audit keeps working on what remains."
    )

    def add_arguments(self, parser):
        parser.add_argument("--before", required=True, help="A date, YYYY-MM-DD: events before it are pruned.")
        parser.add_argument("--output", help="Where to write the export (default: audit-until-DATE.jsonl).")

    def handle(self, before, output, **options):
        try:
            day = parse_date(before)
        except ValueError:  # well formed, but no such day (2026-02-30)
            day = None
        if day is None:
            raise CommandError(f"--before must be a date like 2026-01-31, not {before!r}.")
        cutoff = timezone.make_aware(datetime.combine(day, time.min))
        path = Path(output or f"audit-until-{day.isoformat()}.jsonl")
        try:
            taken = path.exists()
        except OSError as exc:  # a name too long for the file system, say
            raise _unwritable(path, exc) from None
        if taken:
            raise CommandError(f"{path} already exists; choose another --output so no export is overwritten.")
        if not path.parent.is_dir():
            raise CommandError(
                f"There is no folder {path.parent} to write the export in; create it or choose another --output."
            )

        with transaction.atomic():
            head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
            last = AuditEvent.objects.filter(created_at__lt=cutoff).order_by("-id").first()
            if last is None:
                self.stdout.write(f"No audit events before {day}; nothing pruned.")
                return
            # Prune a contiguous run of the chain: everything up to the newest event before the cutoff.
            doomed = AuditEvent.objects.filter(id__lte=last.id).order_by("id")
            count = 0
            try:
                export_file = path.open("x", encoding="utf-8")
            except OSError as exc:  # nothing is pruned: the transaction has only read so far
                raise _unwritable(path, exc) from None
            with export_file as export:
                for event in doomed.iterator(chunk_size=2000):
                    export.write(json.dumps(AuditEventSerializer(event).data, default=str, ensure_ascii=False) + "\n")
                    count += 1
                export.flush()
                os.fsync(export.fileno())
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {AuditEvent._meta.db_table} WHERE id <= %s", [last.id])  # noqa: S608
            if head is not None:
                head.anchor_hash = last.hash
                head.save(update_fields=["anchor_hash"])
            audit.record(
                Action.AUDIT_PRUNED,
                details={"before": day.isoformat(), "events": count, "export": str(path), "last_hash": last.hash},
            )
        self.stdout.write(f"Pruned {count} event(s) before {day}; exported to {path}.")
