"""Server time and query count of the connections and audit pages (and their API) and the dashboard on the large database.

    .venv/bin/python -m bench.seed_large      # once
    .venv/bin/python -m bench.pages [--databases sqlite,postgresql] [--db data/bench-large.sqlite3]

SQLite reads the file bench.seed_large made; PostgreSQL reads the database named like
BENCH_POSTGRES_URL's plus `_large`, seeded by bench.seed_large the first time (about ten minutes).

Every filter of both pages, alone and combined, on the first page and on a deep one (the cursor a
reader holds after 199 pages of connections, or the `before` an audit reader reaches near the oldest
events), for a staff member and for an auditor of one team (whose rows are chosen by team). Target:
each under 300 ms, and the same number of queries on a deep page as on the first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

from bench._setup import (
    ROOT,
    create_postgres_database,
    database_kinds,
    django_on,
    drop_postgres_database,
    machine,
    postgres_database_exists,
    postgres_database_url,
    postgres_url_default,
)
from bench.seed_large import DEFAULT_DB

TARGET_MS = 300
DEEP_CONNECTIONS = 19_900  # rows before page 200 of the connections page
CONNECTION_QUERIES = [
    {},
    {"team": "team-007"},
    {"gateway": "tokenbay"},
    {"state": "never_downloaded"},
    {"state": "stale"},
    {"state": "failing"},
    {"state": "expired"},
    {"team": "team-007", "gateway": "tokenbay", "state": "failing"},
    {"user": "user00042"},
    {"user": "user00042", "state": "stale"},
    *(
        {"sort": f"{direction}{name}"}
        for name in ("user", "team", "gateway", "assigned", "last_download", "verdict", "expiry")
        for direction in ("", "-")
    ),
    {"state": "stale", "sort": "-last_download"},
]
AUDIT_QUERIES = [
    {},
    {"team": "team-007"},
    {"actor": "user00042"},
    {"action": "probe.run"},
    {"action": "key.created"},
    {"gateway": "tokenbay"},
    {"since": "{mid}"},
    {"until": "{mid}"},
    {"since": "{mid}", "until": "{late}"},
    {"team": "team-007", "action": "config.downloaded"},
    {"actor": "user00042", "since": "{mid}"},
    {"gateway": "tokenbay", "action": "probe.run", "until": "{mid}"},
]


def timed(client, url: str, runs: int) -> tuple[float, float, int, int]:
    """Median server time and CPU time in ms (SQLite runs in this process), the query count and the status of GET url."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm-up
    times, cpu = [], []
    for _ in range(runs):
        with CaptureQueriesContext(connection) as queries:
            started, started_cpu = time.perf_counter(), time.process_time()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
    return statistics.median(times), statistics.median(cpu), len(queries), response.status_code


def connection_urls(user, query: dict) -> list[tuple[str, str]]:
    """(label, url) of the first page and page 200 of the connections page, and the same in the API."""
    from gateways.connections import ConnectionFilters, connections_for
    from portal.pagination import cursor_after, sort_keys

    rows = connections_for(user, ConnectionFilters.from_query(query))
    keys = sort_keys(rows)
    last = rows.order_by(*(k.order_by() for k in keys))[DEEP_CONNECTIONS - 1 : DEEP_CONNECTIONS]
    deep = cursor_after(keys, last[0]) if last else None  # what 199 pages of Next links hand out
    urls = [("first", f"/connections/?{urlencode(query)}"), ("first", f"/api/v1/connections/?{urlencode(query)}")]
    if deep:
        urls.append(("page 200", f"/connections/?{urlencode({**query, 'cursor': deep})}"))
    return urls


def audit_urls(user, query: dict) -> list[tuple[str, str]]:
    """The newest page, and a page near the oldest matching events, of the audit page and its API."""
    from portal import audit
    from portal.models import AuditEvent

    events = audit.filter_events(AuditEvent.objects.visible_to(user), query)
    oldest = list(events.order_by("id").values_list("id", flat=True)[:150])
    urls = [("first", f"/audit/?{urlencode(query)}"), ("first", f"/api/v1/audit-events/?{urlencode(query)}")]
    if len(oldest) > 100:  # a `before` with one page of older events left: the deepest full page
        urls.append(("deep", f"/audit/?{urlencode({**query, 'before': oldest[-1]})}"))
    return urls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB)
    parser.add_argument("--postgres-url", default=postgres_url_default())
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child: measure this database URL in this process
    args = parser.parse_args()
    if args.one:
        raise SystemExit(measure_pages(args.one, args.db, args.runs))
    print(machine())
    ok = True
    for kind in database_kinds(args.databases):
        if kind == "sqlite":
            if not args.db.exists():
                raise SystemExit(f"{args.db} does not exist: run `python -m bench.seed_large` first.")
            url = f"sqlite:///{args.db}"
        else:
            url = postgres_database_url(args.postgres_url, "large")
            if not postgres_database_exists(url):
                print(f"seeding {url.rsplit('/', 1)[1]} once (bench.seed_large, about ten minutes)", flush=True)
                create_postgres_database(args.postgres_url, url)
                seeding = [sys.executable, "-m", "bench.seed_large", "--database-url", url]
                if subprocess.run(seeding, cwd=ROOT).returncode:
                    drop_postgres_database(args.postgres_url, url)
                    raise SystemExit("seeding failed")
        # Django binds to one database per process: each runs in its own.
        command = [sys.executable, "-m", "bench.pages", "--one", url, "--db", str(args.db), "--runs", str(args.runs)]
        ok &= subprocess.run(command, cwd=ROOT).returncode == 0
    raise SystemExit(0 if ok else 1)


def measure_pages(url: str, db: Path, runs: int) -> int:
    """Time every page of the lists on the database at `url`; 0 when all meet the targets."""
    os.environ["DATABASE_URL"] = url
    django_on(db)
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from portal.models import AuditEvent, Membership

    staff = get_user_model().objects.get(username="user00000")
    auditor = Membership.objects.filter(role="auditor").select_related("user").first().user
    newest = AuditEvent.objects.order_by("-id").values_list("created_at", flat=True).first()
    oldest = AuditEvent.objects.order_by("id").values_list("created_at", flat=True).first()
    moments = {
        "mid": (oldest + (newest - oldest) / 2).isoformat(),
        "late": (newest - (newest - oldest) / 10).isoformat(),
    }
    print(
        f"{connection.vendor}, {AuditEvent.objects.count():,} audit events; target < {TARGET_MS} ms, queries constant"
    )
    print(f"{'page':78} {'user':8} {'where':8} {'ms':>5} {'cpu ms':>6} {'queries':>7}")
    worst, uneven, failures = 0.0, [], []
    for user in (staff, auditor):
        role = "staff" if user.is_staff else "auditor"
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)
        families = [connection_urls(user, q) for q in CONNECTION_QUERIES]
        families += [audit_urls(user, {k: v.format(**moments) for k, v in q.items()}) for q in AUDIT_QUERIES]
        for family in families:
            counts = {}
            for where, url in family:
                ms, cpu, queries, status = timed(client, url, runs)
                worst = max(worst, ms)
                counts.setdefault(url.split("?")[0], set()).add(queries)
                if status != 200 or ms >= TARGET_MS:
                    failures.append(f"{url} ({role}): {status}, {ms:.0f} ms")
                print(f"{url[:78]:78} {role:8} {where:8} {ms:5.0f} {cpu:6.0f} {queries:7}")
            uneven += [f"{path} ({role}): {sorted(c)}" for path, c in counts.items() if len(c) > 1]
    # The dashboard: every team for staff, one team for its admin (issue 14: under 300 ms, constant queries).
    admin = Membership.objects.filter(role="admin", user__is_staff=False).select_related("user").first().user
    for user, role in ((staff, "staff"), (admin, "admin")):
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)
        ms, cpu, queries, status = timed(client, "/dashboard/", runs)
        worst = max(worst, ms)
        if status != 200 or ms >= TARGET_MS:
            failures.append(f"/dashboard/ ({role}): {status}, {ms:.0f} ms")
        print(f"{'/dashboard/':78} {role:8} {'first':8} {ms:5.0f} {cpu:6.0f} {queries:7}")
    print(f"slowest {worst:.0f} ms = {worst / TARGET_MS:.2f} x the target; {'PASS' if not failures else 'FAIL'}")
    print(f"queries on deep pages as on the first: {'PASS' if not uneven else 'FAIL ' + '; '.join(uneven)}")
    for failure in failures:
        print(f"  over target: {failure}")
    return 0 if not failures and not uneven else 1


if __name__ == "__main__":
    main()
