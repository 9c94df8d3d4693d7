from __future__ import annotations

import json
import os
from datetime import UTC, datetime, time
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_date

from portal import audit
from portal.api.serializers import AuditEventSerializer
from portal.commands import utf8_argument
from portal.models import Action, AuditChainHead, AuditEvent
from portal.private_files import make_private_dir


def _unwritable(path: Path, exc: OSError) -> CommandError:
    return CommandError(f"Cannot write the export to {path}: {exc.strerror}. Choose another --output.")


def partial_path(path: Path) -> Path:
    """Where the export is written until its prune has committed: the same folder, so a rename moves it."""
    return path.with_name(f"{path.name}.partial")


def move_into_place(partial: Path, path: Path) -> None:
    os.rename(partial, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the new name survives a power cut, like the export's content
    finally:
        os.close(folder)


def exported_by_a_committed_prune(partial: Path, path: Path) -> bool:
    """Whether the file is the whole export of a prune the audit trail records (killed before its rename)."""
    recorded = {
        (details.get("events"), details.get("last_hash"))
        for details in AuditEvent.objects.filter(action=Action.AUDIT_PRUNED).values_list("details", flat=True)
        if isinstance(details, dict) and details.get("export") == str(path)
    }
    if not recorded:
        return False
    count, last_line = 0, ""
    with partial.open(encoding="utf-8", errors="replace") as export:
        for line in export:
            count, last_line = count + 1, line
    try:
        last_hash = json.loads(last_line)["hash"] if last_line.endswith("\n") else None
    except (ValueError, KeyError, TypeError):
        return False
    return (count, last_hash) in recorded


class Command(BaseCommand):
    help = (
        "Remove audit events older than --before, after exporting them to a JSON Lines file readable by its "
        "owner only (0600); the pruning is itself recorded, and verify_audit keeps working on what remains. "
        "The whole chain is verified first, as verify_audit does (a walk over every event, so on a large "
        "trail this takes as long as verify_audit): a broken chain is not pruned, since that would remove the evidence."
    )

    def add_arguments(self, parser):
        parser.add_argument("--before", required=True, help="A date, YYYY-MM-DD: events before it are pruned.")
        parser.add_argument(
            "--output",
            help="Where to write the export (default: audit-until-DATE.jsonl in PORTAL_DATA_DIR, a 0700 folder).",
        )

    def handle(self, before, output, **options):
        output = output and utf8_argument(output, "--output")  # the export's path is kept in the audit trail
        try:
            day = parse_date(before)
        except ValueError:  # well formed, but no such day (2026-02-30)
            day = None
        if day is None:
            raise CommandError(f"--before must be a date like 2026-01-31, not {before!r}.")
        try:
            # The database compares in UTC; east of UTC, midnight of 0001-01-01 falls in year 0.
            cutoff = timezone.make_aware(datetime.combine(day, time.min)).astimezone(UTC)
        except OverflowError:
            raise CommandError(
                f"--before {day} is earlier than the first moment the database can hold in UTC "
                f"(time zone {settings.TIME_ZONE}); there is nothing before it to prune. Give a later date."
            ) from None
        if cutoff > timezone.now():
            raise CommandError(
                f"--before {day} is in the future: pruning up to it would remove the whole trail, "
                "even events recorded a moment ago. Give today's date or an earlier one."
            )
        partial: Path | None = None  # the export, written under a temporary name until the prune has committed
        committed = False
        try:
            with transaction.atomic():
                head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
                last = AuditEvent.objects.filter(created_at__lt=cutoff).order_by("-id").first()
                if last is None:
                    self.settle_leftover(self.default_or_chosen(output, day.isoformat()))
                    self.stdout.write(f"No audit events before {day}; nothing pruned.")
                    return
                # Only now: cron's next run for the same date finds its own export there, with nothing to add.
                path = self.export_path(output, day.isoformat())
                # With the head held, no event joins the chain while it is checked (writers queue meanwhile).
                try:
                    check = audit.verify_chain()
                except ImproperlyConfigured as exc:
                    raise CommandError(str(exc)) from None
                if check.broken:
                    raise CommandError(
                        f"{check.broken_sentence()} Nothing was pruned: pruning would "
                        "remove the evidence. Run verify_audit for the details and look into the break first."
                    )
                # Prune a contiguous run of the chain: everything up to the newest event before the cutoff.
                doomed = AuditEvent.objects.filter(id__lte=last.id).order_by("id")
                count = 0
                partial = partial_path(path)
                try:
                    # Created 0600 from the first byte; O_EXCL: never through a link someone left at that name.
                    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except OSError as exc:  # nothing is pruned: the transaction has only read so far
                    partial = None
                    raise _unwritable(path, exc) from None
                with os.fdopen(descriptor, "w", encoding="utf-8") as export:
                    for event in doomed.iterator(chunk_size=2000):
                        data = AuditEventSerializer(event).data
                        export.write(json.dumps(data, default=str, ensure_ascii=False) + "\n")
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
            committed = True
        except BaseException:
            if partial is not None and not committed:  # rolled back: the events are still in the database
                partial.unlink(missing_ok=True)
            raise
        # Only once the prune has committed does the export take its name: a run killed before this leaves no
        # file there (the next run removes its temporary file and exports again), and one killed after the
        # commit leaves the complete export, which the next run for the same --before or --output moves into place.
        try:
            move_into_place(partial, path)
        except OSError as exc:
            raise CommandError(
                f"Pruned {count} event(s) before {day}, but could not rename their export from {partial} to "
                f"{path}: {exc.strerror}. The export is complete; rename it yourself."
            ) from None
        self.stdout.write(f"Pruned {count} event(s) before {day}; exported to {path}.")

    def default_or_chosen(self, output: str | None, day: str) -> Path:
        return Path(output) if output else Path(settings.DATA_DIR) / f"audit-until-{day}.jsonl"

    def settle_leftover(self, path: Path) -> None:
        """Deal with a killed run's file at the export's temporary name, so that it never blocks this run."""
        partial = partial_path(path)
        try:
            if not partial.is_file() or path.exists():
                return
            if not exported_by_a_committed_prune(partial, path):
                partial.unlink()  # a run killed while exporting: its events were never pruned
                return
            move_into_place(partial, path)
        except OSError:
            return  # unreadable or not there: this run's own export reports any real trouble with the folder
        self.stdout.write(f"Moved the complete export of an interrupted earlier prune into place: {path}.")

    def export_path(self, output: str | None, day: str) -> Path:
        """The export's path, checked to be free and in an existing folder; by default in PORTAL_DATA_DIR (0700)."""
        path = self.default_or_chosen(output, day)
        if not output:
            try:
                make_private_dir(path.parent)
            except OSError as exc:
                raise CommandError(
                    f"Cannot create {path.parent} for the export: {exc.strerror}. "
                    "Set PORTAL_DATA_DIR to a writable folder or choose --output."
                ) from None
        try:
            taken = path.exists()
        except OSError as exc:  # a name too long for the file system, say
            raise _unwritable(path, exc) from None
        if not taken:
            self.settle_leftover(path)
            taken = path.exists()
        if taken:
            raise CommandError(f"{path} already exists; choose another --output so no export is overwritten.")
        if not path.parent.is_dir():
            raise CommandError(
                f"There is no folder {path.parent} to write the export in; create it or choose another --output."
            )
        return path
