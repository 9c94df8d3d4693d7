"""A keyring is keys separated by commas, each exactly as generate_encryption_key writes it: anything else stops
start-up with a sentence. Base64's lenient decoding read two keys run together as the first alone, so a roll
written with the wrong separator started cleanly and then failed every download of a stored key."""

from __future__ import annotations

import base64

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal import crypto
from tests.conftest import TEST_AUDIT_KEYRING, TEST_KEYRING, production_env, run_manage

NEW = base64.urlsafe_b64encode(b"n" * 32).decode()
OLD = base64.urlsafe_b64encode(b"o" * 32).decode()


@pytest.mark.parametrize("separator", [" ", "\n", ";", ""])
def test_two_keys_not_separated_by_a_comma_are_refused_with_the_fix(separator):
    with pytest.raises(
        ImproperlyConfigured, match=r"Key number 1 in PORTAL_ENCRYPTION_KEYS .* Separate keys with commas"
    ):
        crypto.parse_keyring(f"{NEW}{separator}{OLD}")


@pytest.mark.parametrize("value", [f"{NEW[:10]}!!{NEW[10:]}", f"{NEW[:20]} {NEW[20:]}", f"{NEW[:-1]}junk"])
def test_junk_in_a_key_is_refused(value):
    with pytest.raises(ImproperlyConfigured, match="Key number 1 in PORTAL_ENCRYPTION_KEYS is not 32 bytes"):
        crypto.parse_keyring(value)


def test_keys_as_generated_with_or_without_padding_are_read_in_order():
    ring = crypto.parse_keyring(f" {NEW} , {OLD.rstrip('=')} ")
    assert [key for _, key in ring.keys] == [b"n" * 32, b"o" * 32]


def test_start_up_refuses_a_keyring_file_with_one_key_per_line(tmp_path):
    """The roll's "new key first, old one after it", written in a secret file one key a line."""
    keyfile = tmp_path / "vault-keys"
    keyfile.write_text(f"{NEW}\n{OLD}\n")
    env = production_env(
        tmp_path / "data", PORTAL_ENCRYPTION_KEYS_FILE=str(keyfile), PORTAL_AUDIT_KEYS=TEST_AUDIT_KEYRING
    )
    env.pop("PORTAL_ENCRYPTION_KEYS", None)
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert "PORTAL_ENCRYPTION_KEYS" in result.stderr and "Separate keys with commas" in result.stderr
    assert NEW not in result.stderr and OLD not in result.stderr


@pytest.mark.parametrize("name", ["SECRET_KEY", "PORTAL_ENCRYPTION_KEYS", "PORTAL_AUDIT_KEYS"])
def test_a_secret_file_of_raw_bytes_is_a_sentence_naming_it_not_a_traceback(tmp_path, name):
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(bytes([0xAD, 0x17, 0xD0, 0x54]) + b"\x9f" * 28)  # `openssl rand 32 > secret`
    env = production_env(tmp_path / "data", PORTAL_ENCRYPTION_KEYS=TEST_KEYRING, PORTAL_AUDIT_KEYS=TEST_AUDIT_KEYRING)
    env.pop(name, None)
    env[f"{name}_FILE"] = str(secret_file)
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Configuration error: ") and f"{name}_FILE" in result.stderr
    assert "which is not text" in result.stderr
    assert "0xad" not in result.stderr.lower()  # no byte of the key
