"""Parallel writers against the portal under gunicorn: none may fail, and the audit chain takes them all.

The server is real (gunicorn, several workers with threads, production settings) on its own
database: a fresh SQLite file in a temporary data folder, or, when the suite runs on PostgreSQL,
a fresh PostgreSQL database next to the test one. Everything goes through the HTTP API.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from bench._setup import create_postgres_database, drop_postgres_database, postgres_database_url
from tests.conftest import ROOT, TEST_AUDIT_KEYRING, TEST_KEYRING, run_manage
from tests.gateway_emulator import GatewayRules, running_emulator

pytestmark = pytest.mark.concurrency

# The suite's database kind: the server gets a database of the same kind (server_database).
ON_POSTGRESQL = os.getenv("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
CREATIONS = 64
ROTATED_KEYS = 8
ROTATIONS_PER_KEY = 6
# gunicorn as deployed (config/gunicorn.conf.py), with three processes of four threads each: twelve
# requests at once, across processes and within one. The access log is dropped: nobody reads the pipe.
GUNICORN = [
    *("-c", "config/gunicorn.conf.py", "--workers", "3", "--threads", "4", "--access-logfile", "/dev/null"),
    *("--timeout", "60", "--graceful-timeout", "5", "--log-level", "warning"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server_database(tmp_path):
    """Environment for a database of the server's own, of the kind the suite runs on."""
    if not ON_POSTGRESQL:
        yield {"PORTAL_DATA_DIR": str(tmp_path / "data")}
        return
    url = os.environ["DATABASE_URL"]
    database_url = postgres_database_url(url, f"load_{secrets.token_hex(4)}")
    create_postgres_database(url, database_url)
    try:
        yield {"DATABASE_URL": database_url, "PORTAL_DATA_DIR": str(tmp_path)}
    finally:
        drop_postgres_database(url, database_url)


def manage(*args: str, env: dict) -> str:
    result = run_manage(*args, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def portal(tmp_path):
    """A migrated portal under gunicorn, a staff account "boss" and its token: (base URL, token, env)."""
    log_path = tmp_path / "gunicorn.log"  # a pipe nobody reads during the run fills up and blocks every worker
    with server_database(tmp_path) as database_env, log_path.open("w") as log_file:
        env = {
            "PATH": os.environ["PATH"],
            "DEBUG": "False",
            "SECRET_KEY": "load-test-" + "x" * 50,
            "ALLOWED_HOSTS": "127.0.0.1",
            "PORTAL_ENCRYPTION_KEYS": TEST_KEYRING,
            "PORTAL_AUDIT_KEYS": TEST_AUDIT_KEYRING,
            "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
            "LOG_LEVEL": "WARNING",
            **database_env,
        }
        manage("migrate", "--noinput", env=env)
        # createsuperuser and issue_access_token in one process: each start of Django costs a second or two.
        commands = (
            "from django.core.management import call_command; "
            "call_command('createsuperuser', '--noinput', username='boss', email='boss@example.com'); "
            "call_command('issue_access_token', 'boss')"
        )
        shell_env = {**env, "DJANGO_SUPERUSER_PASSWORD": "pw-boss-1234567"}
        token = manage("shell", "-c", commands, env=shell_env).strip().splitlines()[-1]
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}", *GUNICORN],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/api/v1/gateways/", timeout=2).status_code == 401:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "gunicorn did not answer within 30 s"
                time.sleep(0.1)
            yield base, token, env
        finally:
            server.terminate()
            server.wait(timeout=30)
            log = log_path.read_text()
            assert "database is locked" not in log, log[-3000:]


def test_parallel_key_creations_and_rotations_during_downloads_all_succeed(portal):
    base, token, env = portal
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=32)
    with httpx.Client(base_url=base, headers=headers, timeout=60, limits=limits) as api:
        assert api.post("/api/v1/teams/", json={"name": "Load", "slug": "load"}).status_code == 201
        member = api.post("/api/v1/teams/load/members/", json={"username": "boss", "role": "admin"})
        assert member.status_code == 200  # the team's creator is its admin already: the role is set, nobody added

        def create(number: int) -> httpx.Response:
            secret = f"sk-load-{number:04d}-{secrets.token_hex(12)}"
            return api.post(
                "/api/v1/teams/load/keys/", json={"gateway": "tokaify", "label": f"load {number}", "secret": secret}
            )

        with ThreadPoolExecutor(max_workers=24) as pool:
            created = list(pool.map(create, range(CREATIONS)))
        assert Counter(r.status_code for r in created) == {201: CREATIONS}, [r.text for r in created][:3]
        listed = api.get("/api/v1/teams/load/keys/", params={"limit": 1000}).json()["results"]
        assert sorted(k["label"] for k in listed) == sorted(f"load {n}" for n in range(CREATIONS))

        # Rotations while the same keys are downloaded over and over.
        keys = [r.json()["id"] for r in created[:ROTATED_KEYS]]
        assignments = {}
        for key_id in keys:
            response = api.post(f"/api/v1/keys/{key_id}/assignments/", json={"username": "boss"})
            assert response.status_code == 201, response.text
            assignments[key_id] = response.json()["id"]
        rotating = threading.Event()
        rotating.set()
        last_secret: dict[str, str] = {}

        def rotate(key_id: str) -> list[int]:
            statuses = []
            for round_number in range(ROTATIONS_PER_KEY):
                secret = f"sk-rotated-{round_number}-{secrets.token_hex(12)}"
                statuses.append(api.patch(f"/api/v1/keys/{key_id}/", json={"secret": secret}).status_code)
                last_secret[key_id] = secret
            return statuses

        def download(key_id: str) -> list[int]:
            statuses = []
            while rotating.is_set() or not statuses:
                statuses.append(api.get(f"/api/v1/me/configs/{assignments[key_id]}/bash").status_code)
            return statuses

        with ThreadPoolExecutor(max_workers=2 * ROTATED_KEYS) as pool:
            downloads = [pool.submit(download, key_id) for key_id in keys]
            rotations = [pool.submit(rotate, key_id) for key_id in keys]
            rotation_statuses = [status for future in rotations for status in future.result()]
            rotating.clear()
            download_statuses = [status for future in downloads for status in future.result()]
        assert Counter(rotation_statuses) == {200: ROTATED_KEYS * ROTATIONS_PER_KEY}
        assert set(download_statuses) == {200}, Counter(download_statuses)

        # Every write is there: the last secret of each key, and one audit event per change.
        for key_id in keys:
            assert last_secret[key_id] in api.get(f"/api/v1/me/configs/{assignments[key_id]}/bash").text
        events = Counter(e["action"] for e in api.get("/api/v1/audit-events/?limit=1000").json()["results"])
        assert events["key.created"] == CREATIONS
        assert events["key.rotated"] == ROTATED_KEYS * ROTATIONS_PER_KEY
        assert events["config.downloaded"] >= len(download_statuses)
    if "DATABASE_URL" not in env:  # SQLite: the file is in WAL mode, and its journals are as private as it is
        database = Path(env["PORTAL_DATA_DIR"]) / "portal.sqlite3"
        with closing(sqlite3.connect(database)) as reader:  # the -wal and -shm files exist while one is open
            assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            for suffix in ("", "-wal", "-shm"):
                assert stat.S_IMODE(Path(f"{database}{suffix}").stat().st_mode) == 0o600, suffix


DEVELOPERS = 32
DOWNLOADS_EACH = 10
PROBED_KEYS = 40
SEED_DEVELOPERS = """
import json
from django.contrib.auth import get_user_model
from gateways.models import Gateway
from gateways.rules import AuthScheme
from gateways.services import assign_key, store_key
from portal.models import AccessToken, Membership, Team

boss = get_user_model().objects.get(username="boss")
gateway = Gateway.objects.create(slug="emulator", name="Emulator", base_url="{base_url}", auth_scheme=AuthScheme.X_API_KEY)
team, probed = Team.objects.create(name="Devs", slug="devs"), Team.objects.create(name="Probed", slug="probed")
for t in (team, probed):
    Membership.objects.create(team=t, user=boss, role="admin")
for n in range({probed_keys}):
    store_key(team=probed, gateway=gateway, label=f"probed {{n}}", secret=f"sk-probed-{{n:04d}}-0123456789", actor=boss)
developers = []
for n in range({developers}):
    user = get_user_model().objects.create_user(f"dev{{n:02d}}")
    Membership.objects.create(team=team, user=user, role="member")
    key = store_key(team=team, gateway=gateway, label=f"dev {{n}}", secret=f"sk-dev-{{n:04d}}-0123456789", actor=boss)
    assignment = assign_key(key=key, username=user.username, actor=boss)
    developers.append([assignment.id, AccessToken.issue(user, name="load")[1]])
print("SEEDED " + json.dumps(developers))
"""
COUNT_EVENTS = """
import json
from collections import Counter
from gateways.models import ProbeResult
from portal.models import AuditEvent, PendingAuditEvent
events = AuditEvent.objects.filter(action__in=["config.downloaded", "probe.run"])
probes = sorted(e.details["probe"] for e in events if e.action == "probe.run")
print("COUNTED " + json.dumps({
    "actions": Counter(events.values_list("action", flat=True)),
    "downloads_per_user": Counter(e.actor_username for e in events if e.action == "config.downloaded"),
    "probe_ids": probes == sorted(ProbeResult.objects.values_list("id", flat=True)) and len(set(probes)) == len(probes),
    "queued": PendingAuditEvent.objects.count(),
}))
"""


def test_parallel_downloads_by_many_developers_and_a_probe_run_keep_the_audit_chain_whole(portal):
    """32 developers download at once while `manage.py probe` saves its results: every event once, the chain intact."""
    base, _, env = portal
    with running_emulator(GatewayRules(accept_any_key=True, delay=0.05)) as gateway:
        seeded = manage(
            "shell",
            "-c",
            SEED_DEVELOPERS.format(base_url=gateway.base_url, developers=DEVELOPERS, probed_keys=PROBED_KEYS),
            env=env,
        )
        developers = json.loads(seeded.split("SEEDED ", 1)[1])
        probe_env = {**env, "PROBE_ALLOW_PRIVATE_IPS": "True"}
        probe = subprocess.Popen(
            [sys.executable, "manage.py", "probe", "--team", "probed", "--concurrency", "20"],
            cwd=ROOT,
            env=probe_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def download(developer) -> list[int]:
            assignment, token = developer
            # A connection per request, like curl: a kept-alive one can meet the server closing it when idle.
            no_reuse = httpx.Limits(max_keepalive_connections=0)
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, headers=headers, timeout=60, limits=no_reuse) as client:
                return [
                    client.get(f"/api/v1/me/configs/{assignment}/settings.json").status_code
                    for _ in range(DOWNLOADS_EACH)
                ]

        with ThreadPoolExecutor(max_workers=DEVELOPERS) as pool:
            statuses = [status for result in pool.map(download, developers) for status in result]
        out, err = probe.communicate(timeout=120)
    assert probe.returncode == 0, out[-2000:] + err[-2000:]
    assert f"{PROBED_KEYS} ok, 0 failing" in out
    assert Counter(statuses) == {200: DEVELOPERS * DOWNLOADS_EACH}
    counted = json.loads(manage("shell", "-c", COUNT_EVENTS, env=env).split("COUNTED ", 1)[1])
    assert counted["actions"] == {"config.downloaded": DEVELOPERS * DOWNLOADS_EACH, "probe.run": PROBED_KEYS}
    assert set(counted["downloads_per_user"].values()) == {DOWNLOADS_EACH} and len(counted["downloads_per_user"]) == 32
    assert counted["probe_ids"] is True
    assert counted["queued"] == 0  # every event queued during the rush was chained after it
    assert "The audit chain is intact" in manage("verify_audit", env=env)


@pytest.mark.skipif(not ON_POSTGRESQL, reason="SQLite has no server session to lose; CI runs this on PostgreSQL")
def test_requests_after_postgresql_ended_every_session_of_the_portal_all_succeed(portal):
    """As after a database restart: each kept connection is found gone before its thread's next query (config/postgresql)."""
    base, token, env = portal
    import psycopg

    def requests() -> Counter:
        # Enough at once to go through every worker thread (3 processes of 4), each on its own connection.
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as api, ThreadPoolExecutor(24) as pool:
            return Counter(pool.map(lambda _: api.get("/api/v1/teams/").status_code, range(96)))

    assert requests() == {200: 96}  # every thread now keeps a connection
    database = urlsplit(env["DATABASE_URL"]).path.lstrip("/")
    # Only the portal's own sessions: an autovacuum worker busy on the fresh database runs as the
    # superuser, and ending it is refused (and is not what a restart test is about).
    portal_sessions = "FROM pg_stat_activity WHERE datname = %s AND usename = current_user"
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as admin:
        ended = admin.execute(f"SELECT count(pg_terminate_backend(pid)) {portal_sessions}", [database]).fetchone()[0]
        assert ended >= 4, "the portal's threads should each have kept a session"
        deadline = time.monotonic() + 10
        while admin.execute(f"SELECT count(*) {portal_sessions}", [database]).fetchone()[0]:
            assert time.monotonic() < deadline, "sessions still there 10 s after pg_terminate_backend"
            time.sleep(0.05)
    assert requests() == {200: 96}
