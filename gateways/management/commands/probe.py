"""Probe many keys concurrently; fit for cron (exit status 1 when any key fails)."""

from __future__ import annotations

import json as jsonlib
import sys
from datetime import timedelta

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from gateways.models import Gateway, GatewayKey, GatewayKeyQuerySet, ProbeResult
from gateways.probes.runner import probe_and_save
from gateways.rules import one_line
from gateways.services import record_expirations
from portal import claims, crypto
from portal.commands import utf8_argument
from portal.models import Team

# Longer than a batch of probes takes (each is bounded by PROBE_DEADLINE): an older claim was a run that died.
CLAIM_LEASE = timedelta(minutes=10)


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
        team = team and utf8_argument(team, "--team")
        gateway = gateway and utf8_argument(gateway, "--gateway")
        # A typo in cron's `--due --team` would otherwise probe nothing, forever, and exit 0.
        if team and not Team.objects.filter(slug=team).exists():
            raise CommandError(f"No usable keys match: there is no team with the slug {team!r} (check --team).")
        if gateway and not Gateway.objects.filter(slug=gateway).exists():
            raise CommandError(
                f"No usable keys match: there is no gateway with the slug {gateway!r} (check --gateway)."
            )
        expired = record_expirations()
        if expired:
            self.stderr.write(f"recorded {expired} newly expired key(s) in the audit trail")
        # prefetch, not select_related: a few gateways and teams shared by the keys, not one copy of each per key.
        keys = GatewayKey.objects.usable().prefetch_related("gateway", "team").order_by("team__slug", "label")
        if team:
            keys = keys.filter(team__slug=team)
        if gateway:
            keys = keys.filter(gateway__slug=gateway)
        if missing := crypto.missing_key_ids(crypto.get_keyring(), keys):
            # After a restore with the wrong keyring every probe would be refused and every team told its keys
            # fail: the fault is the portal's, so nothing is probed or sent.
            raise CommandError(
                f"The vault keyring (PORTAL_ENCRYPTION_KEYS) lacks key {', '.join(missing)}, which stored keys "
                "were encrypted with: put it back (after a restore, the keyring of the backup). Nothing was probed."
            )
        self.done = 0
        self.show_progress = sys.stderr.isatty()
        if due:
            results = self._probe_due(keys, concurrency=concurrency, stream=not no_stream)
        else:
            matching = list(keys)
            # Nothing failed: a team whose keys are all disabled, or a portal with none yet, is no error for cron
            # (an unknown slug was refused above).
            results = self._probe(matching, concurrency=concurrency, stream=not no_stream) if matching else []
        if self.show_progress and self.done:
            sys.stderr.write("\n")
        results.sort(key=lambda r: (r.key.team.slug, r.key.label))
        failures = [r for r in results if r.verdict != "ok"]
        if not results:
            # With --json, stdout holds JSON lines only (one per probed key: none), so cron's jq never chokes.
            nothing = "No key is due for a probe." if due else "No usable key matches: nothing was probed."
            (self.stderr if json else self.stdout).write(nothing)
        elif json:
            self._print_json(results)
        else:
            self._print_table(results)
            self.stdout.write(f"{len(results) - len(failures)} ok, {len(failures)} failing, {len(results)} probed.")
        if due:
            # The schedule that probes also delivers, after the probes (as printed): new failures, and
            # retries of earlier deliveries.
            call_command("notify", stdout=self.stderr if json else self.stdout)
        if failures:
            raise SystemExit(1)

    def _progress(self, key, outcome) -> None:
        self.done += 1
        if self.show_progress:
            sys.stderr.write(f"\rprobed {self.done}")
            sys.stderr.flush()

    def _probe(self, keys: list[GatewayKey], *, concurrency: int, stream: bool) -> list[ProbeResult]:
        return probe_and_save(keys, trigger="command", concurrency=concurrency, stream=stream, on_done=self._progress)

    def _probe_due(self, keys: GatewayKeyQuerySet, *, concurrency: int, stream: bool) -> list[ProbeResult]:
        """Probe the due keys a batch at a time, each batch claimed first, so another server never probes them too."""
        due = keys.due_for_probe(timezone.now())
        batch_size = max(4 * concurrency, 20)
        results: list[ProbeResult] = []
        while True:
            now = timezone.now()
            token = claims.claim(
                due,
                now=now,
                lease=CLAIM_LEASE,
                limit=batch_size,
                claimed_at="probe_claimed_at",
                claim_field="probe_claim",
            )
            if token is None:
                return results
            try:
                batch = list(GatewayKey.objects.filter(probe_claim=token).prefetch_related("gateway", "team"))
                results += self._probe(batch, concurrency=concurrency, stream=stream)
            finally:
                claims.release(GatewayKey, token, claimed_at="probe_claimed_at", claim_field="probe_claim")

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
                one_line(r.key.label)[:30],  # a label may hold a line break, or a terminal's escape
                r.verdict,
                str(r.status_code or "-"),
                str(r.latency_ms or "-"),
            )
            for r in results
        ]
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
