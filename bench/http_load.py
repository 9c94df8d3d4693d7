"""HTTP load on the portal as deployed: gunicorn with config/gunicorn.conf.py and production settings.

For each database (a fresh SQLite file, a fresh PostgreSQL database) the portal is migrated and
seeded with 64 developers, each with a key, an assignment and an access token; gunicorn serves it
on loopback, and a load generator in this process (asyncio, raw HTTP/1.1 with keep-alive, one
connection per simulated client) drives it. Rounds are interleaved, so every ratio compares
figures measured a few seconds apart on the same machine; each line prints min / median / max.

Targets (ratios, not timings):
  - a config download at concurrency 16 reaches >= 0.25 x the requests/s of /healthz at 16;
  - 64 different developers downloading at once reach >= 3 x the requests/s of one at a time;
  - zero errors and zero client time-outs at concurrency 64;
  - flat worker memory over 10,000 downloads (growth from the 2,000th to the 10,000th request).

    .venv/bin/python -m bench.http_load [--databases sqlite,postgresql] [--rounds 3] [--seconds 4]

A scenario is a function from the seeded portal and a connection's number to the request that
connection sends over and over (see SCENARIOS); add one there and name it in MEASURES.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench._setup import ROOT, postgres_url_default, scratch_database

USERS = 64
REQUEST_TIMEOUT = 10.0
MEMORY_REQUESTS = 10_000
MEMORY_STEP = 2_000
MEMORY_GROWTH_LIMIT_KIB = 4 * 1024  # per worker, from the 2,000th to the 10,000th request

SEED = """
import json
from django.contrib.auth import get_user_model
from gateways.models import Gateway
from gateways.services import assign_key, store_key
from portal.models import AccessToken, Membership, Team

User = get_user_model()
boss = User.objects.create_user("boss", is_staff=True)
team = Team.objects.create(name="Load", slug="load")
Membership.objects.create(team=team, user=boss, role="admin")
gateway = Gateway.objects.get(slug="tokaify")
users = []
for n in range({users}):
    user = User.objects.create_user(f"dev{{n:02d}}")
    Membership.objects.create(team=team, user=user, role="member")
    key = store_key(team=team, gateway=gateway, label=f"dev {{n}}", secret=f"sk-load-{{n:04d}}-0123456789abcdef", actor=boss)
    assignment = assign_key(key=key, username=user.username, actor=boss)
    _, token = AccessToken.issue(user, name="load")
    users.append({{"username": user.username, "assignment": assignment.id, "token": token}})
print("SEEDED " + json.dumps(users))
"""


@dataclass(frozen=True)
class Portal:
    host: str
    port: int
    users: list[dict]


# --- Scenarios: what connection number `n` asks, over and over ------------------------------------


def _get(portal: Portal, path: str, token: str = "") -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {portal.host}", "User-Agent: bench-http-load"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def healthz(portal: Portal, n: int) -> bytes:
    return _get(portal, "/healthz")


def not_found(portal: Portal, n: int) -> bytes:
    """A JSON 404 through every middleware and the URL resolver: the issue's first reference."""
    return _get(portal, "/api/v1/nothing-here")


def download(portal: Portal, n: int) -> bytes:
    """Developer n downloads their settings.json: token, assignment, decrypt, render, audit event."""
    user = portal.users[n % len(portal.users)]
    return _get(portal, f"/api/v1/me/configs/{user['assignment']}/settings.json", user["token"])


def download_one_user(portal: Portal, n: int) -> bytes:
    """Every connection is the same developer: their assignment's row is shared by all requests."""
    return download(portal, 0)


SCENARIOS: dict[str, Callable[[Portal, int], bytes]] = {
    "healthz": healthz,
    "not_found": not_found,
    "download": download,
    "download_one_user": download_one_user,
}

# (name, scenario, connections) measured in every round, in this order.
MEASURES = [
    ("healthz@16", "healthz", 16),
    ("JSON 404@16", "not_found", 16),
    ("download@16", "download", 16),
    ("download@1", "download", 1),
    ("download@64", "download", 64),
    ("one user@16", "download_one_user", 16),
]
# (what, numerator, denominator, at least); no target: printed for comparison only
TARGETS = [
    ("download / healthz at 16", "download@16", "healthz@16", 0.25),
    ("download / JSON 404 at 16", "download@16", "JSON 404@16", None),
    ("64 developers / one at a time", "download@64", "download@1", 3.0),
]


# --- The load generator ---------------------------------------------------------------------------


@dataclass
class Tally:
    done: int = 0
    errors: int = 0
    timeouts: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; return its status and whether the server keeps the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, headers.get("connection", "").lower() != "close"


async def _client(portal: Portal, request: bytes, tally: Tally, stop: Callable[[], bool]) -> None:
    reader = writer = None
    while not stop():
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(portal.host, portal.port)
            writer.write(request)
            status, keep = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT)
        except TimeoutError:
            tally.timeouts += 1
            keep = False
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            tally.errors += 1
            keep = False
            await asyncio.sleep(0.05)  # a refused connection would otherwise spin
        else:
            tally.statuses[status] = tally.statuses.get(status, 0) + 1
            if status == 200 or (status == 404 and b"nothing-here" in request):
                tally.done += 1
            else:
                tally.errors += 1
        if not keep and writer is not None:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _run(portal: Portal, scenario: str, connections: int, stop_when) -> Tally:
    tally = Tally()
    build = SCENARIOS[scenario]
    await asyncio.gather(
        *(_client(portal, build(portal, n), tally, lambda: stop_when(tally)) for n in range(connections))
    )
    return tally


def measure(portal: Portal, scenario: str, connections: int, seconds: float) -> tuple[float, Tally]:
    """Requests/s over `seconds` after a second of warm-up on the same connections."""
    started = {}

    def stop_when(tally: Tally) -> bool:
        now = time.perf_counter()
        if "at" not in started and now - started["begin"] >= 1.0:
            started.update(at=now, done=tally.done)
        return "at" in started and now - started["at"] >= seconds

    started["begin"] = time.perf_counter()
    tally = asyncio.run(_run(portal, scenario, connections, stop_when))
    elapsed = time.perf_counter() - started["at"]
    return (tally.done - started["done"]) / elapsed, tally


def count_requests(portal: Portal, scenario: str, connections: int, total: int) -> Tally:
    return asyncio.run(_run(portal, scenario, connections, lambda tally: tally.done + tally.errors >= total))


# --- The portal under gunicorn --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def production_env(database_env: dict, port: int) -> dict:
    import base64

    return {
        "PATH": os.environ["PATH"],
        "DEBUG": "False",
        "SECRET_KEY": "bench-" + secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1",
        "PORTAL_ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "PORTAL_AUDIT_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "LOG_LEVEL": "WARNING",
        "BIND": f"127.0.0.1:{port}",
        # Workers and threads as config/gunicorn.conf.py chooses them, unless set here to compare.
        **{name: os.environ[name] for name in ("WEB_CONCURRENCY", "WEB_THREADS") if name in os.environ},
        **database_env,
    }


@contextmanager
def serving(kind: str, postgres_url: str):
    with scratch_database(kind, postgres_url) as database_env:
        port = free_port()
        env = production_env(database_env, port)
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True)
        seeded = subprocess.run(
            [*manage, "shell", "-c", SEED.format(users=USERS)], cwd=ROOT, env=env, check=True, capture_output=True
        )
        users = json.loads(seeded.stdout.decode().split("SEEDED ", 1)[1])
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,  # the access log, written as in production
            stderr=subprocess.PIPE,
            text=True,
        )
        portal = Portal("127.0.0.1", port, users)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"gunicorn did not start: {server.stderr.read()[-2000:]}") from None
                    time.sleep(0.2)
            yield portal, server, env
        finally:
            server.terminate()
            server.wait(timeout=30)


def worker_pids(master: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(entry.name))
    return sorted(pids)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- Report ---------------------------------------------------------------------------------------


def spread(values: list[float], digits: int = 0) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in (min(values), statistics.median(values), max(values)))


def bench_database(kind: str, args) -> bool:
    shape = (
        f"WEB_CONCURRENCY={os.getenv('WEB_CONCURRENCY', 'default')} WEB_THREADS={os.getenv('WEB_THREADS', 'default')}"
    )
    print(f"\n== {kind}: gunicorn -c config/gunicorn.conf.py ({shape}), {USERS} developers, {args.rounds} rounds")
    ok = True
    with serving(kind, args.postgres_url) as (portal, server, env):
        for _, scenario, connections in MEASURES:  # warm every worker thread, connection and cache
            measure(portal, scenario, connections, 0.5)
        rates: dict[str, list[float]] = {name: [] for name, _, _ in MEASURES}
        failures: dict[str, Tally] = {}
        for _ in range(args.rounds):
            for name, scenario, connections in MEASURES:
                rate, tally = measure(portal, scenario, connections, args.seconds)
                rates[name].append(rate)
                if tally.errors or tally.timeouts:
                    failures[name] = tally
        print(f"{'requests/s (min / median / max)':34}")
        for name, _, _ in MEASURES:
            print(f"  {name:32} {spread(rates[name])}")
        for what, top, bottom, target in TARGETS:
            ratios = [a / b for a, b in zip(rates[top], rates[bottom], strict=True)]
            if target is None:
                print(f"  {what:32} {spread(ratios, 2)} x")
                continue
            passed = statistics.median(ratios) >= target
            ok &= passed
            print(f"  {what:32} {spread(ratios, 2)} x   target >= {target}  {'PASS' if passed else 'FAIL'}")
        at64 = failures.get("download@64", Tally())
        passed = not (at64.errors or at64.timeouts)
        ok &= passed
        print(
            f"  {'errors, time-outs at 64':32} {at64.errors}, {at64.timeouts}   target 0, 0  {'PASS' if passed else 'FAIL'}"
        )
        for name, tally in failures.items():
            if name != "download@64":
                print(f"  (errors in {name}: {tally.errors}, time-outs {tally.timeouts}, statuses {tally.statuses})")

        workers = worker_pids(server.pid)
        samples = []
        served = 0
        while served < MEMORY_REQUESTS:
            tally = count_requests(portal, "download", 16, MEMORY_STEP)
            served += tally.done + tally.errors
            samples.append([rss_kib(pid) for pid in workers])
        growth = [samples[-1][i] - samples[0][i] for i in range(len(workers))]
        passed = max(growth) <= MEMORY_GROWTH_LIMIT_KIB
        ok &= passed
        trace = " → ".join(f"{sum(s) // 1024}" for s in samples)
        print(
            f"  {'worker memory, MiB (all workers)':32} {trace} over {served} downloads; growth per worker after "
            f"the first {MEMORY_STEP}: {', '.join(f'{g / 1024:+.1f}' for g in growth)} MiB   "
            f"target <= {MEMORY_GROWTH_LIMIT_KIB // 1024} MiB  {'PASS' if passed else 'FAIL'}"
        )
        check = subprocess.run(
            [sys.executable, "manage.py", "verify_audit"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        print(
            f"  audit chain after the load: {check.stdout.splitlines()[0] if check.returncode == 0 else check.stderr}"
        )
        ok &= check.returncode == 0
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url",
        default=postgres_url_default(),
        help="a database to connect to while creating (and dropping) the scratch one",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per scenario and round")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    results = [bench_database(kind.strip(), args) for kind in args.databases.split(",") if kind.strip()]
    raise SystemExit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
