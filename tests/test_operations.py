"""Running the portal as an operator does: its settings from an env file, the image's build and start, cron commands.

Each check starts manage.py or gunicorn in a process of its own with an exact environment, as a service does.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench._setup import create_postgres_database, drop_postgres_database, postgres_database_url
from tests.conftest import ROOT, TEST_AUDIT_KEYRING, TEST_KEYRING, production_env, run_manage
from tests.test_concurrency import free_port
from tests.test_health import PRODUCTION

ON_POSTGRESQL = os.getenv("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def portal_env(tmp_path, **extra: str) -> dict[str, str]:
    return production_env(
        tmp_path / "data", PORTAL_ENCRYPTION_KEYS=TEST_KEYRING, PORTAL_AUDIT_KEYS=TEST_AUDIT_KEYRING, **extra
    )


def refused_with_a_sentence(done: subprocess.CompletedProcess, name: str) -> None:
    assert done.returncode != 0, done.stdout[-400:]
    assert "Traceback" not in done.stderr, done.stderr[-1200:]
    assert name in done.stderr, done.stderr[-400:]


# --- A blank line in an env file: the default, for every setting ----------------------------------------------

SHOW_SECURITY = (
    "from django.conf import settings as s;"
    "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.OIDC_REQUIRE_EMAIL_VERIFIED,"
    " s.DATABASES['default'].get('OPTIONS', {}).get('server_side_binding', True))"
)


@pytest.mark.parametrize(
    "name", ["SESSION_COOKIE_SECURE", "OIDC_REQUIRE_EMAIL_VERIFIED", "DATABASE_SERVER_SIDE_BINDING"]
)
def test_a_blank_switch_keeps_its_secure_default(tmp_path, name):
    env = portal_env(tmp_path, **{name: ""})
    if name == "DATABASE_SERVER_SIDE_BINDING":  # read on PostgreSQL only; the shell makes no query
        env["DATABASE_URL"] = "postgres://portal:portal@127.0.0.1:5432/portal_fix_ops"
    done = run_manage("shell", "-c", SHOW_SECURITY, env=env)
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.split()[-4:] == ["True"] * 4, (name, done.stdout)


def test_a_blank_debug_is_off_not_the_development_default(tmp_path):
    """DEBUG's default (unset) is development; a blank line in a production env file never turns it on."""
    done = run_manage(
        "shell", "-c", "from django.conf import settings; print(settings.DEBUG)", env=portal_env(tmp_path, DEBUG="")
    )
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("TIME_ZONE", "UTC"),
        ("LOG_LEVEL", "INFO"),
        ("DEFAULT_FROM_EMAIL", "gateway-portal@localhost"),
        ("PROBE_DEADLINE", "30.0"),
        ("AXES_COOLOFF_TIME", "1.0"),
    ],
)
def test_a_blank_text_or_number_setting_means_its_default(tmp_path, name, default):
    variable = {"AXES_COOLOFF_TIME": "AXES_COOLOFF_HOURS"}.get(name, name)
    code = f"from django.conf import settings; from django.utils import timezone; timezone.localtime(); print(settings.{name})"
    done = run_manage("shell", "-c", code, env=portal_env(tmp_path, **{variable: ""}))
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.strip().splitlines()[-1] == default


def test_a_blank_cache_url_means_the_default_cache(tmp_path):
    code = "from django.conf import settings; print(settings.CACHES['default']['BACKEND'])"
    done = run_manage("shell", "-c", code, env=portal_env(tmp_path, CACHE_URL=""))
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.strip().splitlines()[-1] == "django.core.cache.backends.locmem.LocMemCache"


def test_a_blank_data_folder_means_the_default_not_the_working_folder(tmp_path):
    code = "from django.conf import settings; print(settings.DATA_DIR)"
    env = {**portal_env(tmp_path), "PORTAL_DATA_DIR": "", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    done = run_manage("shell", "-c", code, env=env)
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.strip().splitlines()[-1] == str(ROOT / "data")


# --- DATABASE_URL_FILE ----------------------------------------------------------------------------------------


def test_database_url_file_is_read_like_every_other_secret(tmp_path):
    """README: NAME_FILE works too for secrets. Ignored, the portal ran on a fresh SQLite file instead."""
    database = tmp_path / "from-the-file.sqlite3"
    secret = tmp_path / "database_url"
    secret.write_text(f"sqlite:///{database}\n")
    code = "from django.conf import settings; print(settings.DATABASES['default']['NAME'])"
    done = run_manage("shell", "-c", code, env=portal_env(tmp_path, DATABASE_URL_FILE=str(secret)))
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.strip().splitlines()[-1] == str(database)
    assert not (tmp_path / "data" / "portal.sqlite3").exists()


def test_an_unreadable_database_url_file_stops_start_up_with_a_sentence(tmp_path):
    done = run_manage("check", env=portal_env(tmp_path, DATABASE_URL_FILE=str(tmp_path / "missing")))
    refused_with_a_sentence(done, "DATABASE_URL_FILE")


# --- A value that is not one: a sentence naming the variable, not a traceback ---------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PROBE_CONNECT_TIMEOUT", "ten"),
        ("PROBE_READ_TIMEOUT", "ten"),
        ("PROBE_DEADLINE", "30s"),
        ("NOTIFY_TIMEOUT", "ten"),
        ("AXES_COOLOFF_HOURS", "an hour"),
        ("LOG_LEVEL", "verbose"),
        ("TIME_ZONE", "Mars/Base"),
        ("TIME_ZONE", "../../etc/passwd"),
    ],
)
def test_a_bad_value_stops_start_up_with_a_sentence_naming_it(tmp_path, name, value):
    refused_with_a_sentence(run_manage("check", env=portal_env(tmp_path, **{name: value})), name)


def test_log_level_and_time_zone_take_what_the_readme_shows(tmp_path):
    code = "from django.conf import settings; print(settings.LOG_LEVEL, settings.TIME_ZONE)"
    done = run_manage("shell", "-c", code, env=portal_env(tmp_path, LOG_LEVEL="warning", TIME_ZONE="Europe/Paris"))
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.split()[-2:] == ["WARNING", "Europe/Paris"]


@pytest.mark.parametrize(("name", "value"), [("WEB_THREADS", "two"), ("WEB_THREADS", "0"), ("WEB_CONCURRENCY", "0")])
def test_gunicorn_refuses_a_bad_number_with_a_sentence(tmp_path, name, value):
    """(gunicorn itself reads WEB_CONCURRENCY as a number before this file: a word there is its own traceback.)"""
    done = subprocess.run(
        [GUNICORN, "-c", "config/gunicorn.conf.py", "--check-config", "config.wsgi"],
        cwd=ROOT, env=portal_env(tmp_path, **{name: value}), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    refused_with_a_sentence(done, name)


def test_gunicorn_takes_a_blank_number_as_its_default(tmp_path):
    done = subprocess.run(
        [GUNICORN, "-c", "config/gunicorn.conf.py", "--print-config", "config.wsgi"],
        cwd=ROOT, env=portal_env(tmp_path, WEB_THREADS="", WEB_REUSE_PORT="", BIND=""),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-800:]
    shown = dict(re.findall(r"^(\w+)\s+= (.*)$", done.stdout, flags=re.MULTILINE))
    assert (shown["threads"], shown["reuse_port"], shown["bind"]) == ("2", "True", "['0.0.0.0:8000']")


# --- gunicorn as the image's user --------------------------------------------------------------------------------


def test_gunicorn_starts_without_an_error_when_its_home_is_not_writable(tmp_path):
    """The image's user has HOME=/app, owned by root; gunicorn 25+ would make a control socket in $HOME/.gunicorn."""
    not_a_folder = tmp_path / "home"
    not_a_folder.write_text("")  # makedirs(HOME/.gunicorn) fails here, as under /app
    env = {**PRODUCTION, "LOG_LEVEL": "INFO", "PORTAL_DATA_DIR": str(tmp_path / "data"), "HOME": str(not_a_folder)}
    assert run_manage("migrate", "--noinput", env=env, timeout=300).returncode == 0
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi"],
        cwd=ROOT, env={**env, "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "gunicorn did not answer within 30 s"
            time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    assert "Booting worker" in err  # its log was read
    assert [line for line in err.splitlines() if "[ERROR]" in line] == []


# --- The image's build ----------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[str]:
    """The Dockerfile's instructions, one a line: continuation lines joined, comments left out."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_build_step_leaves_nothing_in_the_data_folder(tmp_path):
    """The build runs as root; the portal's user (uid 10001) owns only the folder `chown portal /data` gives it.

    A root-owned 0600 portal.sqlite3 left there by collectstatic's settings import stopped `migrate` at every start.
    The image's /app is rebuilt from the COPY lines and the RUN line is run as written, /data and /app moved here.
    """
    app, data = tmp_path / "app", tmp_path / "data"
    app.mkdir()
    instructions = dockerfile_instructions()
    for line in instructions:
        if match := re.fullmatch(r"COPY (\S+) (\S+)", line):
            source = match.group(1)
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, app / source, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(ROOT / source, app / source)

    def moved(text: str) -> str:
        return text.replace("/app", str(app)).replace("/data", str(data))

    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}  # `python` is the suite's, with the requirements
    for line in instructions:
        if line.startswith("ENV "):
            env.update((name, moved(value)) for name, value in re.findall(r"(\w+)=(\S+)", line[4:]))
    run = next(line for line in instructions if line.startswith("RUN ") and "collectstatic" in line)
    build, _, after = run[4:].partition("&& useradd")
    assert "mkdir -p /data && chown portal /data" in after
    done = subprocess.run(["sh", "-c", moved(build)], cwd=app, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (app / "staticfiles" / "staticfiles.json").exists()  # the manifest the production storage reads
    assert not data.exists() or sorted(os.listdir(data)) == []


# --- Two servers starting together on one PostgreSQL (the image runs migrate at every start) --------------------


@pytest.fixture
def scratch_database():
    """A fresh PostgreSQL database of the test's own, dropped after: its URL."""
    if not ON_POSTGRESQL:
        pytest.skip("runs when the suite runs on PostgreSQL (DATABASE_URL)")
    admin = os.environ["DATABASE_URL"]
    made = []

    def fresh() -> str:
        url = postgres_database_url(admin, f"starts_{secrets.token_hex(4)}")
        create_postgres_database(admin, url)
        made.append(url)
        return url

    yield fresh
    for url in made:
        drop_postgres_database(admin, url)


def start_two_servers_at_once(env: dict[str, str]) -> list[tuple[int, str]]:
    """The image's start (`manage.py migrate --noinput`) in two containers at the same moment."""
    runs = [
        subprocess.Popen([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    outputs = [run.communicate(timeout=300) for run in runs]
    return [(run.returncode, err) for run, (_, err) in zip(runs, outputs, strict=True)]


def two_servers_env(tmp_path, url: str) -> dict[str, str]:
    vault, audit = (base64.urlsafe_b64encode(secrets.token_bytes(32)).decode() for _ in range(2))
    return production_env(
        tmp_path, PORTAL_ENCRYPTION_KEYS=vault, PORTAL_AUDIT_KEYS=audit, LOG_LEVEL="WARNING", DATABASE_URL=url
    )


def test_two_servers_starting_together_on_a_new_database_both_come_up(tmp_path, scratch_database):
    for attempt in range(3):  # a race: three tries
        env = two_servers_env(tmp_path / str(attempt), scratch_database())
        for status, err in start_two_servers_at_once(env):
            assert status == 0, err[-1500:]
        assert "No migrations to apply" in run_manage("migrate", "--noinput", env=env, timeout=300).stdout


def test_two_servers_starting_together_on_an_upgrade_both_come_up(tmp_path, scratch_database):
    for attempt in range(3):
        env = two_servers_env(tmp_path / str(attempt), scratch_database())
        for app in ("contenttypes", "auth", "admin", "sessions", "axes", "otp_totp", "otp_static", "alerts"):
            assert run_manage("migrate", app, "--noinput", env=env, timeout=300).returncode == 0
        for app, migration in (("portal", "0013"), ("gateways", "0008")):
            assert run_manage("migrate", app, migration, "--noinput", env=env, timeout=300).returncode == 0
        for status, err in start_two_servers_at_once(env):
            assert status == 0, err[-1500:]
        assert "No migrations to apply" in run_manage("migrate", "--noinput", env=env, timeout=300).stdout


def test_migrate_on_sqlite_still_migrates(tmp_path):
    env = portal_env(tmp_path, LOG_LEVEL="WARNING")
    first = run_manage("migrate", "--noinput", env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-1500:]
    assert "Applying portal.0001" in first.stdout
    assert "No migrations to apply" in run_manage("migrate", "--noinput", env=env, timeout=300).stdout


# --- prune_audit from cron ------------------------------------------------------------------------------------

OLD_EVENTS = """
import time_machine
from datetime import datetime, timezone as tz
from portal import audit
from portal.models import Action
from django.contrib.auth import get_user_model
u = get_user_model().objects.create_user("ops", "ops@example.com", "pw-ops-1234567", is_staff=True)
with time_machine.travel(datetime(2026, 1, 10, tzinfo=tz.utc), tick=True):
    for _ in range(5):
        audit.record(Action.TOKEN_ISSUED, actor=u, target="old")
audit.record(Action.TOKEN_ISSUED, actor=u, target="new")
print("ok")
"""


def test_prune_audit_run_again_for_the_same_date_says_nothing_to_prune(tmp_path):
    env = portal_env(tmp_path, LOG_LEVEL="WARNING")
    assert run_manage("migrate", "--noinput", env=env, timeout=300).returncode == 0
    assert "ok" in run_manage("shell", "-c", OLD_EVENTS, env=env).stdout
    first = run_manage("prune_audit", "--before", "2026-02-01", env=env)
    assert first.returncode == 0, first.stderr[-1000:]
    assert "Pruned 5 event(s)" in first.stdout
    export = tmp_path / "data" / "audit-until-2026-02-01.jsonl"
    exported = export.read_text()
    again = run_manage("prune_audit", "--before", "2026-02-01", env=env)  # cron's next run, same date
    assert again.returncode == 0, again.stderr[-1000:]
    assert "No audit events before 2026-02-01; nothing pruned." in again.stdout
    assert export.read_text() == exported
