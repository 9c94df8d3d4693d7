"""Shared fixtures, after healthchecks' BaseTestCase: every test can ask "can charlie see this?".

- alice: admin of team "web"; bob: member of "web"; dave: auditor of "web";
- charlie: admin of team "data", an outsider to "web"; staff: a staff user in no team.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from gateways.models import Gateway
from gateways.services import assign_key, store_key
from portal.models import AccessToken, Membership, Role, Team
from tests.gateway_emulator import GatewayRules, running_emulator

ROOT = Path(__file__).resolve().parent.parent  # the project folder, where manage.py is


def run_manage(*args: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    """`manage.py args` in a process of its own with exactly `env`, as a service starts it; its output captured."""
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def production_env(data_dir, **settings: str) -> dict[str, str]:
    """DEBUG off with a secret and a host, for run_manage: add the keyrings a test needs (or leaves out)."""
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "False", "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "portal.example.com"}
    return {**env, "PORTAL_DATA_DIR": str(data_dir), **settings}


TEST_KEYRING = base64.urlsafe_b64encode(b"k" * 32).decode()
TEST_AUDIT_KEYRING = base64.urlsafe_b64encode(b"a" * 32).decode()
TOKAIFY_SECRET = "sk-tokaify-alice-0123456789abcdef"
TOKENBAY_SECRET = "sk-tokenbay-alice-0123456789abcdef"


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PORTAL_ENCRYPTION_KEYS = TEST_KEYRING
    settings.PORTAL_AUDIT_KEYS = TEST_AUDIT_KEYRING
    settings.DATA_DIR = tmp_path / "data"
    settings.PROBE_ALLOW_PRIVATE_IPS = True
    settings.PROBE_DEADLINE = 5
    settings.PROBE_READ_TIMEOUT = 3
    settings.PROBE_CONNECT_TIMEOUT = 2
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def make_user(username: str, *, staff: bool = False):
    return get_user_model().objects.create_user(username, f"{username}@example.com", "pass-" + username, is_staff=staff)


@pytest.fixture
def web(db):
    return Team.objects.create(name="Web", slug="web")


@pytest.fixture
def data_team(db):
    return Team.objects.create(name="Data", slug="data")


@pytest.fixture
def alice(web):
    user = make_user("alice")
    Membership.objects.create(team=web, user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def bob(web):
    user = make_user("bob")
    Membership.objects.create(team=web, user=user, role=Role.MEMBER)
    return user


@pytest.fixture
def dave(web):
    user = make_user("dave")
    Membership.objects.create(team=web, user=user, role=Role.AUDITOR)
    return user


@pytest.fixture
def charlie(data_team):
    user = make_user("charlie")
    Membership.objects.create(team=data_team, user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def staff(db):
    return make_user("staff", staff=True)


@pytest.fixture
def chromium(monkeypatch):
    """Headless Chromium (tests/chromium.py). Requested after a test's data fixtures, so their rows exist
    before Playwright's event loop runs."""
    from django.db import connections
    from playwright.sync_api import sync_playwright

    from tests.chromium import launch

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = launch(p)
        yield browser
        browser.close()
        connections.close_all()


@pytest.fixture
def root(db):
    """A superuser: what the Django admin's pages are tested as."""
    return get_user_model().objects.create_superuser("root", "root@example.com", "pass-root")


@pytest.fixture
def root_client(client, root):
    client.force_login(root)
    return client


@pytest.fixture
def tokaify(db):
    return Gateway.objects.get(slug="tokaify")


@pytest.fixture
def tokenbay(db):
    return Gateway.objects.get(slug="tokenbay")


@pytest.fixture
def tokaify_key(web, tokaify, alice):
    return store_key(team=web, gateway=tokaify, label="Alice laptop", secret=TOKAIFY_SECRET, actor=alice)


@pytest.fixture
def tokenbay_key(web, tokenbay, alice):
    return store_key(team=web, gateway=tokenbay, label="Bob laptop", secret=TOKENBAY_SECRET, actor=alice)


@pytest.fixture
def bob_assignment(tokenbay_key, bob, alice):
    return assign_key(key=tokenbay_key, username="bob", actor=alice)


def confirm_password(client, user) -> None:
    """Enter sudo mode the way a person does: the password, typed again at /sudo/."""
    response = client.post("/sudo/", {"password": "pass-" + user.get_username(), "next": "/tokens/"})
    assert response.status_code == 302, "the password was not accepted"


def api_client_for(user, **client_options) -> APIClient:
    """A client that authenticates like a script would: with a personal access token."""
    _, raw = AccessToken.issue(user, name="tests")
    client = APIClient(**client_options)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def api():
    return api_client_for


@pytest.fixture
def emulator():
    """Start an emulator with the given rules: `with emulator(GatewayRules(...)) as gw:`."""
    return lambda rules=None: running_emulator(rules or GatewayRules())


@pytest.fixture
def smtp(settings):
    """A real SMTP server on 127.0.0.1 that the portal's mail goes to; yields its inbox."""
    from tests.smtp_server import Inbox, send_mail_to, start

    inbox = Inbox()
    controller = start(inbox)
    send_mail_to(settings, controller.port)
    yield inbox
    controller.stop()


@pytest.fixture
def migrator():
    """A MigrationExecutor for a test that takes the schema back to an older migration.

    Such a test runs outside a transaction (transaction=True), so nothing rolls its schema back: whatever
    happens in it, the schema ends at the latest migrations again, or every test after it would run
    against old tables (a column added since, missing).
    """
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    yield MigrationExecutor(connection)
    latest = MigrationExecutor(connection)
    latest.migrate(latest.loader.graph.leaf_nodes())
