from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
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


def resolved(path: Path | str) -> Path:
    """The path absolute, its links resolved: a re-run may name the same export another way (relative, absolute)."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError, ValueError):  # a loop of links, a NUL: compared as written, made absolute
        return Path(os.path.abspath(path))


# How many exported events are looked up in the database at once.
CHECK_CHUNK = 2000


def exported_events(partial: Path) -> Iterator[tuple[int, str] | None]:
    """Each complete line of an export as its event's (id, hash); None for a line that is not an exported event.

    A last line without its newline is skipped: the run was killed while writing it, before its prune committed.
    """
    with partial.open(encoding="utf-8", errors="replace") as export:
        for line in export:
            if not line.endswith("\n"):
                return
            try:
                event = json.loads(line)
                event_id, event_hash = event["id"], event["hash"]
            except (ValueError, KeyError, TypeError):
                yield None
                continue
            valid = isinstance(event_id, int) and not isinstance(event_id, bool) and isinstance(event_hash, str)
            yield (event_id, event_hash) if valid else None


def exported_by_a_committed_prune(partial: Path, path: Path) -> bool:
    """Whether the file is the whole export to `path` of a prune the audit trail records (killed before its rename).

    Rows record the path resolved; older ones as it was given, resolved here as the run that wrote them would have.
    """
    wanted = resolved(path)
    recorded = set()
    for details in AuditEvent.objects.filter(action=Action.AUDIT_PRUNED).values_list("details", flat=True):
        export = details.get("export") if isinstance(details, dict) else None
        if isinstance(export, str) and export and resolved(export) == wanted:
            recorded.add((details.get("events"), details.get("last_hash")))
    if not recorded:
        return False
    count, last = 0, None
    for event in exported_events(partial):
        if event is None:
            return False
        count, last = count + 1, event
    return last is not None and ends_with_a_newline(partial) and (count, last[1]) in recorded


def ends_with_a_newline(partial: Path) -> bool:
    with partial.open("rb") as export:
        export.seek(-1, os.SEEK_END)
        return export.read(1) == b"\n"


def still_in_the_database(partial: Path) -> bool:
    """Whether every event the file holds is in the database still (a run killed before its prune committed),
    so that removing the file loses nothing; False when a line is not an exported event."""
    chunk: dict[int, str] = {}
    for event in exported_events(partial):
        if event is None:
            return False
        chunk[event[0]] = event[1]
        if len(chunk) >= CHECK_CHUNK:
            if not _all_stored(chunk):
                return False
            chunk = {}
    return _all_stored(chunk)


def _all_stored(events: dict[int, str]) -> bool:
    stored = dict(AuditEvent.objects.filter(id__in=events).values_list("id", "hash"))
    return stored == events


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
                    details={
                        "before": day.isoformat(),
                        "events": count,
                        "export": str(resolved(path)),  # so a re-run naming it another way finds it
                        "last_hash": last.hash,
                    },
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
        """Deal with a killed run's file at the export's temporary name, so that it never blocks this run.

        It is moved into place when it is the complete export of a prune recorded for this path, removed when its
        events are all in the database still (the run was killed before its commit), and otherwise set aside
        under another name, never removed: it may be the only copy of events pruned since.
        """
        partial = partial_path(path)
        try:
            if not partial.is_file() or path.exists():
                return
        except OSError:
            return  # not there: this run's own export reports any real trouble with the folder
        try:
            if exported_by_a_committed_prune(partial, path):
                move_into_place(partial, path)
                self.stdout.write(f"Moved the complete export of an interrupted earlier prune into place: {path}.")
                return
            if still_in_the_database(partial):
                partial.unlink()  # a run killed while exporting: its events were never pruned
                return
        except OSError as exc:
            self.stderr.write(
                f"{partial} is left from an earlier run and could not be checked ({exc.strerror}), so it was kept: "
                "it may hold the only copy of audit events pruned since."
            )
            return
        self.set_aside(partial)

    def set_aside(self, partial: Path) -> None:
        """Keep a leftover export that holds events no longer in the database under a name no run writes."""
        aside = partial.with_name(f"{partial.name}.{timezone.now():%Y%m%dT%H%M%SZ}")
        why = (
            f"{partial} is left from an earlier run: it is not the export of a pruning the audit trail records for "
            "this path, and not all it holds is in the database, so it may be the only copy of pruned audit events"
        )
        try:
            if aside.exists():
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST))
            os.rename(partial, aside)
        except OSError as exc:
            self.stderr.write(f"{why}. It could not be set aside ({exc.strerror}) and was kept as it is.")
            return
        self.stderr.write(f"{why}. It was kept as {aside}: store it with the other exports.")

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
            if not taken and partial_path(path).exists():
                raise CommandError(
                    f"{partial_path(path)} is left from an earlier run and was kept (see above), so this run cannot "
                    "write its export there. Move that file somewhere safe, then run the command again."
                )
        if taken:
            raise CommandError(f"{path} already exists; choose another --output so no export is overwritten.")
        if not path.parent.is_dir():
            raise CommandError(
                f"There is no folder {path.parent} to write the export in; create it or choose another --output."
            )
        return path
