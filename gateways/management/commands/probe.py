"""Probe many keys concurrently; fit for cron (exit status 1 when any key fails)."""

from __future__ import annotations

import asyncio
import json as jsonlib
import sys

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from gateways.models import GatewayKey
from gateways.probes.runner import probe_keys_async, save_outcomes
from gateways.services import record_expirations


class Command(BaseCommand):
    help = "Probe every usable key (or those of --team / --gateway) like Claude Code would, and record the results."

    def add_arguments(self, parser):
        parser.add_argument("--team", help="Only keys of this team (slug).")
        parser.add_argument("--gateway", help="Only keys for this gateway (slug).")
        parser.add_argument("--concurrency", type=int, default=20, help="Probes in flight at once (default 20).")
        parser.add_argument("--json", action="store_true", help="Print one JSON object per key instead of a table.")
        parser.add_argument("--no-stream", action="store_true", help="Send non-streamed requests.")
        parser.add_argument(
            "--due",
            action="store_true",
            help="Only keys whose gateway's probe interval has passed since their last probe (for a frequent cron).",
        )

    def handle(self, team, gateway, concurrency, json, no_stream, due, **options):
        if not 1 <= concurrency <= 500:
            raise CommandError("--concurrency must be between 1 and 500.")
        expired = record_expirations()
        if expired:
            self.stderr.write(f"recorded {expired} newly expired key(s) in the audit trail")
        matching = GatewayKey.objects.usable().select_related("gateway", "team").order_by("team__slug", "label")
        if team:
            matching = matching.filter(team__slug=team)
        if gateway:
            matching = matching.filter(gateway__slug=gateway)
        keys = list(matching)
        if due:
            now = timezone.now()
            keys = [key for key in keys if key.is_due_for_probe(now)]
            if not keys:
                self.stdout.write("No key is due for a probe.")
                return
        if not keys:
            raise CommandError("No usable keys match: check --team and --gateway, or store a key first.")

        done = 0
        show_progress = sys.stderr.isatty()

        def progress(key, outcome):
            nonlocal done
            done += 1
            if show_progress:
                sys.stderr.write(f"\rprobed {done}/{len(keys)}")
                sys.stderr.flush()

        outcomes = asyncio.run(probe_keys_async(keys, concurrency=concurrency, stream=not no_stream, on_done=progress))
        if show_progress:
            sys.stderr.write("\n")
        results = save_outcomes(outcomes, trigger="command")
        failures = [r for r in results if r.verdict != "ok"]
        if json:
            self._print_json(results)
        else:
            self._print_table(results)
            self.stdout.write(f"{len(results) - len(failures)} ok, {len(failures)} failing, {len(results)} probed.")
        if failures:
            raise SystemExit(1)

    def _print_json(self, results) -> None:
        for r in results:
            row = {
                "key": str(r.key_id),
                "team": r.key.team.slug,
                "gateway": r.gateway.slug,
                "label": r.key.label,
                "verdict": r.verdict,
                "status_code": r.status_code,
                "latency_ms": r.latency_ms,
                "hint": r.hint,
                "warning": r.warning,
            }
            self.stdout.write(jsonlib.dumps(row))

    def _print_table(self, results) -> None:
        header = ("TEAM", "GATEWAY", "KEY", "VERDICT", "HTTP", "MS")
        rows = [
            (
                r.key.team.slug,
                r.gateway.slug,
                r.key.label[:30],
                r.verdict,
                str(r.status_code or "-"),
                str(r.latency_ms or "-"),
            )
            for r in results
        ]
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
