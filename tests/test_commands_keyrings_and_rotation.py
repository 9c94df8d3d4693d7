"""Management commands as an operator runs them: before the keyrings exist, with a typo, during a rotation."""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from gateways.management.commands import rotate_encryption_key
from gateways.models import GatewayKey, ProbeResult
from gateways.services import store_key
from portal import audit, audit_chain, crypto
from portal.models import Action, AuditEvent
from tests.conftest import ROOT, TEST_AUDIT_KEYRING, TEST_KEYRING, production_env, run_manage

KEYRING_SENTENCE = "run `python manage.py generate_encryption_key` and put its output in that variable"


# --- Before the keyrings exist (DEBUG off, the image's default) -------------------------------------------


@pytest.mark.parametrize("keyrings", [{}, {"PORTAL_ENCRYPTION_KEYS": TEST_KEYRING}], ids=["none", "vault-only"])
def test_generate_encryption_key_runs_before_the_keyrings_exist(tmp_path, keyrings):
    """The command every keyring error names must run where that error appears."""
    done = run_manage("generate_encryption_key", env=production_env(tmp_path, **keyrings))
    assert done.returncode == 0, done.stderr
    assert len(base64.urlsafe_b64decode(done.stdout.strip())) == 32


@pytest.mark.parametrize(
    "args, shown",
    [
        ((), "generate_encryption_key"),
        (("help",), "generate_encryption_key"),
        (("--help",), "generate_encryption_key"),
        (("help", "probe"), "--due"),
        (("probe", "--help"), "--due"),
        (("rotate_encryption_key", "-h"), "--batch-size"),
    ],
)
def test_help_runs_before_the_keyrings_exist(tmp_path, args, shown):
    done = run_manage(*args, env=production_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert shown in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("check",),
        ("migrate", "--noinput"),
        ("probe", "--due"),
        ("shell", "-c", "print('ran')"),
        ("issue_access_token", "--", "--help"),  # a user called "--help": the token is issued, not help shown
    ],
)
def test_every_other_command_still_stops_without_the_keyrings(tmp_path, args):
    done = run_manage(*args, env=production_env(tmp_path))
    assert done.returncode != 0
    assert done.stderr.startswith("Configuration error: PORTAL_ENCRYPTION_KEYS is not set.")
    assert KEYRING_SENTENCE in done.stderr
    assert "ran" not in done.stdout and "Traceback" not in done.stderr


def test_gunicorn_still_stops_without_the_keyrings(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "--check-config", "config.wsgi"],
        cwd=ROOT, env=production_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "PORTAL_ENCRYPTION_KEYS is not set" in done.stderr and KEYRING_SENTENCE in done.stderr


def test_without_the_audit_keyring_only_generate_encryption_key_runs(tmp_path):
    env = production_env(tmp_path, PORTAL_ENCRYPTION_KEYS=TEST_KEYRING)
    assert run_manage("generate_encryption_key", env=env).returncode == 0
    done = run_manage("check", env=env)
    assert done.returncode != 0 and "PORTAL_AUDIT_KEYS is not set" in done.stderr


# --- probe: a --team or --gateway that names nothing ----------------------------------------------------


@pytest.mark.parametrize("due", [True, False], ids=["due", "all"])
@pytest.mark.parametrize("option, noun", [("--team", "team"), ("--gateway", "gateway")])
def test_probe_refuses_an_unknown_slug_before_probing(db, tokaify_key, capsys, due, option, noun):
    """Cron's `probe --due --team webb` (a typo for web) would probe nothing, forever, and exit 0."""
    args = ["probe", option, "webb"] + (["--due"] if due else [])
    with pytest.raises(CommandError, match=f"No usable keys match: there is no {noun} with the slug 'webb'"):
        call_command(*args)
    assert not ProbeResult.objects.exists()
    assert "No key is due" not in capsys.readouterr().err


def test_probe_of_a_team_with_no_keys_still_says_so(db, tokaify_key, data_team, capsys):
    call_command("probe", "--team", data_team.slug)  # exit 0: no key failed
    assert "No usable key matches: nothing was probed." in capsys.readouterr().out
    assert not ProbeResult.objects.exists()


# --- Rotations: the last line is what tells the operator the old key may go ------------------------------

NEW_KEY = base64.urlsafe_b64encode(b"n" * 32).decode()
NEW_KEY_ID = crypto.parse_keyring(NEW_KEY).primary_id
OLD_KEY_ID = crypto.parse_keyring(TEST_KEYRING).primary_id


def test_a_secret_stored_under_the_old_key_during_rotation_is_reported_and_a_rerun_moves_it(
    settings, web, tokaify, alice, tokaify_key, capsys, monkeypatch
):
    """A server not yet restarted (still on the old keyring) stores a key while the rotation runs."""
    settings.PORTAL_ENCRYPTION_KEYS = f"{NEW_KEY},{TEST_KEYRING}"
    rotate = rotate_encryption_key.Command._rotate

    def rotate_then_an_old_server_stores_a_key(self, model, keyring, batch_size, moved_before):
        moved = rotate(self, model, keyring, batch_size, moved_before)
        if model is GatewayKey:
            settings.PORTAL_ENCRYPTION_KEYS = TEST_KEYRING  # the other server's keyring
            store_key(team=web, gateway=tokaify, label="late", secret="sk-late-0123456789abcdef", actor=alice)
            settings.PORTAL_ENCRYPTION_KEYS = f"{NEW_KEY},{TEST_KEYRING}"
        return moved

    monkeypatch.setattr(rotate_encryption_key.Command, "_rotate", rotate_then_an_old_server_stores_a_key)
    with pytest.raises(CommandError) as refused:
        call_command("rotate_encryption_key")
    sentence = str(refused.value)
    assert f"1 stored secret(s) still use key {OLD_KEY_ID}" in sentence
    assert "run it again before removing the old key" in sentence
    assert "all" not in capsys.readouterr().out

    monkeypatch.undo()
    settings.PORTAL_ENCRYPTION_KEYS = f"{NEW_KEY},{TEST_KEYRING}"
    call_command("rotate_encryption_key")
    assert f"Re-encrypted 1 secret(s) under key {NEW_KEY_ID}; all 2 stored" in capsys.readouterr().out
    assert set(GatewayKey.objects.values_list("secret_key_id", flat=True)) == {NEW_KEY_ID}


NEW_AUDIT_KEY = base64.urlsafe_b64encode(b"m" * 32).decode()
NEW_AUDIT_KEY_ID = crypto.parse_keyring(NEW_AUDIT_KEY).primary_id
OLD_AUDIT_KEY_ID = crypto.parse_keyring(TEST_AUDIT_KEYRING).primary_id


def test_an_event_signed_with_the_old_key_during_rotation_is_reported_and_a_rerun_signs_it(
    db, settings, capsys, monkeypatch
):
    audit.record(Action.AUDIT_PRUNED, details={"n": 1})
    settings.PORTAL_AUDIT_KEYS = f"{NEW_AUDIT_KEY},{TEST_AUDIT_KEYRING}"
    resign_batch = audit.resign_batch

    def resign_then_an_old_server_records(keyring, batch_size):
        done = resign_batch(keyring, batch_size)
        if not done:
            settings.PORTAL_AUDIT_KEYS = TEST_AUDIT_KEYRING  # a server not restarted yet
            audit.record(Action.AUDIT_PRUNED, details={"n": 2})
            settings.PORTAL_AUDIT_KEYS = f"{NEW_AUDIT_KEY},{TEST_AUDIT_KEYRING}"
        return done

    monkeypatch.setattr(audit, "resign_batch", resign_then_an_old_server_records)
    with pytest.raises(CommandError) as refused:
        call_command("rotate_audit_key")
    sentence = str(refused.value)
    assert f"1 event(s) are still signed with audit key {OLD_AUDIT_KEY_ID}" in sentence
    assert "run it again before removing the old key" in sentence
    assert "all" not in capsys.readouterr().out

    monkeypatch.undo()
    settings.PORTAL_AUDIT_KEYS = f"{NEW_AUDIT_KEY},{TEST_AUDIT_KEYRING}"
    call_command("rotate_audit_key")
    assert "Re-signed 1 event(s); all" in capsys.readouterr().out
    assert set(AuditEvent.objects.values_list("signing_key_id", flat=True)) == {NEW_AUDIT_KEY_ID}
    settings.PORTAL_AUDIT_KEYS = NEW_AUDIT_KEY  # the old key may go now
    call_command("verify_audit")
    assert audit_chain.get_keyring().primary_id == NEW_AUDIT_KEY_ID


# --- Time limits of 0 or less ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["PROBE_DEADLINE", "PROBE_CONNECT_TIMEOUT", "PROBE_READ_TIMEOUT", "NOTIFY_TIMEOUT"])
@pytest.mark.parametrize("value, shown", [("0", "0"), ("-5", "-5"), ("600.5", "600.5")])
def test_a_time_limit_out_of_range_stops_start_up_with_a_sentence(tmp_path, name, value, shown):
    env = production_env(
        tmp_path, PORTAL_ENCRYPTION_KEYS=TEST_KEYRING, PORTAL_AUDIT_KEYS=TEST_AUDIT_KEYRING, **{name: value}
    )
    done = run_manage("check", env=env)
    assert done.returncode != 0
    assert f"{name} must be more than 0 and at most 600 seconds, not {shown}." in done.stderr, done.stderr[-500:]
    assert "Traceback" not in done.stderr


def test_the_ends_of_the_time_limits_are_taken(tmp_path):
    env = production_env(
        tmp_path,
        PORTAL_ENCRYPTION_KEYS=TEST_KEYRING,
        PORTAL_AUDIT_KEYS=TEST_AUDIT_KEYRING,
        PROBE_DEADLINE="600",
        PROBE_CONNECT_TIMEOUT="0.5",
        PROBE_READ_TIMEOUT="600",
        NOTIFY_TIMEOUT="0.1",
    )
    done = run_manage("check", env=env)
    assert done.returncode == 0, done.stderr[-500:]


# --- issue_access_token: the command's act, not the user's ----------------------------------------------


def test_a_token_issued_from_the_command_line_is_audited_as_the_commands_act(bob, capsys):
    call_command("issue_access_token", "bob", "--name", "laptop CLI")
    event = AuditEvent.objects.get(action=Action.TOKEN_ISSUED)
    assert event.actor is None
    assert event.details["via"] == "manage.py issue_access_token"
    assert event.details["user"] == "bob" and event.details["name"] == "laptop CLI"


def test_a_token_made_on_the_tokens_page_is_still_the_users_own_act(client, bob):
    from tests.conftest import confirm_password

    client.force_login(bob)
    confirm_password(client, bob)
    client.post("/tokens/", {"name": "laptop", "days": "30"})
    event = AuditEvent.objects.get(action=Action.TOKEN_ISSUED)
    assert event.actor == bob
    assert "via" not in event.details
