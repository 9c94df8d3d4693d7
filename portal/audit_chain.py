"""What an audit row's hash covers, in the form the database gives back.

A hash is only checkable if it is computed over exactly what is stored. SQLite keeps text as
written while PostgreSQL re-formats an `inet` and a `jsonb`, so every value is put in one
canonical form before hashing, both when a row is written and when it is checked.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime


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
