"""The README's backup and move procedures, carried out with real manage.py processes on SQLite files.

An operator restores a copy of the database beside the same keyrings, or moves the portal to another database
with dumpdata/loaddata in XML: the keys still open, and the audit chain still verifies (its hashes cover each
event's time to the microsecond, which XML keeps and Django's JSON cuts to milliseconds).
"""

from __future__ import annotations

import sqlite3
import subprocess

from tests.conftest import TEST_AUDIT_KEYRING, TEST_KEYRING, production_env, run_manage

SEED = """
from django.contrib.auth import get_user_model
from gateways.models import Gateway
from gateways.services import assign_key, store_key
from portal.models import Membership, Role, Team
users = get_user_model().objects
alice = users.create_user("alice", "alice@example.com", "pass-alice")
users.create_user("bob", "bob@example.com", "pass-bob")
web = Team.objects.create(name="Web", slug="web")
Membership.objects.create(team=web, user=alice, role=Role.ADMIN)
Membership.objects.create(team=web, user=users.get(username="bob"), role=Role.MEMBER)
key = store_key(team=web, gateway=Gateway.objects.get(slug="tokaify"), label="Bob laptop",
                secret="sk-tokaify-bob-0123456789abcdef", actor=alice)
assign_key(key=key, username="bob", actor=alice)
"""

# What a developer's download needs: the key opens with the keyring restored beside the database.
OPENS = """
from gateways.models import GatewayKey
print(GatewayKey.objects.get().reveal_secret().reveal()[:10])
"""

# The tables to leave out of a move: the new database's migrate makes its own.
LEFT_OUT = ["-e", "contenttypes", "-e", "auth.permission", "-e", "sessions", "-e", "admin.logentry"]


def operator_env(tmp_path, name: str) -> dict[str, str]:
    return production_env(
        tmp_path / "data",
        PORTAL_ENCRYPTION_KEYS=TEST_KEYRING,
        PORTAL_AUDIT_KEYS=TEST_AUDIT_KEYRING,
        DATABASE_URL=f"sqlite:///{tmp_path / name}",
        LOG_LEVEL="ERROR",
    )


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, (done.stdout[-800:], done.stderr[-1500:])
    return done


def portal_with_a_key(tmp_path, name: str) -> dict[str, str]:
    env = operator_env(tmp_path, name)
    ok(run_manage("migrate", "-v0", env=env))
    ok(run_manage("shell", "-c", SEED, env=env))
    return env


def test_a_sqlite_backup_restored_beside_the_same_keyrings_opens_its_keys_and_verifies(tmp_path):
    old = portal_with_a_key(tmp_path, "portal.sqlite3")
    with sqlite3.connect(tmp_path / "portal.sqlite3") as live, sqlite3.connect(tmp_path / "backup.sqlite3") as copy:
        live.backup(copy)  # what the README's one-liner does, while the portal runs
    new = operator_env(tmp_path, "backup.sqlite3")
    assert ok(run_manage("shell", "-c", OPENS, env=new)).stdout.splitlines()[-1] == "sk-tokaify"
    assert "intact" in ok(run_manage("verify_audit", env=new)).stdout
    assert ok(run_manage("verify_audit", env=old)).returncode == 0


def test_a_move_with_dumpdata_in_xml_keeps_the_keys_and_the_audit_chain(tmp_path):
    old = portal_with_a_key(tmp_path, "old.sqlite3")
    dump = tmp_path / "portal.xml"
    ok(run_manage("dumpdata", "--natural-foreign", "--format", "xml", *LEFT_OUT, "-o", str(dump), env=old))
    new = operator_env(tmp_path, "new.sqlite3")
    ok(run_manage("migrate", "-v0", env=new))
    ok(run_manage("loaddata", str(dump), env=new))
    assert "sk-tokaify-bob" not in dump.read_text()  # the dump holds ciphertext only
    assert ok(run_manage("shell", "-c", OPENS, env=new)).stdout.splitlines()[-1] == "sk-tokaify"
    assert "intact" in ok(run_manage("verify_audit", env=new)).stdout
    # The moved portal goes on: a new event chains onto the moved head.
    ok(run_manage("shell", "-c", "from portal import audit; audit.record('team.created', target='ops')", env=new))
    assert "intact" in ok(run_manage("verify_audit", env=new)).stdout
