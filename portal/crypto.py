"""The key vault's cipher: AES-256-GCM under a versioned keyring.

`PORTAL_ENCRYPTION_KEYS` is a comma-separated list of keys, each 32 random bytes in
URL-safe base64 (`python manage.py generate_encryption_key` prints one). The first key
encrypts; every key decrypts, so a new key is rolled in by putting it first, running
`rotate_encryption_key`, then dropping the old one.

A ciphertext is `v1:<key id>:<base64 of nonce + ciphertext + tag>`. The key id is the
first 8 hex digits of the key's SHA-256, so it names a key without revealing it. The
associated data binds each ciphertext to the row that owns it: the same bytes pasted into
another row fail to decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from portal.private_files import make_private_dir, write_private_file

logger = logging.getLogger(__name__)

FORMAT_VERSION = "v1"
NONCE_BYTES = 12
DEV_KEY_FILENAME = "encryption.key"


class DecryptionError(Exception):
    """A stored secret could not be opened with any key in the keyring."""


@dataclass(frozen=True)
class Keyring:
    keys: tuple[tuple[str, bytes], ...]  # (key id, key bytes), primary first

    @property
    def primary_id(self) -> str:
        return self.keys[0][0]

    def encrypt(self, plaintext: str, *, associated_data: str) -> tuple[str, str]:
        """Return (ciphertext text, id of the key that made it)."""
        key_id, key = self.keys[0]
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), associated_data.encode())
        token = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{FORMAT_VERSION}:{key_id}:{token}", key_id

    def decrypt(self, ciphertext: str, *, associated_data: str) -> str:
        try:
            version, key_id, token = ciphertext.split(":", 2)
            raw = base64.urlsafe_b64decode(token)
        except (ValueError, binascii.Error):
            raise DecryptionError("The stored secret is not in the vault's format.") from None
        if version != FORMAT_VERSION:
            raise DecryptionError(f"The stored secret uses an unknown format {version!r}.")
        key = dict(self.keys).get(key_id)
        if key is None:
            raise DecryptionError(
                f"The stored secret was encrypted with key {key_id}, which is not in PORTAL_ENCRYPTION_KEYS. "
                "Put that key back into the keyring."
            )
        try:
            plaintext = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], associated_data.encode())
        except InvalidTag:
            raise DecryptionError(
                f"The stored secret does not open with key {key_id}: it was altered or belongs to another row."
            ) from None
        return plaintext.decode()


def generate_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def key_id_for(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


@lru_cache(maxsize=8)
def parse_keyring(value: str, setting: str = "PORTAL_ENCRYPTION_KEYS") -> Keyring:
    """Parse a keyring setting's text (the vault's, or the audit chain's); raise ImproperlyConfigured with a sentence."""
    entries = [item.strip() for item in value.split(",") if item.strip()]
    if not entries:
        raise ImproperlyConfigured(
            f"{setting} is empty. Set it to one or more keys made by "
            "`python manage.py generate_encryption_key`, separated by commas."
        )
    keys = []
    for position, entry in enumerate(entries, start=1):
        try:
            key = base64.urlsafe_b64decode(entry.encode())
        except (ValueError, binascii.Error):
            key = b""
        if len(key) != 32:
            raise ImproperlyConfigured(
                f"Key number {position} in {setting} is not 32 bytes of URL-safe base64. "
                "Make a valid one with `python manage.py generate_encryption_key`."
            )
        keys.append((key_id_for(key), key))
    return Keyring(tuple(keys))


def development_keyring_value(
    data_dir: Path, filename: str = DEV_KEY_FILENAME, setting: str = "PORTAL_ENCRYPTION_KEYS"
) -> str:
    """Read, or create, the git-ignored key file used when DEBUG is on and no keyring is set."""
    path = data_dir / filename
    if not path.exists():
        make_private_dir(data_dir)
        write_private_file(path, generate_key() + "\n")
        logger.warning("Created a development key in %s. Set %s in production.", path, setting)
    return path.read_text().strip()


def get_keyring() -> Keyring:
    value = settings.PORTAL_ENCRYPTION_KEYS
    if not value:
        if not settings.DEBUG:
            raise ImproperlyConfigured(
                "PORTAL_ENCRYPTION_KEYS is not set. With DEBUG off the portal needs a keyring: "
                "run `python manage.py generate_encryption_key` and put its output in that variable."
            )
        value = development_keyring_value(settings.DATA_DIR)
    return parse_keyring(value)
