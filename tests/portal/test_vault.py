from __future__ import annotations

import base64

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from gateways.models import GatewayKey
from gateways.services import store_key
from portal import crypto
from portal.models import AuditEvent
from tests.conftest import TEST_AUDIT_KEYRING, TEST_KEYRING, TOKAIFY_SECRET, production_env, run_manage

NEW_KEY = base64.urlsafe_b64encode(b"n" * 32).decode()


def raw_rows(table: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")
        return repr(cursor.fetchall())


def test_stored_key_leaves_no_plaintext_in_any_table(tokaify_key):
    tables = connection.introspection.table_names()
    everything = "".join(raw_rows(t) for t in tables)
    assert TOKAIFY_SECRET not in everything
    assert "tokaify-alice" not in everything  # not even a recognisable piece of it
    assert tokaify_key.masked == "sk-…cdef"


def test_secret_decrypts_with_the_same_keyring(tokaify_key):
    assert GatewayKey.objects.get(pk=tokaify_key.pk).reveal_secret() == TOKAIFY_SECRET


@pytest.mark.parametrize("keep", [0, 4, 11])  # bytes of the nonce left after the cut
def test_a_ciphertext_cut_short_is_a_decryption_error_not_a_crash(tokaify_key, keep):
    version, key_id, token = tokaify_key.secret_ciphertext.split(":", 2)
    cut = base64.urlsafe_b64encode(base64.urlsafe_b64decode(token)[:keep]).decode()
    GatewayKey.objects.filter(pk=tokaify_key.pk).update(secret_ciphertext=f"{version}:{key_id}:{cut}")
    with pytest.raises(crypto.DecryptionError, match="altered or belongs to another row"):
        GatewayKey.objects.get(pk=tokaify_key.pk).reveal_secret()


def test_ciphertext_records_the_key_version(tokaify_key):
    version, key_id, _ = tokaify_key.secret_ciphertext.split(":", 2)
    assert version == "v1"
    assert key_id == crypto.parse_keyring(TEST_KEYRING).primary_id == tokaify_key.secret_key_id


def test_transplanted_ciphertext_fails_to_decrypt(web, tokaify, alice, tokaify_key):
    other = store_key(team=web, gateway=tokaify, label="other", secret="sk-other-secret-value-123456", actor=alice)
    GatewayKey.objects.filter(pk=other.pk).update(secret_ciphertext=tokaify_key.secret_ciphertext)
    with pytest.raises(crypto.DecryptionError, match="belongs to another row"):
        GatewayKey.objects.get(pk=other.pk).reveal_secret()


def test_rotation_moves_every_secret_to_the_new_key(settings, tokaify_key, tokenbay_key, capsys):
    settings.PORTAL_ENCRYPTION_KEYS = f"{NEW_KEY},{TEST_KEYRING}"
    call_command("rotate_encryption_key", "--batch-size", "1")
    assert "Re-encrypted 2 secret(s)" in capsys.readouterr().out

    settings.PORTAL_ENCRYPTION_KEYS = NEW_KEY  # the old key is gone from the ring
    new_id = crypto.parse_keyring(NEW_KEY).primary_id
    for key in GatewayKey.objects.all():
        assert key.secret_key_id == new_id
    assert GatewayKey.objects.get(pk=tokaify_key.pk).reveal_secret() == TOKAIFY_SECRET
    assert AuditEvent.objects.filter(action="vault.rotated").exists()


def test_rotation_can_be_rerun_and_moves_nothing_twice(settings, tokaify_key, capsys):
    settings.PORTAL_ENCRYPTION_KEYS = f"{NEW_KEY},{TEST_KEYRING}"
    call_command("rotate_encryption_key")
    call_command("rotate_encryption_key")
    assert capsys.readouterr().out.splitlines()[-1].startswith("Re-encrypted 0 secret(s)")


def test_rotation_without_the_old_key_stops_with_a_sentence(settings, tokaify_key):
    settings.PORTAL_ENCRYPTION_KEYS = NEW_KEY
    with pytest.raises(CommandError, match="not in PORTAL_ENCRYPTION_KEYS"):
        call_command("rotate_encryption_key")
    assert GatewayKey.objects.get(pk=tokaify_key.pk).secret_key_id != crypto.parse_keyring(NEW_KEY).primary_id


@pytest.mark.parametrize(
    "value, message",
    [
        ("not-base64!!", "Key number 1"),
        (f"{TEST_KEYRING},short", "Key number 2"),
        (" , ", "is empty"),
    ],
)
def test_malformed_keyring_is_refused_with_a_sentence(value, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        crypto.parse_keyring(value)


def test_production_without_a_keyring_is_refused(settings):
    settings.DEBUG = False
    settings.PORTAL_ENCRYPTION_KEYS = ""
    with pytest.raises(ImproperlyConfigured, match="PORTAL_ENCRYPTION_KEYS is not set"):
        crypto.get_keyring()


def test_development_creates_a_key_file_once(settings, tmp_path):
    settings.DEBUG = True
    settings.PORTAL_ENCRYPTION_KEYS = ""
    settings.DATA_DIR = tmp_path / "dev-data"
    first = crypto.get_keyring()
    assert (tmp_path / "dev-data" / "encryption.key").exists()
    assert crypto.get_keyring() == first


@pytest.mark.parametrize(
    "extra, message",
    [
        ({}, "PORTAL_ENCRYPTION_KEYS is not set"),
        ({"PORTAL_ENCRYPTION_KEYS": "abc"}, "is not 32 bytes"),
        ({"SECRET_KEY": ""}, "SECRET_KEY is not set"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS is not set. Set it to the host names the portal is reached by"),
    ],
)
def test_production_start_up_names_the_missing_setting(tmp_path, extra, message):
    env = production_env(tmp_path, **extra)
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert result.stderr.startswith("Configuration error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_production_start_up_creates_the_data_folder_for_sqlite(tmp_path):
    data = tmp_path / "new" / "data"
    env = production_env(data, PORTAL_ENCRYPTION_KEYS=TEST_KEYRING, PORTAL_AUDIT_KEYS=TEST_AUDIT_KEYRING)
    result = run_manage("migrate", "--noinput", env=env)
    assert result.returncode == 0, result.stderr
    assert (data / "portal.sqlite3").exists()


def test_an_unwritable_data_folder_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    env = production_env(blocker / "data", PORTAL_ENCRYPTION_KEYS=TEST_KEYRING)
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert "cannot be created" in result.stderr and "PORTAL_DATA_DIR" in result.stderr


@settings(max_examples=60, deadline=None)
@given(plaintext=st.text(max_size=200), row=st.uuids())
def test_any_secret_round_trips_and_is_bound_to_its_row(plaintext, row):
    keyring = crypto.parse_keyring(TEST_KEYRING)
    sealed, key_id = keyring.encrypt(plaintext, associated_data=f"row:{row}")
    assert key_id == keyring.primary_id
    assert len(plaintext) < 12 or plaintext not in sealed  # short strings may occur in base64 by chance
    assert keyring.decrypt(sealed, associated_data=f"row:{row}") == plaintext
    with pytest.raises(crypto.DecryptionError):
        keyring.decrypt(sealed, associated_data=f"row:{row}x")


def test_generated_key_makes_a_valid_keyring(capsys):
    call_command("generate_encryption_key")
    key = capsys.readouterr().out.strip()
    assert len(crypto.parse_keyring(key).keys) == 1


def test_createsuperuser_noinput_reads_the_usual_variables(db, monkeypatch):
    from django.contrib.auth import get_user_model

    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "root")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-password-9")
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "root@example.com")
    call_command("createsuperuser", "--noinput", verbosity=0)
    user = get_user_model().objects.get(username="root")
    assert user.is_superuser and user.check_password("a-long-password-9")


def test_a_resumed_rotation_records_every_secret_it_covers(settings, web, tokaify, alice, capsys):
    keys = [
        store_key(team=web, gateway=tokaify, label=f"k{n}", secret=f"sk-rotate-{n}-0123456789", actor=alice)
        for n in range(5)
    ]
    keys.sort(key=lambda k: k.pk)  # the order rotation takes them in
    settings.PORTAL_ENCRYPTION_KEYS = f"{NEW_KEY},{TEST_KEYRING}"
    sealed = keys[2].secret_ciphertext
    GatewayKey.objects.filter(pk=keys[2].pk).update(secret_ciphertext=sealed[:-8] + "AAAAAAAA")
    with pytest.raises(CommandError, match=f"Key {keys[2].pk}"):
        call_command("rotate_encryption_key", "--batch-size", "2")  # stops after the first batch of two
    GatewayKey.objects.filter(pk=keys[2].pk).update(secret_ciphertext=sealed)
    call_command("rotate_encryption_key", "--batch-size", "2")
    assert "Re-encrypted 3 secret(s)" in capsys.readouterr().out
    [rotated] = AuditEvent.objects.filter(action="vault.rotated")
    assert rotated.details["rows"] == 5


@pytest.mark.parametrize("command", ["rotate_encryption_key", "rotate_audit_key"])
@pytest.mark.parametrize("size", ["0", "100001", "100000000000000000000"])
def test_a_batch_size_out_of_range_is_refused_with_the_range(db, command, size):
    with pytest.raises(CommandError, match=f"--batch-size must be from 1 to 100,000, not {size}"):
        call_command(command, "--batch-size", size)
