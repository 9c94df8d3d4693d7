"""HTTP load on the portal as deployed: gunicorn with config/gunicorn.conf.py and production settings.

For each database (a fresh SQLite file, a fresh PostgreSQL database) the portal is migrated and
seeded with 64 developers, each with a key, an assignment and an access token, and 1,000 installed
devices spread over their assignments; gunicorn serves it on loopback, and a load generator in this
process (asyncio, raw HTTP/1.1, one connection per simulated client, kept alive unless said) drives
it. Rounds are interleaved, so every ratio compares figures measured seconds apart on the same
machine; each line prints min / median / max over the rounds.

Each measure also prints where the CPU went, from /proc: milliseconds per request in the gunicorn
workers, in the local PostgreSQL server's processes and in the load generator, and the share of the
cores left idle (a request waiting on a lock or a sleep leaves them idle). From one download's CPU at
concurrency 1 follows a ceiling no schedule can pass on this machine: cores x 1000 / that CPU
requests/s, printed against both download targets.

Targets (ratios, not timings):
  downloads (issue 10): a config download at concurrency 16 >= 0.25 x /healthz at 16; 64 different
    developers downloading at once >= 3 x one at a time; zero errors and client time-outs at 64;
    flat worker memory over 10,000 downloads.
  key fetch (issue 11): GET /api/v1/device/key at 16 >= 0.6 x /healthz at 16, p99 printed; zero
    errors at 64 across 1,000 distinct devices; flat worker memory over 10,000 fetches; no audit row
    written by a fetch that changes nothing. bench.key_fetch runs this part alone, and prints where
    one fetch's time goes.

    .venv/bin/python -m bench.http_load [--databases sqlite,postgresql] [--only downloads,keys]
                                        [--rounds 3] [--seconds 3]

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass

from bench._setup import (
    ROOT,
    CpuUse,
    Load,
    Server,
    Tally,
    count_requests,
    database_kinds,
    get_request,
    gunicorn_serving,
    machine,
    manage,
    measure,
    memory_trace,
    postgres_url_default,
    spread,
    verdict,
)

USERS = 64
DEVICES = 1000
MEMORY_REQUESTS = 10_000
MEMORY_STEP = 2_000
MEMORY_GROWTH_LIMIT_KIB = 4 * 1024  # per worker, from the 2,000th to the 10,000th request

SEED = """
import json, secrets
from django.contrib.auth import get_user_model
from django.utils import timezone
from gateways.models import Device, Gateway
from gateways.services import assign_key, store_key
from portal.models import AccessToken, Membership, Team, TokenScope, mint_token, token_digest

User = get_user_model()
boss = User.objects.create_user("boss", is_staff=True)
team = Team.objects.create(name="Load", slug="load")
Membership.objects.create(team=team, user=boss, role="admin")
gateway = Gateway.objects.get(slug="tokaify")
users, assignments = [], []
for n in range({users}):
    user = User.objects.create_user(f"dev{{n:02d}}")
    Membership.objects.create(team=team, user=user, role="member")
    key = store_key(team=team, gateway=gateway, label=f"dev {{n}}", secret=f"sk-load-{{n:04d}}-0123456789abcdef", actor=boss)
    assignment = assign_key(key=key, username=user.username, actor=boss)
    assignments.append(assignment)
    _, token = AccessToken.issue(user, name="load")
    users.append({{"username": user.username, "assignment": assignment.id, "token": token}})
# Installed devices as the install URL leaves them (the install itself is not what is measured).
now, devices, rows = timezone.now(), [], []
for n in range({devices}):
    assignment = assignments[n % len(assignments)]
    lookup_id, raw = mint_token(TokenScope.KEY_FETCH)
    rows.append(Device(
        user_id=assignment.user_id, key_id=assignment.key_id, assignment=assignment, name=f"device {{n}}",
        platform="linux", install_lookup_id=secrets.token_hex(6), install_digest="-", install_expires_at=now,
        installed_at=now, token_lookup_id=lookup_id, token_digest=token_digest(raw),
    ))
    devices.append(raw)
Device.objects.bulk_create(rows, batch_size=500)
print("SEEDED " + json.dumps({{"users": users, "devices": devices}}))
"""

# Audit rows a key fetch may write (its first, the first after a rotation, a refusal, a daily summary),
# queued or chained.
FETCH_AUDIT_ROWS = """
from portal.models import AuditEvent, PendingAuditEvent
actions = ["device.key_fetched", "device.fetch_refused"]
print(AuditEvent.objects.filter(action__in=actions).count() + PendingAuditEvent.objects.filter(action__in=actions).count())
"""


# --- Scenarios: the requests each simulated client sends in turn ----------------------------------


def healthz(server: Server, clients: int, *, close: bool = False) -> list[list[bytes]]:
    return [[get_request(server, "/healthz", close=close)]]


def not_found(server: Server, clients: int) -> list[list[bytes]]:
    """A JSON 404 through every middleware and the URL resolver: the issue's first reference."""
    return [[get_request(server, "/api/v1/nothing-here")]]


def downloads(server: Server, clients: int) -> list[list[bytes]]:
    """Client n is developer n (of 64): their settings.json with their own token."""
    users = server.seeded["users"]
    return [
        [get_request(server, f"/api/v1/me/configs/{user['assignment']}/settings.json", user["token"])]
        for user in users[: max(clients, 1)]
    ]


def one_user(server: Server, clients: int) -> list[list[bytes]]:
    """Every client is the same developer: their assignment's row is shared by all requests."""
    return downloads(server, 1)


def key_fetches(server: Server, clients: int, *, close: bool = False) -> list[list[bytes]]:
    """Client n fetches for devices n, n + clients, ... in turn: all 1,000 distinct devices are used."""
    devices = server.seeded["devices"]
    return [
        [get_request(server, "/api/v1/device/key", token, close=close) for token in devices[n::clients]]
        for n in range(clients)
    ]


@dataclass(frozen=True)
class Measure:
    name: str
    group: str  # downloads or keys: what --only selects
    scenario: object
    clients: int
    expect: int = 200
    close: bool = False

    def load(self, server: Server) -> Load:
        build = self.scenario(server, self.clients, close=True) if self.close else self.scenario(server, self.clients)
        return Load(build, self.clients, self.expect)


# Measured in every round, in this order; /healthz at 16 is measured for either group.
MEASURES = [
    Measure("healthz@16", "both", healthz, 16),
    Measure("JSON 404@16", "downloads", not_found, 16, expect=404),
    Measure("download@16", "downloads", downloads, 16),
    Measure("download@1", "downloads", downloads, 1),
    Measure("download@64", "downloads", downloads, 64),
    Measure("one user@16", "downloads", one_user, 16),
    Measure("key@16", "keys", key_fetches, 16),
    Measure("key@64", "keys", key_fetches, 64),
    # As a device's helper calls it: a new connection (curl) for each fetch.
    Measure("healthz new conn@16", "keys", healthz, 16, close=True),
    Measure("key new conn@16", "keys", key_fetches, 16, close=True),
]
# (what, group, numerator, denominator, at least); None: printed for comparison only
RATIOS = [
    ("download / healthz at 16", "downloads", "download@16", "healthz@16", 0.25),
    ("download / JSON 404 at 16", "downloads", "download@16", "JSON 404@16", None),
    ("64 developers / one at a time", "downloads", "download@64", "download@1", 3.0),
    ("one developer 16 times / download", "downloads", "one user@16", "download@16", None),
    ("key fetch / healthz at 16", "keys", "key@16", "healthz@16", 0.6),
    ("the same, new connection each", "keys", "key new conn@16", "healthz new conn@16", None),
]
NO_ERRORS = [("download@64", "downloads"), ("key@64", "keys")]
MEMORY = [("downloads", "download@16", "downloads"), ("key fetches", "key@16", "keys")]


# What CPU alone allows, if a download under load cost what one costs alone: with C cores and T ms of CPU per
# request (workers, database server, load generator), no schedule serves more than C x 1000 / T requests/s.
# (what, the reference whose median rate the ceiling is divided by)
CEILINGS = [("download / healthz at 16", "healthz@16"), ("64 developers / one at a time", "download@1")]


def print_cpu(measures: list[Measure], rates: dict[str, list[float]], tallies: dict[str, list[Tally]]) -> None:
    """CPU per request and idle cores for each measure (median over the rounds), and the ceilings they set."""
    cores = len(os.sched_getaffinity(0))
    used: dict[str, CpuUse] = {}
    print(f"  {'CPU ms per request (median):':38} {'workers + database + load generator = all':>44}   idle cores")
    for m in measures:
        uses = [t.cpu for t in tallies[m.name] if t.cpu is not None]
        if not uses:
            continue
        databases = [u.database_ms for u in uses if u.database_ms is not None]
        use = used[m.name] = CpuUse(
            workers_ms=statistics.median(u.workers_ms for u in uses),
            database_ms=statistics.median(databases) if databases else None,
            load_ms=statistics.median(u.load_ms for u in uses),
            idle=statistics.median(u.idle for u in uses),
        )
        database = "-" if use.database_ms is None else f"{use.database_ms:.2f}"
        print(
            f"  {m.name:38} {use.workers_ms:>14.2f} + {database:>8} + {use.load_ms:>6.2f} = {use.total_ms:>6.2f}"
            f"   {use.idle:5.0%}"
        )
    alone = used.get("download@1")
    if alone is None:
        return
    ceiling = cores * 1000 / alone.total_ms
    for what, reference in CEILINGS:
        print(
            f"  {'CPU ceiling of ' + what:38} {ceiling / statistics.median(rates[reference]):>20.2f} x   "
            f"({cores} cores x 1000 / {alone.total_ms:.2f} ms, download@1's CPU = {ceiling:,.0f} requests/s)"
        )


def fetch_audit_rows(env: dict[str, str]) -> int:
    return int(manage(env, "shell", "-c", FETCH_AUDIT_ROWS).split()[-1])


def bench_database(kind: str, args) -> bool:
    groups = set(args.only.split(","))
    measures = [m for m in MEASURES if m.group in groups or m.group == "both"]
    shape = " ".join(f"{n}={os.getenv(n, 'default')}" for n in ("WEB_CONCURRENCY", "WEB_THREADS"))
    print(
        f"\n== {kind}: gunicorn -c config/gunicorn.conf.py ({shape}), {USERS} developers, {DEVICES} devices, "
        f"{args.rounds} rounds of {args.seconds:g} s per scenario"
    )
    ok = True
    with gunicorn_serving(kind, args.postgres_url, SEED.format(users=USERS, devices=DEVICES)) as server:
        loads = {m.name: m.load(server) for m in measures}
        if "keys" in groups:  # each device's first fetch is written and audited; the timed ones must not be
            first = count_requests(server, Load(key_fetches(server, 8), 8), 3 * DEVICES)
            before_fetches = fetch_audit_rows(server.env)
        for m in measures:  # warm every worker thread, connection and cache
            measure(server, loads[m.name], 0.5)
        rates: dict[str, list[float]] = {m.name: [] for m in measures}
        tallies: dict[str, list[Tally]] = {m.name: [] for m in measures}
        for _ in range(args.rounds):
            for m in measures:
                rate, tally = measure(server, loads[m.name], args.seconds, cpu=True)
                rates[m.name].append(rate)
                tallies[m.name].append(tally)
        print(f"  {'requests/s, p99 ms (min / median / max)':40}")
        for m in measures:
            p99 = [t.p99_ms() for t in tallies[m.name]]
            print(f"  {m.name:38} {spread(rates[m.name], 0):>20}   p99 {spread(p99, 1)}")
        print_cpu(measures, rates, tallies)
        for what, group, top, bottom, target in RATIOS:
            if group not in groups:
                continue
            ratios = [a / b for a, b in zip(rates[top], rates[bottom], strict=True)]
            if target is None:
                print(f"  {what:38} {spread(ratios):>20} x")
                continue
            passed = statistics.median(ratios) >= target
            ok &= passed
            print(f"  {what:38} {spread(ratios):>20} x   target >= {target}  {verdict(passed)}")
        for name, group in NO_ERRORS:
            if group not in groups:
                continue
            errors = sum(t.errors for t in tallies[name])
            timeouts = sum(t.timeouts for t in tallies[name])
            served = sum(t.done for t in tallies[name])
            passed = not (errors or timeouts)
            ok &= passed
            print(
                f"  {'errors, time-outs at ' + name:38} {errors}, {timeouts} of {served:,}   target 0, 0  {verdict(passed)}"
            )
        for name, tally_list in tallies.items():
            if (name, "downloads") not in NO_ERRORS and (name, "keys") not in NO_ERRORS:
                bad = [t for t in tally_list if t.errors or t.timeouts]
                for t in bad:
                    print(f"  (errors in {name}: {t.errors}, time-outs {t.timeouts}, statuses {t.statuses})")
        for what, name, group in MEMORY:
            if group not in groups:
                continue
            trace, growth, served, same = memory_trace(server, loads[name], MEMORY_REQUESTS, MEMORY_STEP)
            passed = same and max(growth) <= MEMORY_GROWTH_LIMIT_KIB
            ok &= passed
            print(
                f"  worker memory over {served:,} {what} (MiB, all workers after each {MEMORY_STEP:,}): "
                f"{' → '.join(f'{kib / 1024:.0f}' for kib in trace)}; growth per worker after the first "
                f"{MEMORY_STEP:,}: {', '.join(f'{g / 1024:+.1f}' for g in growth)} MiB"
                f"{'' if same else ' (a worker restarted)'}   target <= {MEMORY_GROWTH_LIMIT_KIB // 1024} MiB  "
                f"{verdict(passed)}"
            )
        if "keys" in groups:
            written = fetch_audit_rows(server.env) - before_fetches
            passed = written == 0 and not first.errors
            ok &= passed
            print(f"  audit rows written by the timed fetches: {written}   target 0  {verdict(passed)}")
            breakdown = subprocess.run(
                [sys.executable, "-m", "bench.key_fetch", "--breakdown"],
                cwd=ROOT,
                env={**server.env, "BENCH_DEVICE_TOKEN": server.seeded["devices"][0]},
                capture_output=True,
                text=True,
            )
            print(breakdown.stdout.rstrip() or breakdown.stderr[-2000:])
        check = subprocess.run(
            [sys.executable, "manage.py", "verify_audit"], cwd=ROOT, env=server.env, capture_output=True, text=True
        )
        print(
            f"  audit chain after the load: {check.stdout.splitlines()[0] if check.returncode == 0 else check.stderr}"
        )
        ok &= check.returncode == 0
    return ok


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url",
        default=postgres_url_default(),
        help="a database to connect to while creating (and dropping) the scratch one",
    )
    parser.add_argument("--only", default="downloads,keys", help="downloads, keys or both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per scenario and round")
    args = parser.parse_args(argv)
    print(machine())
    results = [bench_database(kind, args) for kind in database_kinds(args.databases)]
    raise SystemExit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
