"""What a channel may be, how its target is shown, and how a webhook body is signed. Pure: no database."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from gateways.probes.outbound import is_public
from portal.errors import RuleError

MAX_TARGET = 500
MIN_SECRET = 16
MAX_SECRET = 200
KINDS = ("webhook", "slack", "email")
SIGNATURE_HEADER = "X-Portal-Signature"
# A signature older than this is a replay; receivers should refuse it (README, Alerts).
SIGNATURE_TOLERANCE_SECONDS = 300


def _has_control_characters(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def clean_url(target: str, *, allow_private: bool) -> str:
    """An http(s) URL with a host, no credentials and no spaces; a private literal address only when allowed."""
    if _has_control_characters(target) or " " in target:
        raise RuleError("The URL must be one line without spaces.", field="target")
    try:
        parts = urlsplit(target)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        raise RuleError(f"{target[:80]!r} is not a URL.", field="target") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RuleError(
            "Give a full URL that starts with https:// (or http://), like https://hooks.example.com/portal.",
            field="target",
        )
    if parts.username or parts.password:
        raise RuleError(
            "Put no user name or password in the URL; a webhook is signed with its secret instead.", field="target"
        )
    try:
        ipaddress.ip_address(parts.hostname)
    except ValueError:
        return target  # a name: checked when it resolves, at each delivery (gateways.probes.outbound)
    if not allow_private and not is_public(parts.hostname):  # the same judgement as at each delivery
        raise RuleError(
            f"{parts.hostname} is a private, loopback or reserved address; the portal only sends to public "
            "addresses (PROBE_ALLOW_PRIVATE_IPS allows others).",
            field="target",
        )
    return target


def clean_channel(kind: str, target: str, secret: str, *, allow_private: bool) -> tuple[str, str, str]:
    """A channel's kind, target and secret, checked; a RuleError names the field at fault."""
    if kind not in KINDS:
        raise RuleError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}.", field="kind")
    target = (target or "").strip()
    secret = secret or ""
    if not target:
        raise RuleError("Give the channel a target: a URL, or an e-mail address for e-mail.", field="target")
    if len(target) > MAX_TARGET:
        raise RuleError(f"The target is longer than {MAX_TARGET} characters.", field="target")
    if kind == "email":
        try:
            validate_email(target)
        except ValidationError:
            raise RuleError(f"{target[:80]!r} is not an e-mail address.", field="target") from None
    else:
        target = clean_url(target, allow_private=allow_private)
    if kind != "webhook":
        if secret:
            raise RuleError("Only webhook channels take a secret: it signs their JSON body.", field="secret")
        return kind, target, ""
    if not MIN_SECRET <= len(secret) <= MAX_SECRET or _has_control_characters(secret):
        raise RuleError(
            f"A webhook needs a secret of {MIN_SECRET} to {MAX_SECRET} characters, on one line, to sign its body "
            "with; your receiver checks the signature with the same secret.",
            field="secret",
        )
    return kind, target, secret


def display_target(kind: str, target: str) -> str:
    """The target as pages and the API show it: a Slack URL is a credential, so only its start is shown."""
    if kind == "email":
        return target
    parts = urlsplit(target)
    if kind == "slack":
        return f"{parts.scheme}://{parts.netloc}{parts.path[:10]}…"
    return f"{parts.scheme}://{parts.netloc}{parts.path}{'?…' if parts.query else ''}"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Portal-Signature value: `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def signature_holds(secret: str, header: str, body: bytes, *, now: int) -> bool:
    """What a receiver checks: the HMAC matches and the timestamp is recent (no replay).

    The portal never calls it: it is the reference for receivers (README, Alerts) that the tests check each
    signature the sender writes against."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), f"t={timestamp},v1={fields.get('v1', '')}")


STARTED_FAILING = "started_failing"
RECOVERED = "recovered"


def probe_transition(previous: str, current: str) -> str | None:
    """STARTED_FAILING, RECOVERED, or None: only a change between working and failing is news, not every probe.

    `previous` is "" for a key never probed; its first probe failing is news, its first passing is not.
    """
    was_failing = previous not in ("", "ok")
    is_failing = current != "ok"
    if is_failing and not was_failing:
        return STARTED_FAILING
    if was_failing and not is_failing:
        return RECOVERED
    return None
