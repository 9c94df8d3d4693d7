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
import hmac
import logging
import os
import re
import secrets
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn

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


# Every Secret alive in the process, and every one made during the current request (see
# secrets_scope): the debug page and the logs remove what these hold from their text.
_alive: weakref.WeakValueDictionary[int, Secret] = weakref.WeakValueDictionary()
_made_in_scope: ContextVar[list[Secret] | None] = ContextVar("secrets_made_in_scope", default=None)


class Secret:
    """A key's plaintext that does not show itself: repr and str are masked, pickling is refused.

    The vault hands one out (`GatewayKey.reveal_secret()`); it travels wrapped to the HTTP client
    and the config builder, and `reveal()` is called only where the text is needed: a header being
    sent, a config being written. A traceback or a log line that reaches a Secret shows stars.
    """

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str):
        self._value = value
        _alive[id(self)] = self
        made = _made_in_scope.get()
        if made is not None:
            made.append(self)

    def reveal(self) -> str:
        """The plaintext: only for a header being sent or a config being written, never for a log."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            other = other._value
        if not isinstance(other, str):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other.encode())

    __hash__ = None  # type: ignore[assignment]  # a Secret is no dict key or set member

    def __reduce__(self) -> NoReturn:
        raise TypeError("A Secret cannot be pickled: it would leave the process in plaintext.")


def reveal(value: Secret | str) -> str:
    """The text of a Secret, or a text as it is (callers and tests may hold either)."""
    return value.reveal() if isinstance(value, Secret) else value


def secrets_in_reach() -> list[str]:
    """The plaintexts of every live Secret and of every one made during this request, to redact them."""
    made = _made_in_scope.get() or []
    for _ in range(5):  # another thread can drop a Secret while this one copies the list
        try:
            alive = list(_alive.values())
            break
        except RuntimeError:
            continue
    else:
        alive = []
    return list({secret._value for secret in [*alive, *made]})


def remember(text: str) -> None:
    """Keep a one-time secret that is no key in reach of the redaction until this request ends, as if the vault
    had opened it: a new access token, an invitation's or an install link's token, recovery codes, a reset token,
    a key typed in to be stored. Its error page and log lines then show markers in its place, whatever holds it.
    """
    if text:
        Secret(text)


@contextmanager
def secrets_scope() -> Iterator[None]:
    """Keep every Secret made inside in reach of the redaction until the block ends (one request).

    A key's text can outlive its Secret, in a rendered config say; while the request that made it
    runs, its error page and log lines can still tell that text apart.
    """
    token = _made_in_scope.set([])
    try:
        yield
    finally:
        _made_in_scope.reset(token)


@dataclass(frozen=True)
class Keyring:
    keys: tuple[tuple[str, bytes], ...]  # (key id, key bytes), primary first

    @property
    def primary_id(self) -> str:
        return self.keys[0][0]

    def encrypt(self, plaintext: str, *, associated_data: str) -> tuple[str, str]:
        """Return (ciphertext text, id of the key that made it)."""
        remember(plaintext)  # a key typed in to be stored was never opened by the vault
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
            # ValueError: a nonce cut short (a truncated row), which no tag check reaches
            plaintext = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], associated_data.encode())
        except (InvalidTag, ValueError):
            raise DecryptionError(
                f"The stored secret does not open with key {key_id}: it was altered or belongs to another row."
            ) from None
        return plaintext.decode()


def generate_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def key_id_for(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


# A key as generate_encryption_key writes it: 32 bytes in URL-safe base64, 43 characters and its padding.
KEY_TEXT = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]=?")


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
        # Strictly: the lenient decoder skips what is not base64 and stops at the first "=", so two keys
        # run together (a space or a line between them, not a comma) would read as the first alone.
        if not KEY_TEXT.fullmatch(entry):
            separated = " Separate keys with commas." if len(entry) > 44 else ""
            raise ImproperlyConfigured(
                f"Key number {position} in {setting} is not 32 bytes of URL-safe base64.{separated} "
                "Make a valid one with `python manage.py generate_encryption_key`."
            )
        key = base64.urlsafe_b64decode(entry.rstrip("=") + "=")
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


def missing_key_ids(keyring: Keyring, *sealed: Any) -> list[str]:
    """The key ids that rows of these querysets were sealed or signed with and `keyring` lacks, sorted.

    A keyring that parses and seals is not enough after a restore: one that lacks the key the stored rows were
    made with opens none of them. Each queryset's `column` (secret_key_id by default) is an indexed key id; a
    queryset may be given as (queryset, column).
    """
    known = [key_id for key_id, _ in keyring.keys]
    missing: set[str] = set()
    for item in sealed:
        queryset, column = item if isinstance(item, tuple) else (item, "secret_key_id")
        strangers = queryset.exclude(**{column: ""}).exclude(**{f"{column}__in": known})
        missing.update(strangers.order_by().values_list(column, flat=True).distinct()[:10])
    return sorted(missing)


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
