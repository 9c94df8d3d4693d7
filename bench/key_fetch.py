"""The live-key fetch under load: GET /api/v1/device/key against /healthz in the same gunicorn.

    .venv/bin/python -m bench.key_fetch                      # SQLite
    .venv/bin/python -m bench.key_fetch --postgres postgres://portal:portal@127.0.0.1:5432/portal
    (the PostgreSQL run makes a fresh database beside the one named, and drops it after)

The portal runs as in production (the Dockerfile's gunicorn, DEBUG off) on a fresh database with
1,000 installed devices. A load generator on loopback (threads, a new connection per request, as
gunicorn's sync workers close each one) interleaves rounds of /healthz and of key fetches across
all devices. Printed, against the targets of issue 11:

- throughput of key fetches / throughput of /healthz at concurrency 16, per round, min / median / max
  (target: at least 0.6), with p50 and p99 latency;
- errors at concurrency 64 across the 1,000 distinct devices (target: 0);
- worker memory (RSS) before and after 10,000 fetches (target: flat, under 10 % growth);
- audit rows written by the timed fetches (target: 0: a fetch that changes nothing writes nothing);
- where one fetch's time goes, measured in-process.

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEVICES = 1000
RATIO_TARGET = 0.6
MEMORY_TARGET = 1.10
KEYRING = "YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtMTI="
AUDIT_KEYRING = "YXVkaXQtYXVkaXQtYXVkaXQtYXVkaXQtYXVkaXQtMTI="
SECRET = "sk-bench-live-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(database_url: str, data_dir: str) -> dict:
    return {
        "PATH": os.environ["PATH"],
        "DEBUG": "False",
        "SECRET_KEY": "bench-" + "x" * 50,
        "ALLOWED_HOSTS": "127.0.0.1",
        "PORTAL_ENCRYPTION_KEYS": KEYRING,
        "PORTAL_AUDIT_KEYS": AUDIT_KEYRING,
        "DATABASE_URL": database_url,
        "PORTAL_DATA_DIR": data_dir,
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        **(
            {"DATABASE_CONN_MAX_AGE": os.environ["DATABASE_CONN_MAX_AGE"]}
            if "DATABASE_CONN_MAX_AGE" in os.environ
            else {}
        ),
    }


def seed(devices: int) -> list[str]:
    """A team, one key, 50 developers holding it, `devices` installed devices; returns their tokens."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from gateways.models import Assignment, Device, Gateway
    from gateways.services import store_key
    from portal.models import Membership, Team, TokenScope, mint_token, token_digest

    call_command("migrate", verbosity=0)
    User = get_user_model()
    admin = User.objects.create_user("bench-admin")
    team = Team.objects.create(name="Bench", slug="bench")
    Membership.objects.create(team=team, user=admin, role="admin")
    key = store_key(team=team, gateway=Gateway.objects.get(slug="tokaify"), label="bench", secret=SECRET, actor=admin)
    users = User.objects.bulk_create([User(username=f"dev{i:03d}") for i in range(50)])
    Membership.objects.bulk_create([Membership(team=team, user=u, role="member") for u in users])
    assignments = Assignment.objects.bulk_create([Assignment(key=key, user=u) for u in users])
    now, tokens, rows = timezone.now(), [], []
    for number in range(devices):
        lookup_id, raw = mint_token(TokenScope.KEY_FETCH)
        assignment = assignments[number % len(assignments)]
        rows.append(
            Device(
                user_id=assignment.user_id,
                key=key,
                assignment=assignment,
                name=f"device {number}",
                platform="linux",
                install_lookup_id=secrets.token_hex(6),
                install_digest="-",
                install_expires_at=now,
                installed_at=now,
                token_lookup_id=lookup_id,
                token_digest=token_digest(raw),
            )
        )
        tokens.append(raw)
    Device.objects.bulk_create(rows, batch_size=500)
    return tokens


def audit_rows() -> int:
    from portal.models import AuditEvent

    return AuditEvent.objects.count()


def where_the_time_goes(tokens: list[str], runs: int = 2000) -> list[tuple[str, float]]:
    """Microseconds per step of one fetch, in-process (no HTTP), median of `runs`."""
    from django.test import Client

    from gateways.devices import device_for_fetch, fetch_key
    from gateways.models import Device
    from portal.models import TokenScope, token_lookup, token_matches

    raw = tokens[0]
    lookup_id = token_lookup(raw, TokenScope.KEY_FETCH)
    device = device_for_fetch(lookup_id)
    client = Client(HTTP_HOST="127.0.0.1")
    steps = {
        "read the device, its key and owner (one SELECT, compiled once)": lambda: device_for_fetch(lookup_id),
        "the same read compiled by the ORM each time (.only())": lambda: list(
            Device.objects.select_related("key", "user")
            .only("token_digest", "key__secret_ciphertext", "user__is_active")
            .filter(token_lookup_id=lookup_id)[:1]
        ),
        "the same with a full select_related": lambda: list(
            Device.objects.select_related("key__gateway", "key__team", "user").filter(token_lookup_id=lookup_id)[:1]
        ),
        "check the token (SHA-256, constant-time compare)": lambda: token_matches(device.token_digest, raw),
        "open the secret (AES-256-GCM)": lambda: device.key.reveal_secret(),
        "the whole fetch_key() (no write: seen within the minute)": lambda: fetch_key(raw_token=raw, request=None),
        "GET /api/v1/device/key through Django's middleware": lambda: client.get(
            "/api/v1/device/key", HTTP_AUTHORIZATION=f"Bearer {raw}"
        ),
        "GET /healthz through the same middleware": lambda: client.get("/healthz"),
    }
    fetch_key(raw_token=raw, request=None)  # the first fetch writes; the timed ones must not
    timings = []
    for label, step in steps.items():
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            step()
            samples.append(time.perf_counter() - started)
        timings.append((label, statistics.median(samples) * 1e6))
    return timings


def request_bytes(port: int, path: str, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n".encode()


def one_request(port: int, payload: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(payload)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    head = b"".join(chunks)[:16]
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, time.perf_counter() - started


def load(port: int, payloads: list[bytes], concurrency: int, *, seconds: float = 0, total: int = 0) -> dict:
    """Send requests from `concurrency` threads for `seconds`, or `total` requests in all."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(10**12))
    deadline = time.perf_counter() + seconds if seconds else None

    def worker() -> None:
        mine, bad = [], []
        while True:
            with lock:
                number = next(counter)
            if (deadline and time.perf_counter() >= deadline) or (total and number >= total):
                break
            try:
                status, elapsed = one_request(port, payloads[number % len(payloads)])
            except OSError as exc:
                bad.append(type(exc).__name__)
                continue
            if status != 200:
                bad.append(str(status))
            mine.append(elapsed)
        with lock:
            latencies.extend(mine)
            errors.extend(bad)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summary(latencies, errors, time.perf_counter() - started)


def summary(latencies: list[float], errors: list[str], wall: float) -> dict:
    latencies = sorted(latencies)
    return {
        "rps": len(latencies) / wall,
        "count": len(latencies),
        "errors": errors,
        "wall": wall,
        "latencies": latencies,
        "p50": latencies[len(latencies) // 2] * 1000 if latencies else 0,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0,
    }


def interleaved(port: int, runs: dict[str, list[bytes]], seconds: float, slice_seconds: float = 0.5) -> dict:
    """Each endpoint for `seconds` in all, alternating in short slices, so both meet the same machine.

    On a shared machine the load of other programs changes from second to second; slices of half a
    second, in turn, give each endpoint the same share of it.
    """
    slices: dict[str, list[dict]] = {name: [] for name in runs}
    for number in range(max(1, round(seconds / slice_seconds))):
        names = list(runs) if number % 2 == 0 else list(reversed(runs))
        for name in names:
            slices[name].append(load(port, runs[name], 16, seconds=slice_seconds))
    return {
        name: summary(
            [latency for run in done for latency in run["latencies"]],
            [error for run in done for error in run["errors"]],
            sum(run["wall"] for run in done),
        )
        for name, done in slices.items()
    }


def server_times(access_log: Path, start: int) -> dict[str, float]:
    """Median microseconds gunicorn spent per request, by path, from the access log past `start`."""
    times: dict[str, list[int]] = {}
    with access_log.open() as log:
        log.seek(start)
        for line in log:
            path, _, micros = line.split()
            times.setdefault(path, []).append(int(micros))
    return {path: statistics.median(values) for path, values in times.items()}


def worker_rss_kib(master: int) -> list[int]:
    """Resident memory of the gunicorn master's worker processes."""
    sizes = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(master) and "VmRSS" in fields:
            sizes.append(int(fields["VmRSS"].split()[0]))
    return sorted(sizes)


@contextmanager
def gunicorn(env: dict, workers: int, access_log: Path):
    port = free_port()
    # The Dockerfile's command: sync workers and an access log, here to a file with each request's time.
    command = [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}"]
    command += [
        "--workers",
        str(workers),
        "--access-logfile",
        str(access_log),
        "--access-logformat",
        "%(U)s %(s)s %(D)s",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if one_request(port, request_bytes(port, "/healthz", None))[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None:
                raise SystemExit(f"gunicorn stopped: {server.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise SystemExit("gunicorn did not answer within 60 s")
            time.sleep(0.2)
        yield port, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def run_one(database_url: str, args) -> bool:
    """Seed, serve and measure one database; True when every target is met."""
    data_dir = tempfile.mkdtemp(prefix="bench-key-fetch-")
    env = server_env(database_url, data_dir)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    tokens = seed(args.devices)
    kind = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    print(f"\n== {kind}: {args.devices} devices, gunicorn --workers {args.workers} (sync), DEBUG off")
    met = True
    access_log = Path(data_dir) / "access.log"
    with gunicorn(env, args.workers, access_log) as (port, master):
        health = [request_bytes(port, "/healthz", None)]
        fetches = [request_bytes(port, "/api/v1/device/key", token) for token in tokens]
        warm = load(port, fetches, 16, total=len(fetches))  # each device's first fetch: written and audited
        assert not warm["errors"], warm["errors"][:5]
        before_audit = audit_rows()
        log_start = access_log.stat().st_size
        ratios = []
        print(f"{'round':>5} {'healthz rps':>12} {'key rps':>8} {'ratio':>6} {'key p50 ms':>10} {'key p99 ms':>10}")
        for number in range(args.rounds):
            results = interleaved(port, {"healthz": health, "key": fetches}, args.seconds)
            for name, result in results.items():
                assert not result["errors"], (name, result["errors"][:5])
            ratio = results["key"]["rps"] / results["healthz"]["rps"]
            ratios.append(ratio)
            print(
                f"{number + 1:>5} {results['healthz']['rps']:>12.0f} {results['key']['rps']:>8.0f} {ratio:>6.2f} "
                f"{results['key']['p50']:>10.1f} {results['key']['p99']:>10.1f}"
            )
        low, mid, high = min(ratios), statistics.median(ratios), max(ratios)
        ok = mid >= RATIO_TARGET
        met &= ok
        print(
            f"key / healthz at concurrency 16: min {low:.2f}, median {mid:.2f}, max {high:.2f} "
            f"(target >= {RATIO_TARGET}: {'met' if ok else 'MISSED'})"
        )
        served = server_times(access_log, log_start)
        print(
            f"time in gunicorn per request (its access log), median: /healthz {served['/healthz']:.0f} us, "
            f"key {served['/api/v1/device/key']:.0f} us"
        )

        burst = load(port, fetches, 64, total=len(fetches) * 3)
        ok = not burst["errors"]
        met &= ok
        print(
            f"concurrency 64, {burst['count']} fetches over {len(fetches)} distinct devices: "
            f"{len(burst['errors'])} errors (target 0: {'met' if ok else 'MISSED'}), p99 {burst['p99']:.1f} ms"
        )

        rss_before = worker_rss_kib(master)
        load(port, fetches, 16, total=10_000)
        rss_after = worker_rss_kib(master)
        growth = sum(rss_after) / max(sum(rss_before), 1)
        ok = growth <= MEMORY_TARGET
        met &= ok
        print(
            f"worker RSS over 10,000 fetches: {sum(rss_before) / 1024:.1f} MiB -> {sum(rss_after) / 1024:.1f} MiB "
            f"({growth:.3f}x; target <= {MEMORY_TARGET}: {'met' if ok else 'MISSED'})"
        )

        written = audit_rows() - before_audit
        ok = written == 0
        met &= ok
        print(f"audit rows written by the timed fetches: {written} (target 0: {'met' if ok else 'MISSED'})")
    print("where one fetch's time goes (in-process, median of 2,000):")
    for label, micros in where_the_time_goes(tokens):
        print(f"  {micros:8.0f} us  {label}")
    return met


@contextmanager
def fresh_postgres(url: str):
    import psycopg

    name = f"{urlsplit(url).path.lstrip('/') or 'portal'}_bench_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="also run on PostgreSQL: a server URL (a fresh database is made beside it)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each timed run")
    parser.add_argument("--devices", type=int, default=DEVICES)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (the Dockerfile's default)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child run on one database
    args = parser.parse_args()
    if args.one:
        raise SystemExit(0 if run_one(args.one, args) else 1)
    passed = []
    forward = ["--rounds", str(args.rounds), "--seconds", str(args.seconds), "--devices", str(args.devices)]
    forward += ["--workers", str(args.workers)]
    # Each database in its own process: Django is set up once per process.
    sqlite = f"sqlite:///{tempfile.mkdtemp(prefix='bench-key-fetch-')}/portal.sqlite3"
    passed.append(
        subprocess.run([sys.executable, "-m", "bench.key_fetch", "--one", sqlite, *forward], cwd=ROOT).returncode
    )
    if args.postgres:
        with fresh_postgres(args.postgres) as url:
            run = [sys.executable, "-m", "bench.key_fetch", "--one", url, *forward]
            passed.append(subprocess.run(run, cwd=ROOT).returncode)
    raise SystemExit(1 if any(passed) else 0)


if __name__ == "__main__":
    main()
