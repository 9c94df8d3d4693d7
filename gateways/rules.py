"""Input rules for gateways and keys: pure functions that clean a value or explain what is wrong.

Each raises `RuleError` with a sentence for a person; forms, serializers and commands turn
it into their own kind of error at the edge.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import unicodedata
from urllib.parse import urlsplit, urlunsplit

import idna


class RuleError(ValueError):
    """A value breaks one of the portal's rules; the message says how to fix it.

    `field` names the input at fault, so a form can show the sentence next to it.
    """

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


LOOPBACK_NAMES = {"localhost"}


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalize_base_url(url: str) -> tuple[str, list[str]]:
    """Return the gateway root Claude Code should get, and notices about what was changed.

    Claude Code appends `/v1/messages` itself, so a trailing `/v1` would double it; any other
    path prefix (`https://gw.example/anthropic`) is kept.
    """
    notices: list[str] = []
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it checks the port: a number from 0 to 65535, in ASCII digits
    except ValueError:
        raise RuleError(
            "The base URL cannot be read: check the host name and the port (a number), like https://api.example.com."
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RuleError("The base URL must start with https:// and name a host, like https://api.example.com.")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise RuleError("The base URL must use https://; plain http:// is only allowed for 127.0.0.1 or localhost.")
    if parts.query or parts.fragment:
        raise RuleError("The base URL cannot have a query (?…) or fragment (#…); give the API root only.")
    if parts.username or parts.password:
        raise RuleError("The base URL cannot carry a user name or password; the key goes in its own field.")
    netloc = parts.netloc
    host = ascii_host(parts.hostname)
    if host != parts.hostname:
        netloc = host + (f":{parts.port}" if parts.port is not None else "")
        notices.append(f"Wrote the host name {parts.hostname} as {host}, the ASCII form HTTP and Claude Code send.")
    path = parts.path.rstrip("/")
    if re.search(r"/v1$", path, re.IGNORECASE):
        path = path[:-3].rstrip("/")
        notices.append("Removed the trailing /v1 from the base URL: Claude Code adds /v1/messages itself.")
    return urlunsplit((parts.scheme, netloc, path, "", "")), notices


HOST_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


def ascii_host(host: str) -> str:
    """A URL's host (lower case, no brackets) as it travels; an internationalised name becomes its xn-- form.

    Names are encoded by IDNA 2008 without compatibility mapping, so a host written with fullwidth
    digits (U+FF11 for 1, and so on) or other look-alike characters is refused instead of silently turning
    into a different address than the one a person reads.
    """
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise RuleError(f"{host!r} is not a valid IPv6 address, like https://[2001:db8::1].") from None
        return host
    if not host.isascii():
        try:
            host = idna.encode(host).decode("ascii")
        except idna.IDNAError:
            raise RuleError(
                f"The host name {host!r} has characters a domain name cannot hold (such as fullwidth digits or "
                "symbols). Type it in plain ASCII letters and digits, like api.example.com."
            ) from None
    if not all(HOST_LABEL.match(label) for label in host.removesuffix(".").split(".")):
        raise RuleError(f"The host name {host!r} is not a valid domain name or IP address.")
    return host


# Gateways whose guides say the key is the full `sk-…` secret.
SK_PREFIX_ADVICE = "Use the full secret exactly as the gateway console shows it; do not remove the sk- prefix."


def clean_secret(secret: str, *, requires_sk_prefix: bool) -> str:
    """Trim the secret and refuse what would break a header or a shell line."""
    secret = secret.strip()
    if not secret:
        raise RuleError("The secret is empty. Paste the key from the gateway's console.", field="secret")
    if any(ch.isspace() for ch in secret):
        raise RuleError("The secret contains a space or line break. Copy the key again, in one piece.", field="secret")
    if any(unicodedata.category(ch).startswith("C") for ch in secret):
        raise RuleError(
            "The secret contains an invisible control character. Copy the key again from the console.", field="secret"
        )
    if not secret.isascii():
        raise RuleError(
            "The secret contains non-ASCII characters, which cannot travel in an HTTP header.", field="secret"
        )
    if requires_sk_prefix and not secret.startswith("sk-"):
        raise RuleError(f"This gateway's keys start with sk-. {SK_PREFIX_ADVICE}", field="secret")
    return secret


def fingerprint(secret: str) -> str:
    """A stable, non-reversible name for a secret, used to spot the same key stored twice."""
    return hashlib.sha256(b"portal-gateway-key:" + secret.encode()).hexdigest()


def mask(secret: str) -> str:
    """`sk-…abcd`: enough to recognise a key, never enough to use it."""
    prefix = ""
    head, dash, _ = secret.partition("-")
    if dash and len(head) <= 4:
        prefix = head + dash
    tail = secret[-4:] if len(secret) >= 12 else ""
    return f"{prefix}…{tail}"


class ModelIdStyle:
    DOTTED = "dotted"  # claude-sonnet-4.6 (TokenBay)
    HYPHENATED = "hyphenated"  # claude-sonnet-4-6 (Anthropic)
    AS_IS = "as-is"

    choices = [
        (DOTTED, "Dotted versions (claude-sonnet-4.6)"),
        (HYPHENATED, "Hyphenated versions (claude-sonnet-4-6)"),
        (AS_IS, "As entered"),
    ]


# A version `4-6` or `4.6`: major, separator, a one- or two-digit minor that ends the id
# or is followed by another part (a date such as -20250929 has 8 digits and is left alone).
_HYPHEN_VERSION = re.compile(r"(?<=-)(\d{1,2})-(\d{1,2})(?=-|$)")
_DOT_VERSION = re.compile(r"(?<=-)(\d{1,2})\.(\d{1,2})(?=-|$)")
MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,99}$")


def styled_model_id(model_id: str, style: str) -> str:
    """Spell a model id the way the gateway wants it; aliases like `sonnet` pass unchanged."""
    model_id = model_id.strip()
    if not model_id:
        return ""
    if not MODEL_ID_PATTERN.match(model_id):
        raise RuleError(
            f"{model_id!r} is not a model id: use letters, digits and . - _ : / @ only, like claude-sonnet-4.6."
        )
    if style == ModelIdStyle.DOTTED:
        return _HYPHEN_VERSION.sub(r"\1.\2", model_id, count=1)
    if style == ModelIdStyle.HYPHENATED:
        return _DOT_VERSION.sub(r"\1-\2", model_id, count=1)
    return model_id


HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
RESERVED_HEADERS = {"authorization", "x-api-key", "host", "content-length", "content-type"}


def clean_custom_headers(headers: dict) -> dict[str, str]:
    """Headers a key adds to every request (ANTHROPIC_CUSTOM_HEADERS)."""
    if not isinstance(headers, dict):
        raise RuleError('Custom headers must be an object of names to values, like {"X-Team": "web"}.')
    cleaned = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            raise RuleError(f"{name!r} is not a valid HTTP header name.")
        if name.lower() in RESERVED_HEADERS:
            raise RuleError(f"The {name} header is set by Claude Code itself and cannot be a custom header.")
        if not isinstance(value, str) or any(unicodedata.category(ch).startswith("C") for ch in value):
            raise RuleError(f"The value of header {name} must be text on one line.")
        if not all(" " <= ch <= "~" for ch in value):
            raise RuleError(
                f"The value of header {name} must be printable ASCII (letters, digits, punctuation, spaces): "
                "HTTP headers cannot carry characters such as é or €."
            )
        cleaned[name] = value.strip()
    return cleaned


ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,99}$")
# Variables the config builder owns; extra env may not override them behind its back.
MANAGED_ENV = {
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "ANTHROPIC_CUSTOM_MODEL_OPTION",
    "ANTHROPIC_CUSTOM_MODEL_OPTION_NAME",
    "ANTHROPIC_CUSTOM_HEADERS",
    "API_TIMEOUT_MS",
    "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS",
}


def clean_extra_env(env: dict) -> dict[str, str]:
    """Extra variables a gateway's guide asks for, as names to string values."""
    if not isinstance(env, dict):
        raise RuleError('Extra environment must be an object of names to values, like {"DISABLE_TELEMETRY": "1"}.')
    cleaned = {}
    for name, value in env.items():
        if not isinstance(name, str) or not ENV_NAME.match(name):
            raise RuleError(f"{name!r} is not a valid environment variable name: use A-Z, 0-9 and _.")
        if name in MANAGED_ENV:
            raise RuleError(f"{name} is set by the portal from the gateway's fields; edit that field instead.")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise RuleError(f"The value of {name} must be text or a whole number.")
        cleaned[name] = str(value)
    return cleaned


def clean_timeout_ms(value: int | None) -> int | None:
    if value is None:
        return None
    if not 1000 <= value <= 3_600_000:
        raise RuleError("The timeout is in milliseconds and must be between 1000 (1 s) and 3600000 (1 h).")
    return value
