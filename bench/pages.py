"""Server time and query count of the connections page, the audit list and the dashboard on the large database.

    .venv/bin/python -m bench.seed_large      # once
    .venv/bin/python -m bench.pages [--db data/bench-large.sqlite3]

Target: under 300 ms each on SQLite, with a query count that does not depend on the data size; the
run fails when the dashboard misses it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench._setup import django_on
from bench.seed_large import DEFAULT_DB

TARGET_MS = 300
PAGES = [
    "/connections/",
    "/connections/?state=failing&sort=-last_download",
    "/connections/?gateway=tokenbay&sort=user",
    "/audit/",
    "/audit/?action=probe.run",
    "/audit/?team=team-007",
    "/api/v1/audit-events/",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=DEFAULT_DB)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not args.db.exists():
        raise SystemExit(f"{args.db} does not exist: run `python -m bench.seed_large` first.")
    django_on(args.db)
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from portal.models import Membership

    staff = get_user_model().objects.get(username="user00000")
    auditor = Membership.objects.filter(role="auditor").select_related("user").first().user
    print(f"{'page':50} {'user':10} {'median ms':>9} {'queries':>7}  vs target")
    for user in (staff, auditor):
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)
        for url in PAGES:
            client.get(url)  # warm-up
            times = []
            for _ in range(args.runs):
                with CaptureQueriesContext(connection) as queries:
                    started = time.perf_counter()
                    response = client.get(url)
                    times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (url, response.status_code)
            median = statistics.median(times)
            role = "staff" if user.is_staff else "auditor"
            print(f"{url:50} {role:10} {median:9.0f} {len(queries):7}  {median / TARGET_MS:.2f}")
    if not time_dashboard(args.runs):
        raise SystemExit(f"The dashboard took longer than {TARGET_MS} ms.")


def time_dashboard(runs: int) -> bool:
    """The dashboard for staff (every team) and for one team's admin; False when either misses TARGET_MS."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from portal.models import Membership

    staff = get_user_model().objects.get(username="user00000")
    admin = Membership.objects.filter(role="admin", user__is_staff=False).select_related("user").first().user
    within = True
    for user, role in ((staff, "staff"), (admin, "team admin")):
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)
        client.get("/dashboard/")  # warm-up
        times = []
        for _ in range(runs):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get("/dashboard/")
                times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.status_code
        median = statistics.median(times)
        within = within and median < TARGET_MS
        print(f"{'/dashboard/':50} {role:10} {median:9.0f} {len(queries):7}  {median / TARGET_MS:.2f}")
    return within


if __name__ == "__main__":
    main()
