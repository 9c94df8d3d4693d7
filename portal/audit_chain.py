"""The audit chain's seal: what a row's hash covers, and the key that signs it.

Each row's `hash` is SHA-256 over the previous row's hash and every column of the row, so rows
form a chain in which an edit, a removal or a reordering shows. Anyone with the database can
recompute SHA-256, so each hash is also signed: `signature` is HMAC-SHA256 under a key from
`PORTAL_AUDIT_KEYS`, which lives outside the database, and `signing_key_id` names that key.
The first key signs and every key verifies, so a key is rolled like the vault's (see
`rotate_audit_key`); re-signing never changes a hash, so heads kept as anchors stay valid.

A hash is only checkable if it is computed over exactly what is stored. SQLite keeps text as
written while PostgreSQL re-formats an `inet` and a `jsonb`, so every value is put in one
canonical form before hashing, both when a row is written and when it is checked.

An event queued while another writer holds the chain's head (portal/audit.py) is signed over its
content and a random nonce, under its own context, until it is chained. The content alone would let
a copy of the queue row pass as a second event: the nonce makes each queued event one of a kind, and
the chain keeps it (covered by the hash) so that a copy put back after the event was chained shows too.

Pure functions over any object with the row's attributes, so the data migration that first
signed the chain uses them as well as the model.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from datetime import UTC, datetime

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from portal import crypto

DEV_KEY_FILENAME = "audit.key"
SIGNATURE_CONTEXT = "portal-audit-chain-v1"
# A queued event (not chained yet) is signed over its content under another context, so neither
# signature can stand for the other.
PENDING_CONTEXT = "portal-audit-pending-v1"


def stored_ip(raw: str | None) -> str | None:
    """The address to store: canonical text, IPv4-mapped IPv6 unwrapped, no zone; None when not an address."""
    if not raw:
        return None
    try:
        address = ipaddress.ip_address(raw.strip())
    except ValueError:
        # Also refuses zero-padded IPv4 ("127.000.000.001"), which some parsers read as octal.
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        address = ipaddress.IPv6Address(int(address))  # drops a zone ("%eth0"), which no column keeps
    return str(address)


def hashed_ip(value: str | None) -> str:
    """The address as the hash sees it: canonical if it is one, else the raw text, so garbage still shows."""
    if not value:
        return ""
    return stored_ip(value) or value


def hashed_moment(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _canonical_numbers(value):
    # jsonb keeps a number's value, not its spelling: 1e20 comes back as 100000000000000000000.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _canonical_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_numbers(v) for v in value]
    return value


def canonical_json(value) -> str:
    """JSON text that is the same for a value and for what SQLite's or PostgreSQL's JSON column returns."""
    return json.dumps(_canonical_numbers(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_of(row, *, with_nonce: bool = True) -> dict:
    """Every column of an audit row but its id (the link to the previous row orders it) and its seal.

    The nonce of an event that was queued is there only when the row has one, so every event chained
    directly, or before nonces existed, hashes as it always did.
    """
    content = {
        "created_at": hashed_moment(row.created_at),
        "actor_id": row.actor_id,
        "actor": row.actor_username,
        "action": row.action,
        "team_id": row.team_id,
        "team": row.team_slug,
        "gateway": row.gateway_slug,
        "target": row.target,
        "ip": hashed_ip(row.ip_address),
        "user_agent": row.user_agent,
        "details": row.details,
    }
    nonce = getattr(row, "nonce", None)  # the historical models of older migrations have no such column
    if with_nonce and nonce is not None:
        content["nonce"] = nonce
    return content


def link_hash(prev_hash: str, content: dict) -> str:
    return link_hash_of_text(prev_hash, canonical_json(content))


def link_hash_of_text(prev_hash: str, content_text: str) -> str:
    """link_hash with the content already in canonical JSON: writers prepare it before taking the head."""
    return hashlib.sha256((prev_hash + content_text).encode()).hexdigest()


def get_keyring() -> crypto.Keyring:
    """The audit keyring from PORTAL_AUDIT_KEYS; a key file in the data folder when DEBUG is on."""
    value = settings.PORTAL_AUDIT_KEYS
    if not value:
        if not settings.DEBUG:
            raise ImproperlyConfigured(
                "PORTAL_AUDIT_KEYS is not set. With DEBUG off the audit chain is signed with a key kept "
                "outside the database: run `python manage.py generate_encryption_key` and put its output "
                "in that variable (a different key from PORTAL_ENCRYPTION_KEYS)."
            )
        value = crypto.development_keyring_value(settings.DATA_DIR, DEV_KEY_FILENAME, "PORTAL_AUDIT_KEYS")
    return crypto.parse_keyring(value, "PORTAL_AUDIT_KEYS")


def _signature(key: bytes, key_id: str, link: str, context: str = SIGNATURE_CONTEXT) -> str:
    message = f"{context}\n{key_id}\n{link}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign(keyring: crypto.Keyring, link: str, context: str = SIGNATURE_CONTEXT) -> tuple[str, str]:
    """Return (signature, id of the key that made it) for a row's hash, under the first key."""
    key_id, key = keyring.keys[0]
    return _signature(key, key_id, link, context), key_id


def signature_problem(
    keyring: crypto.Keyring, key_id: str, link: str, signature: str, context: str = SIGNATURE_CONTEXT
) -> str | None:
    """Why a row's signature does not hold, as a sentence fragment; None when it does."""
    if not key_id:
        return "it carries no signature"
    key = dict(keyring.keys).get(key_id)
    if key is None:
        return f"it was signed with audit key {key_id}, which is not in PORTAL_AUDIT_KEYS: put that key back, or the row was forged"
    if not hmac.compare_digest(_signature(key, key_id, link, context), signature):
        return "its signature does not match: it was written or changed without the audit key"
    return None


def pending_digest(content_text: str, nonce: str) -> str:
    """What a queued event's signature covers: its content (without the nonce) and its nonce.

    The caller has the content in canonical form already (audit.append prepares it before it knows
    whether the event is queued), so the nonce is joined to it rather than put inside it.
    """
    return hashlib.sha256(f"{nonce}\n{content_text}".encode()).hexdigest()


def sign_pending(keyring: crypto.Keyring, content_text: str, nonce: str) -> tuple[str, str]:
    return sign(keyring, pending_digest(content_text, nonce), PENDING_CONTEXT)


def pending_problem(keyring: crypto.Keyring, row) -> str | None:
    """Why a queued event's signature does not hold over what it stores now; None when it does."""
    if not row.nonce:
        return (
            "it carries no nonce, which the portal gives every queued event: it was written without the "
            "portal (a copy of a queued row?), or by a portal server older than the database"
        )
    digest = pending_digest(canonical_json(content_of(row, with_nonce=False)), row.nonce)
    return signature_problem(keyring, row.signing_key_id, digest, row.signature, PENDING_CONTEXT)
