"""The portal when what it depends on fails: its database (down, or never migrated) and its collected static files.

Real processes with DEBUG off, as deployed: gunicorn with config/gunicorn.conf.py and `manage.py` commands, with
a DATABASE_URL whose port nothing listens on.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench._setup import create_postgres_database, drop_postgres_database, postgres_database_url
from tests.conftest import ROOT, TEST_AUDIT_KEYRING, TEST_KEYRING
from tests.test_concurrency import ON_POSTGRESQL, free_port

PASSWORD = "s3cret-pw"
API_TOKEN = "ptl_0123456789ab_" + "x" * 43
DEVICE_TOKEN = "pkf_0123456789ab_" + "y" * 43
STATIC_SENTENCE = "Static files are not collected in STATIC_ROOT ({}): run `manage.py collectstatic --noinput`."


def portal_env(data_dir: Path, static_root: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(data_dir),
        "DEBUG": "False",
        "SECRET_KEY": "fixo-" + "x" * 50,
        "ALLOWED_HOSTS": "127.0.0.1,testserver",
        "PORTAL_ENCRYPTION_KEYS": TEST_KEYRING,
        "PORTAL_AUDIT_KEYS": TEST_AUDIT_KEYRING,
        "PORTAL_DATA_DIR": str(data_dir),
        "PORTAL_NAME": "Acme portal",
        "STATIC_ROOT": str(static_root),
        "WEB_CONCURRENCY": "1",
        **extra,
    }


def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


def readyz_in_a_process(env: dict) -> tuple[int, dict]:
    """/readyz answered by a portal process of its own with exactly `env`: (status, body)."""
    script = (
        "import django, json; django.setup(); from django.test import Client; r = Client().get('/readyz');"
        "print(r.status_code, json.dumps(r.json()))"
    )
    env = {**env, "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    status, _, body = done.stdout.strip().splitlines()[-1].partition(" ")
    return int(status), json.loads(body)


@pytest.fixture(scope="module")
def collected_static(tmp_path_factory) -> Path:
    """A STATIC_ROOT with `collectstatic` run, as the README's deploy steps say."""
    root = tmp_path_factory.mktemp("static")
    done = manage("collectstatic", "--noinput", env=portal_env(tmp_path_factory.mktemp("collect"), root))
    assert done.returncode == 0, done.stderr[-800:]
    return root


class Gunicorn:
    """gunicorn as the image runs it, on a free port, its log in a file."""

    def __init__(self, env: dict, log: Path):
        self.port = free_port()
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi"],
            cwd=ROOT,
            env={**env, "BIND": f"127.0.0.1:{self.port}"},
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )
        deadline = time.monotonic() + 40
        while True:
            assert self.process.poll() is None, log.read_text()[-2000:]
            try:
                if self.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=30, **kwargs)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def database_down(tmp_path_factory, collected_static):
    """A production gunicorn whose PostgreSQL refuses connections (nothing listens on its port): (server, env, port)."""
    data = tmp_path_factory.mktemp("pgdown")
    port = free_port()
    env = portal_env(data, collected_static, DATABASE_URL=f"postgres://portal:{PASSWORD}@127.0.0.1:{port}/portal")
    server = Gunicorn(env, data / "gunicorn.log")
    yield server, env, port
    server.stop()


# --- A page while the database is down --------------------------------------------------------------------------


def test_a_signed_in_page_while_the_database_is_down_is_a_503_page_saying_so(database_down):
    server, _, port = database_down
    response = server.get("/teams/", cookies={"sessionid": "abcdefghijklmnopqrstuvwxyz012345"})
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["retry-after"] == "60"
    assert "cannot reach its database" in response.text and "Try again in a minute" in response.text
    log = server.log.read_text()
    assert f"The database at 127.0.0.1:{port} cannot be used" in log
    assert PASSWORD not in log


# --- The API while the database is down -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        {"headers": {"Authorization": f"Bearer {API_TOKEN}"}},  # straight to the view (TokenApiMiddleware)
        {"cookies": {"sessionid": "abcdefghijklmnopqrstuvwxyz012345"}},  # through sessions and sign-in
    ],
    ids=["token", "session"],
)
def test_an_api_request_while_the_database_is_down_is_a_503_with_a_sentence(database_down, credentials):
    server, _, _ = database_down
    response = server.get("/api/v1/me/configs/1/bash", **credentials)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "60"
    assert response.json() == {
        "detail": "The portal cannot reach its database right now; the error is logged. Try again in a minute."
    }


# --- A live device's key fetch (apiKeyHelper) while the database is down ----------------------------------------


def test_a_device_key_fetch_while_the_database_is_down_is_a_503_sentence_in_plain_text(database_down):
    server, _, _ = database_down
    response = server.get("/api/v1/device/key", headers={"Authorization": f"Bearer {DEVICE_TOKEN}"})
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["retry-after"] == "60"
    assert response.text == "Acme portal cannot reach its database right now; try again in a minute.\n"


@pytest.mark.django_db
def test_the_installed_helper_tells_the_developer_the_database_is_down_not_that_the_key_was_refused(
    database_down, tmp_path, tokaify_key
):
    from gateways.config import live

    server, _, _ = database_down
    setup = live.LiveSetup(
        portal_name="Acme portal",
        key_url=f"http://127.0.0.1:{server.port}/api/v1/device/key",
        device_name="laptop",
        platform="linux",
        config=live.live_config(tokaify_key.gateway, tokaify_key),
        token=DEVICE_TOKEN,
    )
    helper = tmp_path / "helper.sh"
    helper.write_text(live.render_helper_sh(setup))
    (tmp_path / live.TOKEN_FILE).write_text(f"header = Authorization: Bearer {DEVICE_TOKEN}\n")
    done = subprocess.run(["sh", str(helper)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == "Acme portal cannot reach its database right now; try again in a minute."


# --- Commands while the database is down, or on a database never migrated ----------------------------------------


@pytest.mark.parametrize("command", [["probe", "--due"], ["notify"], ["issue_access_token", "alice"]])
def test_a_command_while_the_database_is_down_stops_with_one_sentence_naming_where_it_is(database_down, command):
    _, env, port = database_down
    done = manage(*command, env=env)
    assert done.returncode == 1
    assert done.stderr.startswith(f"Database error: the database at 127.0.0.1:{port} cannot be used"), done.stderr
    assert "Check that PostgreSQL is running" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # no traceback
    assert PASSWORD not in done.stderr


def test_a_command_on_a_database_never_migrated_says_to_run_migrate(tmp_path, collected_static):
    done = manage("issue_access_token", "alice", env=portal_env(tmp_path, collected_static))
    assert done.returncode == 1
    assert "no such table" in done.stderr and "`manage.py migrate`" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# --- /readyz on a database without the portal's tables ------------------------------------------------------------


def test_readyz_on_a_database_never_migrated_blames_the_database_not_the_keyrings(tmp_path, collected_static):
    status, body = readyz_in_a_process(portal_env(tmp_path, collected_static))
    assert status == 503
    assert body["checks"] == {"database": "not migrated", "vault": "ok", "audit": "ok", "static": "ok"}


@pytest.mark.skipif(not ON_POSTGRESQL, reason="SQLite makes its file on first use; CI runs this on PostgreSQL")
def test_readyz_on_an_empty_postgresql_database_says_not_migrated(tmp_path, collected_static):
    url = os.environ["DATABASE_URL"]
    empty = postgres_database_url(url, f"fixo_{secrets.token_hex(4)}")
    create_postgres_database(url, empty)
    try:
        status, body = readyz_in_a_process(portal_env(tmp_path, collected_static, DATABASE_URL=empty))
    finally:
        drop_postgres_database(url, empty)
    assert status == 503
    assert body["checks"] == {"database": "not migrated", "vault": "ok", "audit": "ok", "static": "ok"}


def test_readyz_after_migrate_and_collectstatic_is_ready(tmp_path, collected_static):
    env = portal_env(tmp_path, collected_static)
    assert manage("migrate", "--noinput", env=env).returncode == 0
    assert readyz_in_a_process(env) == (
        200,
        {"status": "ok", "checks": {"database": "ok", "vault": "ok", "audit": "ok", "static": "ok"}},
    )


# --- Static files never collected (DEBUG off) ---------------------------------------------------------------------


def test_gunicorn_without_collectstatic_says_what_to_run_once_and_is_not_ready(tmp_path):
    never_collected = tmp_path / "never-collected"
    env = portal_env(tmp_path / "data", never_collected, WEB_CONCURRENCY="2")
    assert manage("migrate", "--noinput", env=env).returncode == 0
    server = Gunicorn(env, tmp_path / "gunicorn.log")
    try:
        ready = server.get("/readyz")
        page = server.get("/login/")
        api = server.get("/api/v1/gateways/")  # the API needs no static files
    finally:
        server.stop()
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": "ok", "vault": "ok", "audit": "ok", "static": "not collected"}
    assert page.status_code == 500 and "The portal failed on its side" in page.text
    assert api.status_code == 401
    log = server.log.read_text()
    sentence = STATIC_SENTENCE.format(never_collected)
    # Once at start (the first of the two processes), then with each failing page and each /readyz.
    assert log.count(sentence) == 3, log[-3000:]
    # The start-up one is gunicorn's own warning line. It may come after /readyz's: the second process can
    # answer before the first has finished starting (CI saw it once).
    assert f"[WARNING] {sentence}" in log and f"readyz: {sentence}" in log, log[-3000:]
