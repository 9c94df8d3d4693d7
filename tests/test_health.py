"""/healthz and /readyz: answered for an orchestrator on plain HTTP, whatever host it names."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from portal import crypto
from portal.models import AuditEvent
from tests.conftest import ROOT, TEST_AUDIT_KEYRING, TEST_KEYRING
from tests.test_concurrency import free_port

PRODUCTION = {
    "PATH": os.environ["PATH"],
    "DEBUG": "False",
    "SECRET_KEY": "health-" + "x" * 50,
    "ALLOWED_HOSTS": "portal.example.com",
    "SECURE_SSL_REDIRECT": "True",
    "PORTAL_ENCRYPTION_KEYS": TEST_KEYRING,
    "PORTAL_AUDIT_KEYS": TEST_AUDIT_KEYRING,
    "LOG_LEVEL": "CRITICAL",
}


@pytest.mark.django_db
def test_healthz_answers_without_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"
    assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies


@pytest.mark.django_db
def test_readyz_checks_the_database_and_both_keyrings(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "vault": "ok", "audit": "ok", "static": "ok"},
    }


@pytest.mark.django_db
def test_readyz_names_an_unusable_audit_keyring_without_quoting_it(client, settings):
    settings.PORTAL_AUDIT_KEYS = "not-a-key"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "vault": "ok", "audit": "unusable", "static": "ok"}
    assert "not-a-key" not in response.content.decode()


@pytest.mark.django_db
def test_health_checks_pass_the_host_check_and_https_redirect(client, settings):
    """The orchestrator asks over plain HTTP with the container's address as host."""
    settings.ALLOWED_HOSTS = ["portal.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    for path in ("/healthz", "/readyz"):
        assert client.get(path, HTTP_HOST="172.17.0.5:8000").status_code == 200
    assert client.get("/login/", HTTP_HOST="172.17.0.5:8000").status_code == 400  # everything else still checks


def test_readyz_says_when_the_database_is_unreachable(tmp_path):
    """A real portal process whose PostgreSQL does not answer: not ready, but alive."""
    script = (
        "import django, json; django.setup(); from django.test import Client; c = Client(); "
        "print(json.dumps([c.get(p).status_code for p in ('/healthz', '/readyz')] + [c.get('/readyz').json()]))"
    )
    env = {
        **PRODUCTION,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "ALLOWED_HOSTS": "testserver",
        "SECURE_SSL_REDIRECT": "False",
        "PORTAL_DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"postgres://portal:portal@127.0.0.1:{free_port()}/nothing",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    healthz, readyz, body = json.loads(result.stdout.strip().splitlines()[-1])
    assert (healthz, readyz) == (200, 503)
    checks = {"database": "unreachable", "vault": "ok", "audit": "ok", "static": "not collected"}  # no collectstatic
    assert body == {"status": "unavailable", "checks": checks}


def dockerfile_healthcheck() -> list[str]:
    """The Dockerfile's HEALTHCHECK command, as written (it asks where BIND says gunicorn listens)."""
    text = (ROOT / "Dockerfile").read_text()
    command = json.loads(re.search(r"HEALTHCHECK [^\n]*\\\n\s*CMD (\[.*\])", text).group(1))
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


def run_healthcheck(bind: str) -> int:
    """The HEALTHCHECK's exit status, run in the image's working folder with the container's BIND."""
    env = {"PATH": os.environ["PATH"], "BIND": bind}
    return subprocess.run(dockerfile_healthcheck(), cwd=ROOT, env=env, capture_output=True, timeout=10).returncode


def start_production_gunicorn(data_dir, port: int, **env: str) -> subprocess.Popen:
    """gunicorn as the image runs it (config/gunicorn.conf.py, production settings) on 127.0.0.1:port; stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi"],
        cwd=ROOT,
        env={**PRODUCTION, "PORTAL_DATA_DIR": str(data_dir), "BIND": f"127.0.0.1:{port}", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_dockerfile_healthcheck_passes_against_the_production_gunicorn(tmp_path):
    """gunicorn as the image runs it (config/gunicorn.conf.py, production settings), checked as Docker does."""
    port = free_port()
    env = {**PRODUCTION, "PORTAL_DATA_DIR": str(tmp_path), "STATIC_ROOT": str(tmp_path / "static")}
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):  # as the image: ready with both
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, timeout=120)
    server = start_production_gunicorn(tmp_path, port, WEB_CONCURRENCY="1", STATIC_ROOT=env["STATIC_ROOT"])
    try:
        deadline = time.monotonic() + 30
        while run_healthcheck(f"127.0.0.1:{port}") != 0:
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "the HEALTHCHECK did not pass within 30 s"
            time.sleep(0.2)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["status"] == "ok"
        # Anything else is still held to ALLOWED_HOSTS and the HTTPS redirect.
        assert httpx.get(f"http://127.0.0.1:{port}/login/", timeout=5).status_code == 400
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_for_healthcheck(server: subprocess.Popen, bind: str) -> None:
    deadline = time.monotonic() + 30
    while run_healthcheck(bind) != 0:
        assert server.poll() is None, server.stderr.read() if server.stderr else "gunicorn stopped"
        assert time.monotonic() < deadline, "the HEALTHCHECK did not pass within 30 s"
        time.sleep(0.2)


def test_the_healthcheck_fails_where_nothing_listens_and_reads_any_address_as_the_loopback():
    from config.healthcheck import connection_for

    assert run_healthcheck(f"127.0.0.1:{free_port()}") == 1
    assert run_healthcheck("unix:/nonexistent/portal.sock") == 1
    everywhere = connection_for("0.0.0.0:9000")
    assert (everywhere.host, everywhere.port) == ("127.0.0.1", 9000)
    assert (connection_for("[::]:9001").host, connection_for("portal:81").port) == ("::1", 81)
    assert connection_for("fd://3") is None  # a socket handed over has no address to ask


def test_gunicorn_serves_on_a_unix_socket_and_the_healthcheck_finds_it(tmp_path):
    """WEB_REUSE_PORT's default is for TCP; on a unix socket each process could not bind the one path again."""
    env = {**PRODUCTION, "PORTAL_DATA_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, timeout=120)
    bind = f"unix:{tmp_path / 'portal.sock'}"
    server = start_production_gunicorn(tmp_path, 0, BIND=bind, WEB_CONCURRENCY="2")
    try:
        wait_for_healthcheck(server, bind)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_images_command_takes_a_blank_web_concurrency_as_its_default(tmp_path):
    """An env file's empty line is the default for every setting; gunicorn parses WEB_CONCURRENCY itself."""
    command = json.loads(
        next(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))[4:]
    )
    port = free_port()
    env = {**PRODUCTION, "PORTAL_DATA_DIR": str(tmp_path), "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": " "}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # the image's `python` has the requirements
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_healthcheck(server, f"127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_image_holds_every_part_the_portal_imports(tmp_path):
    """Only what the Dockerfile copies after installing the requirements, then its collectstatic and a check.

    Docker cannot run here, so the image's /app is rebuilt from the Dockerfile's COPY lines; an app left out
    (alerts once was) fails the build's collectstatic, as it would fail `docker build`.
    """
    import shutil

    app = tmp_path / "app"
    app.mkdir()
    copies = re.findall(r"^COPY (\S+) (\S+)$", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert ("manage.py", "./") in copies
    for source, _ in copies:
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, app / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / source, app / source)
    env = {**PRODUCTION, "STATIC_ROOT": str(tmp_path / "static"), "PORTAL_DATA_DIR": str(tmp_path / "data")}
    for command in (["collectstatic", "--noinput"], ["check"]):
        done = subprocess.run(
            [sys.executable, "manage.py", *command], cwd=app, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]


# --- A restore on a new host with the wrong keyring: it parses and seals, yet opens none of the stored rows ---


@pytest.mark.django_db
def test_readyz_says_the_vault_is_unusable_when_its_keyring_lacks_the_key_the_stored_secrets_need(
    client, settings, tokaify_key, caplog
):
    stored_with = tokaify_key.secret_key_id
    settings.PORTAL_ENCRYPTION_KEYS = crypto.generate_key()  # a working keyring, without the restored rows' key
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "vault": "unusable", "audit": "ok", "static": "ok"}
    assert stored_with in caplog.text  # the log names the key to put back

    settings.PORTAL_ENCRYPTION_KEYS = f"{crypto.generate_key()},{TEST_KEYRING}"  # a rotation under way: both kept
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
def test_readyz_says_the_audit_keyring_is_unusable_when_it_lacks_the_heads_key(client, settings, tokaify_key):
    assert AuditEvent.objects.exists()  # key.created
    settings.PORTAL_AUDIT_KEYS = crypto.generate_key()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "vault": "ok", "audit": "unusable", "static": "ok"}


@pytest.mark.django_db
def test_readyz_reads_a_few_indexed_columns_whatever_is_stored(client, tokaify_key, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):  # SELECT 1, the two vault-sealed tables, the chain's head
        assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
def test_readyz_stays_ready_after_a_vault_key_rollover_when_a_revoked_key_exists(client, settings, alice, tokaify_key):
    """The README's roll-over: a new key first, rotate_encryption_key, then the old key removed."""
    from django.core.management import call_command

    from gateways.services import revoke_key

    revoke_key(key=tokaify_key, actor=alice)  # its secret is destroyed: no vault key can be needed for it
    new = crypto.generate_key()
    settings.PORTAL_ENCRYPTION_KEYS = f"{new},{TEST_KEYRING}"
    call_command("rotate_encryption_key")
    settings.PORTAL_ENCRYPTION_KEYS = new
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_migration_forgets_the_vault_key_of_secrets_revoked_before(migrator):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    others = [node for node in migrator.loader.graph.leaf_nodes() if node[0] != "gateways"]
    before = [("gateways", "0010_key_settings_changed_at"), *others]
    after = [("gateways", "0011_revoked_keys_need_no_vault_key"), *others]
    migrator.migrate(before)
    apps = migrator.loader.project_state(before).apps
    team = apps.get_model("portal", "Team").objects.create(name="Web", slug="web")
    gateway = apps.get_model("gateways", "Gateway").objects.get(slug="tokaify")
    keys = apps.get_model("gateways", "GatewayKey").objects
    common = {"team": team, "gateway": gateway, "masked": "sk-…"}
    revoked = keys.create(label="gone", fingerprint="f1", secret_ciphertext="", secret_key_id="5e318f8c", **common)
    live = keys.create(
        label="live", fingerprint="f2", secret_ciphertext="v1:5e318f8c:x", secret_key_id="5e318f8c", **common
    )

    executor = MigrationExecutor(connection)
    executor.migrate(after)
    migrated = executor.loader.project_state(after).apps.get_model("gateways", "GatewayKey")
    ids = dict(migrated.objects.values_list("pk", "secret_key_id"))
    assert (ids[revoked.pk], ids[live.pk]) == ("", "5e318f8c")
