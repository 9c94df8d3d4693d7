"""Shared parts of the benchmarks: Django on a scratch database, the portal under gunicorn, a load generator.

Nothing here touches the real database: every benchmark runs on a fresh SQLite file or a fresh
PostgreSQL database made beside BENCH_POSTGRES_URL (dropped after), or on the large seeded one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES = "postgres://portal:portal@127.0.0.1:5432/portal"
REQUEST_TIMEOUT = 10.0  # a client that waits longer counts a time-out


def django_on(database: Path | None = None) -> Path:
    """Configure Django on a SQLite file (default: a new temporary one), or on DATABASE_URL if set, and migrate it."""
    sys.path.insert(0, str(ROOT))
    database = database or Path(tempfile.mkdtemp()) / "bench.sqlite3"
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{database}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("PORTAL_ENCRYPTION_KEYS", "YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtMTI=")
    os.environ.setdefault("PORTAL_DATA_DIR", str(database.parent))
    os.environ.setdefault("PROBE_ALLOW_PRIVATE_IPS", "True")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return database


def postgres_database_url(postgres_url: str, suffix: str) -> str:
    """The URL of the database named like postgres_url's plus `_suffix`, on the same server."""
    name = f"{urlsplit(postgres_url).path.lstrip('/') or 'portal'}_{suffix}"
    return urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))


def postgres_database_exists(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url).close()
    except psycopg.OperationalError:
        return False
    return True


def create_postgres_database(admin_url: str, url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{urlsplit(url).path.lstrip("/")}"')


def drop_postgres_database(admin_url: str, url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        # Not WITH (FORCE), which refuses to end an autovacuum worker (not our role's session) busy on a
        # freshly loaded database: our sessions are ended, and DROP DATABASE stops autovacuum itself.
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND usename = current_user AND pid <> pg_backend_pid()",
            [name],
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@contextmanager
def scratch_database(kind: str, postgres_url: str = DEFAULT_POSTGRES) -> Iterator[dict[str, str]]:
    """Environment for a fresh database, "sqlite" or "postgresql" (created next to postgres_url), dropped after."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield {"PORTAL_DATA_DIR": folder, "DATABASE_URL": f"sqlite:///{folder}/portal.sqlite3"}
        return
    if kind != "postgresql":
        raise SystemExit(f"unknown database {kind!r}: sqlite or postgresql")
    url = postgres_database_url(postgres_url, f"bench_{secrets.token_hex(4)}")
    create_postgres_database(postgres_url, url)
    try:
        with tempfile.TemporaryDirectory() as folder:
            yield {"DATABASE_URL": url, "PORTAL_DATA_DIR": folder}
    finally:
        drop_postgres_database(postgres_url, url)


def postgres_url_default() -> str:
    """Where to create scratch PostgreSQL databases: BENCH_POSTGRES_URL, a PostgreSQL DATABASE_URL, or the local one."""
    url = os.getenv("DATABASE_URL", "")
    return os.getenv("BENCH_POSTGRES_URL") or (
        url if url.startswith(("postgres://", "postgresql://")) else DEFAULT_POSTGRES
    )


def database_kinds(value: str) -> list[str]:
    """The --databases option: a comma-separated list of sqlite and postgresql."""
    return [kind.strip() for kind in value.split(",") if kind.strip()]


def machine() -> str:
    return f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start"


def spread(values: list[float], digits: int = 2) -> str:
    """min / median / max."""
    return " / ".join(f"{v:.{digits}f}" for v in (min(values), statistics.median(values), max(values)))


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


# --- The portal under gunicorn, as deployed -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def production_env(database_env: dict[str, str], port: int) -> dict[str, str]:
    """Production settings (DEBUG off, fresh keyrings) for a server on 127.0.0.1:port."""
    return {
        "PATH": os.environ["PATH"],
        "DEBUG": "False",
        "SECRET_KEY": "bench-" + secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1",
        "PORTAL_ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "PORTAL_AUDIT_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "BIND": f"127.0.0.1:{port}",
        # Workers, threads and connection age as config/gunicorn.conf.py and settings choose them,
        # unless set here to compare.
        **{
            name: os.environ[name]
            for name in ("WEB_CONCURRENCY", "WEB_THREADS", "DATABASE_CONN_MAX_AGE")
            if name in os.environ
        },
        **database_env,
    }


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    pid: int
    env: dict[str, str]
    seeded: object  # what the seed script printed after SEEDED, as JSON


def manage(env: dict[str, str], *args: str, root: Path = ROOT) -> str:
    """Run manage.py (of the checkout at `root`) with env; its standard output."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"manage.py {args[0]} failed: {done.stderr[-3000:]}")
    return done.stdout


@contextmanager
def gunicorn_serving(kind: str, postgres_url: str, seed: str, root: Path = ROOT) -> Iterator[Server]:
    """A scratch database, migrated and seeded by `seed` (run by `manage.py shell`), served by gunicorn.

    gunicorn runs with config/gunicorn.conf.py, as the Dockerfile runs it; its access log goes
    nowhere (written as in production, read by nobody). `root` is the checkout it serves
    (bench.compare serves two).
    """
    with scratch_database(kind, postgres_url) as database_env, tempfile.TemporaryFile("w+") as errors:
        port = free_port()
        env = production_env(database_env, port)
        manage(env, "migrate", "--noinput", root=root)
        seeded = json.loads(manage(env, "shell", "-c", seed, root=root).split("SEEDED ", 1)[1])
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi"],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            # A file, not a pipe: nobody reads a pipe during the load, and once its buffer is full a
            # worker thread writing a log line blocks with the logging lock held, and so do all the others.
            stderr=errors,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        errors.seek(0)
                        raise SystemExit(f"gunicorn did not start: {errors.read()[-2000:]}") from None
                    time.sleep(0.2)
            yield Server("127.0.0.1", port, server.pid, env, seeded)
        finally:
            server.terminate()
            server.wait(timeout=30)


def worker_pids(master: int) -> list[int]:
    """The gunicorn master's worker processes."""
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
    """Resident memory of a process in KiB; 0 when it is gone (a restarted worker)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- Where the CPU goes: the workers, the database server, the load generator, idle cores ---------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def database_server_pids(server: Server) -> list[int]:
    """The local PostgreSQL server's processes when the portal uses PostgreSQL; none for SQLite, which
    runs inside the workers (nor for a server on another machine, whose CPU this one cannot see)."""
    if not server.env.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@dataclass(frozen=True)
class CpuClock:
    """CPU seconds used so far by each worker and database server process and by this load generator;
    the machine's idle and total clock ticks (/proc/stat)."""

    workers: dict[int, float]
    database: dict[int, float]
    load: float
    idle: int
    total: int

    @classmethod
    def read(cls, server: Server) -> CpuClock:
        ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return cls(
            workers={pid: cpu_seconds(pid) for pid in worker_pids(server.pid)},
            database={pid: cpu_seconds(pid) for pid in database_server_pids(server)},
            load=time.process_time(),
            idle=ticks[3] + ticks[4],  # idle and iowait
            total=sum(ticks),
        )


def _used(start: dict[int, float], end: dict[int, float]) -> float:
    """CPU seconds between two readings; a process started in between counts from zero."""
    return sum(seconds - start.get(pid, 0.0) for pid, seconds in end.items())


@dataclass(frozen=True)
class CpuUse:
    """CPU milliseconds per request (workers, database server processes, load generator) and the share of
    the machine's cores that stayed idle: a request that waits (a lock, a sleep) leaves cores idle."""

    workers_ms: float
    database_ms: float | None  # None: no database server process here (SQLite)
    load_ms: float
    idle: float

    @property
    def total_ms(self) -> float:
        return self.workers_ms + (self.database_ms or 0.0) + self.load_ms

    @classmethod
    def between(cls, start: CpuClock, end: CpuClock, requests: int) -> CpuUse:
        per = 1000 / max(requests, 1)
        return cls(
            workers_ms=_used(start.workers, end.workers) * per,
            database_ms=_used(start.database, end.database) * per if end.database else None,
            load_ms=(end.load - start.load) * per,
            idle=(end.idle - start.idle) / max(end.total - start.total, 1),
        )


# --- The load generator: asyncio, raw HTTP/1.1, one connection per simulated client ---------------


def get_request(server: Server, path: str, token: str = "", *, close: bool = False) -> bytes:
    """A GET as bytes; `close` asks for a new connection per request, as a command-line client makes."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {server.host}", "User-Agent: bench-http-load"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class Tally:
    done: int = 0
    errors: int = 0
    timeouts: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    cpu: CpuUse | None = None  # measured only when asked (measure(..., cpu=True))

    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[int(len(ordered) * 0.99)] * 1000 if ordered else 0.0


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


async def _client(server: Server, requests: list[bytes], expect: int, tally: Tally, stop: Callable[[], bool]) -> None:
    """Send `requests` in turn, over and over, until stop(); a connection is reused while the server keeps it."""
    reader = writer = None
    turn = 0
    while not stop():
        request = requests[turn % len(requests)]
        turn += 1
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(server.host, server.port)
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
            if status == expect:
                tally.done += 1
                tally.latencies.append(time.perf_counter() - started)
            else:
                tally.errors += 1
        if not keep and writer is not None:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


@dataclass(frozen=True)
class Load:
    """What `connections` clients send: client n sends requests[n] in turn (distinct users, devices...)."""

    requests: list[list[bytes]]
    connections: int
    expect: int = 200


async def _run(server: Server, load: Load, stop_when: Callable[[Tally], bool]) -> Tally:
    tally = Tally()
    await asyncio.gather(
        *(
            _client(server, load.requests[n % len(load.requests)], load.expect, tally, lambda: stop_when(tally))
            for n in range(load.connections)
        )
    )
    return tally


def measure(
    server: Server, load: Load, seconds: float, warm_up: float = 1.0, *, cpu: bool = False
) -> tuple[float, Tally]:
    """Requests/s over `seconds` after `warm_up` seconds on the same connections; the tally of the timed part,
    with the CPU its requests used when `cpu` (reading it costs the load generator a few milliseconds)."""
    marks: dict[str, float] = {"begin": time.perf_counter()}
    clocks: list[CpuClock] = []
    timed = Tally()

    def stop_when(tally: Tally) -> bool:
        now = time.perf_counter()
        if "at" not in marks and now - marks["begin"] >= warm_up:
            if cpu:
                clocks.append(CpuClock.read(server))
            marks.update(at=time.perf_counter(), done=tally.done, errors=tally.errors, timeouts=tally.timeouts)
            marks["latencies"] = len(tally.latencies)
        return "at" in marks and now - marks["at"] >= seconds

    tally = asyncio.run(_run(server, load, stop_when))
    elapsed = time.perf_counter() - marks["at"]
    timed.done = tally.done - int(marks["done"])
    timed.errors = tally.errors - int(marks["errors"])
    timed.timeouts = tally.timeouts - int(marks["timeouts"])
    timed.latencies = tally.latencies[int(marks["latencies"]) :]
    timed.statuses = tally.statuses
    if cpu:
        timed.cpu = CpuUse.between(clocks[0], CpuClock.read(server), timed.done)
    return timed.done / elapsed, timed


def count_requests(server: Server, load: Load, total: int) -> Tally:
    """Send `total` requests in all."""
    return asyncio.run(_run(server, load, lambda tally: tally.done + tally.errors + tally.timeouts >= total))


def memory_trace(server: Server, load: Load, total: int, step: int) -> tuple[list[int], list[int], int, bool]:
    """Workers' RSS (KiB, summed) after every `step` of `total` requests, growth per worker after the first step,
    the requests sent and whether the same workers served them all (none restarted)."""
    workers = worker_pids(server.pid)
    samples, served = [], 0
    while served < total:
        tally = count_requests(server, load, step)
        served += tally.done + tally.errors + tally.timeouts
        samples.append([rss_kib(pid) for pid in workers])
    growth = [samples[-1][i] - samples[0][i] for i in range(len(workers))]
    return [sum(sample) for sample in samples], growth, served, worker_pids(server.pid) == workers
