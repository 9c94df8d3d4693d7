"""Input rules for gateways and keys: pure functions that clean a value or explain what is wrong.

Each raises `RuleError` (portal.errors) with a sentence for a person; forms, the API and
commands turn it into their own kind of error at the edge.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import idna

# The refusal type is portal's; `gateways.rules.RuleError` names the same class.
from portal.errors import RuleError as RuleError
from portal.errors import echoed
from portal.names import clean_name


def one_line(text: str) -> str:
    """Stored text (a key label may hold a line break) as a terminal or a log shows it: control characters,
    line breaks and escape sequences included, become spaces, so one row stays one row."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


class UnrepresentableValue(RuleError):
    """A configuration cannot be written as it stands: a value a format cannot carry unchanged, or
    stored data that breaks the rules (a name outside the extra-env allow-list, a malformed model id).

    Pages and downloads turn it into a sentence; nothing is written.
    """


LOOPBACK_NAMES = {"localhost"}


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


BASE_URL_MAX_LENGTH = 300  # Gateway.base_url's column


def normalize_base_url(url: str) -> tuple[str, list[str]]:
    """Return the gateway root Claude Code should get, and notices about what was changed.

    Claude Code appends `/v1/messages` itself, so a trailing `/v1` would double it; any other
    path prefix (`https://gw.example/anthropic`) is kept.
    """
    notices: list[str] = []
    url = url.strip()
    # urlsplit drops a tab or line break without a word and keeps a space: either way the address stored
    # would not be the one typed, or one no request line can carry.
    blank = next((ch for ch in url if ch.isspace() or unicodedata.category(ch).startswith("C")), None)
    if blank is not None:
        what = "a space" if blank == " " else f"a blank or invisible character (U+{ord(blank):04X})"
        path_start = url.find("/", url.find("://") + 3) if "://" in url else -1
        if 0 <= path_start < url.index(blank):
            raise RuleError(
                f"The base URL's path contains {what}, which an address cannot hold. Remove it, or write a space "
                "that belongs in the path as %20, like https://api.example.com/my%20gateway."
            )
        raise RuleError(
            f"The base URL's host name or port contains {what}; remove it, like https://api.example.com:8443."
        )
    try:
        parts = urlsplit(url)
        port = parts.port  # reading it checks the port: a number from 0 to 65535, in ASCII digits
    except ValueError:
        raise RuleError(
            "The base URL cannot be read: check the host name and the port (a number from 1 to 65535), "
            "like https://api.example.com or http://127.0.0.1:8080."
        ) from None
    if port == 0:
        raise RuleError(
            "The base URL's port is 0, where no server can be reached: give the gateway's port, a number from 1 "
            "to 65535, or leave it out for the usual one (443 for https://)."
        )
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
    # The endpoint itself (pasted from a gateway's docs) or /v1 written twice: all of it is Claude Code's to add.
    trailing = re.search(r"(?:/v1)+(?:/messages)?$", path, re.IGNORECASE)
    if trailing:
        path = path[: trailing.start()].rstrip("/")
        notices.append(
            f"Removed the trailing {trailing.group(0)} from the base URL: Claude Code adds /v1/messages itself."
        )
    root = urlunsplit((parts.scheme, netloc, path, "", ""))
    if len(root) > BASE_URL_MAX_LENGTH:
        written = " once its host name is written in ASCII" if host != parts.hostname else ""
        raise RuleError(
            f"The base URL is {len(root)} characters long{written}; at most {BASE_URL_MAX_LENGTH} fit. "
            "Give the gateway's shorter address."
        )
    return root, notices


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


# Gateway keys are long random strings; anything shorter is a fragment (`sk-1`), not a key.
MIN_SECRET_LENGTH = 16
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
    if len(secret) < MIN_SECRET_LENGTH:
        raise RuleError(
            f"The secret is {len(secret)} characters long; gateway keys have at least {MIN_SECRET_LENGTH}. "
            "Copy the whole key from the gateway's console, not a part of it.",
            field="secret",
        )
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


class AuthScheme:
    """How a gateway takes the key: the header Claude Code sends it in."""

    X_API_KEY = "x-api-key"
    BEARER = "bearer"

    choices = [
        (X_API_KEY, "x-api-key header (ANTHROPIC_API_KEY)"),
        (BEARER, "Bearer token (ANTHROPIC_AUTH_TOKEN, with ANTHROPIC_API_KEY empty)"),
    ]


class Platform:
    """The system a device runs: each has its own installer, helper and one-line install command."""

    LINUX = "linux"
    MACOS = "macos"
    WINDOWS = "windows"

    choices = [(LINUX, "Linux"), (MACOS, "macOS"), (WINDOWS, "Windows")]
    values = [value for value, _ in choices]


# The variable Claude Code reads the key from, per scheme.
CREDENTIAL_VARIABLE = {AuthScheme.X_API_KEY: "ANTHROPIC_API_KEY", AuthScheme.BEARER: "ANTHROPIC_AUTH_TOKEN"}


# What probes saw a gateway do with the two credential headers (Gateway.credential_headers): each
# fact is True (accepted), False (refused) or absent (not seen). Real gateways differ here
# (shared/claude-code-facts.md): New API reads x-api-key first, LiteLLM Bearer first, claude-code-hub
# refuses two different keys.
CREDENTIAL_HEADER_FACTS = {
    "x_api_key": ("the key alone in x-api-key is accepted", "the key alone in x-api-key is refused"),
    "bearer": (
        "the key alone as Authorization: Bearer is accepted",
        "the key alone as Authorization: Bearer is refused",
    ),
    "same_key_in_both": ("the same key in both headers is accepted", "the same key in both headers is refused"),
    "mismatch_refused": (
        "a different, stale key in the other header makes it refuse the request",
        "a different key in the other header is ignored",
    ),
}
# The fact that says whether a lone key in a scheme's own header is accepted.
SCHEME_FACT = {AuthScheme.X_API_KEY: "x_api_key", AuthScheme.BEARER: "bearer"}
SCHEME_HEADER = {AuthScheme.X_API_KEY: "x-api-key", AuthScheme.BEARER: "Authorization: Bearer"}


def describe_credential_headers(seen: dict[str, object]) -> list[str]:
    """What probes saw, one sentence per fact, for the gateway page."""
    sentences = [
        accepted if seen[fact] else refused
        for fact, (accepted, refused) in CREDENTIAL_HEADER_FACTS.items()
        if isinstance(seen.get(fact), bool)
    ]
    return [sentence[0].upper() + sentence[1:] + "." for sentence in sentences]


def auth_scheme_warning(auth_scheme: str, seen: dict[str, object]) -> str:
    """A sentence when probes saw the gateway refuse the key in the header its auth scheme names, else ""."""
    own = SCHEME_FACT.get(auth_scheme)
    if own is None or seen.get(own) is not False:
        return ""
    other = next(scheme for scheme in SCHEME_FACT if scheme != auth_scheme)
    sentence = (
        f"Probes saw this gateway refuse the key sent as {SCHEME_HEADER[auth_scheme]}, the header its auth scheme names"
    )
    if seen.get(SCHEME_FACT[other]) is True:
        return (
            f"{sentence}, and accept it as {SCHEME_HEADER[other]}: set the gateway's auth scheme to "
            f"{dict(AuthScheme.choices)[other]}, or Claude Code will be refused."
        )
    return f"{sentence}. Check the gateway's auth scheme, then probe a key again."


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


NAME_MAX_LENGTH = 100  # of a custom header's or an extra variable's name
HEADER_NAME = re.compile(rf"^[A-Za-z0-9!#$%&'*+.^_`|~-]{{1,{NAME_MAX_LENGTH}}}$")


def shown_name(name: object) -> str:
    """A refused name as a sentence quotes it: cut with an ellipsis, so a 100,000-character name is not echoed."""
    return repr(echoed(name) if isinstance(name, str) else name)


def check_name_length(name: object, kind: str, field: str | None = None) -> None:
    """Refuse a name past NAME_MAX_LENGTH with the rule it breaks, before its characters are judged."""
    if isinstance(name, str) and len(name) > NAME_MAX_LENGTH:
        raise RuleError(
            f"{kind} names have at most {NAME_MAX_LENGTH} characters; this one has {len(name)}: {shown_name(name)}.",
            field=field,
        )


RESERVED_HEADERS = {"authorization", "x-api-key", "host", "content-length", "content-type"}


def clean_custom_headers(headers: object) -> dict[str, str]:
    """Headers a key adds to every request (ANTHROPIC_CUSTOM_HEADERS)."""
    if not isinstance(headers, dict):
        raise RuleError('Custom headers must be an object of names to values, like {"X-Team": "web"}.')
    cleaned = {}
    for name, value in headers.items():
        check_name_length(name, "Header")
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            raise RuleError(f"{shown_name(name)} is not a valid HTTP header name.")
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


ENV_NAME = re.compile(rf"^[A-Z_][A-Z0-9_]{{0,{NAME_MAX_LENGTH - 1}}}$")
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

# Extra env reaches every developer's shell profile, settings.json and Claude Code (a Node
# program), so it is an allow-list of settings Claude Code documents, never a deny-list:
# PATH, PROMPT_COMMAND, BASH_ENV, NODE_OPTIONS, LD_PRELOAD and their kin would run code on every
# developer's machine. Families whose values are data (model names, flags, numbers, telemetry
# endpoints) pass by prefix; CLAUDE_CODE_* is named one by one, because that family also holds
# variables that name a program to run (CLAUDE_CODE_SHELL_PREFIX, CLAUDE_CODE_GIT_BASH_PATH).
# Proxies (HTTP_PROXY...) and CLAUDE_CONFIG_DIR are left out on purpose: exported in a shell they
# redirect every program's traffic or where Claude Code reads its settings.
EXTRA_ENV_PREFIXES = ("ANTHROPIC_", "DISABLE_", "OTEL_EXPORTER_OTLP_", "OTEL_METRICS_INCLUDE_")
EXTRA_ENV_NAMES = frozenset(
    {
        "BASH_DEFAULT_TIMEOUT_MS",
        "BASH_MAX_OUTPUT_LENGTH",
        "BASH_MAX_TIMEOUT_MS",
        "CLAUDE_CODE_API_KEY_HELPER_TTL_MS",
        "CLAUDE_CODE_AUTO_COMPACT_WINDOW",
        "CLAUDE_CODE_CLIENT_CERT",
        "CLAUDE_CODE_CLIENT_KEY",
        "CLAUDE_CODE_CLIENT_KEY_PASSPHRASE",
        "CLAUDE_CODE_DISABLE_1M_CONTEXT",
        "CLAUDE_CODE_DISABLE_ADAPTIVE_THINKING",
        "CLAUDE_CODE_DISABLE_AUTO_MEMORY",
        "CLAUDE_CODE_DISABLE_BACKGROUND_TASKS",
        "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
        "CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK",
        "CLAUDE_CODE_DISABLE_TERMINAL_TITLE",
        "CLAUDE_CODE_EFFORT_LEVEL",
        "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY",
        "CLAUDE_CODE_ENABLE_TELEMETRY",
        "CLAUDE_CODE_FILE_READ_MAX_OUTPUT_TOKENS",
        "CLAUDE_CODE_IDE_SKIP_AUTO_INSTALL",
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS",
        "CLAUDE_CODE_MAX_RETRIES",
        "CLAUDE_CODE_MAX_TOOL_USE_CONCURRENCY",
        "CLAUDE_CODE_SUBAGENT_MODEL",
        "ENABLE_TOOL_SEARCH",
        "MAX_MCP_OUTPUT_TOKENS",
        "MAX_THINKING_TOKENS",
        "MCP_TIMEOUT",
        "MCP_TOOL_TIMEOUT",
        "OTEL_LOGS_EXPORTER",
        "OTEL_LOGS_EXPORT_INTERVAL",
        "OTEL_LOG_TOOL_DETAILS",
        "OTEL_LOG_USER_PROMPTS",
        "OTEL_METRICS_EXPORTER",
        "OTEL_METRIC_EXPORT_INTERVAL",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_TRACES_EXPORTER",
        "USE_BUILTIN_RIPGREP",
    }
)
ALLOWED_EXTRA_ENV = ", ".join([f"{prefix}*" for prefix in EXTRA_ENV_PREFIXES] + sorted(EXTRA_ENV_NAMES))
EXTRA_ENV_HELP = (
    "A JSON object of Claude Code settings, one line of text each. Allowed names: "
    f"{ALLOWED_EXTRA_ENV}. Anything else (PATH, NODE_OPTIONS, PROMPT_COMMAND...) is refused: "
    "it would run code on every developer's machine. Model ids (CLAUDE_CODE_SUBAGENT_MODEL, "
    "ANTHROPIC_SMALL_FAST_MODEL) are spelled in the gateway's model id style."
)


def is_claude_code_setting(name: str) -> bool:
    """Whether extra env may carry `name`: on the allow-list and not one the portal manages."""
    if name in MANAGED_ENV:
        return False
    return name in EXTRA_ENV_NAMES or any(name.startswith(p) and len(name) > len(p) for p in EXTRA_ENV_PREFIXES)


def check_env_name(name: object) -> str:
    """A variable name any config may carry: well formed, and managed by the portal or allowed."""
    check_name_length(name, "Environment variable", field="extra_env")
    if not isinstance(name, str) or not ENV_NAME.match(name):
        raise RuleError(
            f"{shown_name(name)} is not a valid environment variable name: use A-Z, 0-9 and _.", field="extra_env"
        )
    if name not in MANAGED_ENV and not is_claude_code_setting(name):
        raise RuleError(
            f"{name} is not a Claude Code setting the portal hands out: extra environment reaches every "
            f"developer's machine, where a variable like PATH, NODE_OPTIONS or PROMPT_COMMAND would run code. "
            f"Allowed: {ALLOWED_EXTRA_ENV}.",
            field="extra_env",
        )
    return name


def clean_extra_env_value(name: str, value: object) -> str:
    """One line of text (or a whole number), with no control character: what every shell carries alike."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RuleError(f"The value of {name} must be text or a whole number.", field="extra_env")
    value = str(value)
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        raise RuleError(
            f"The value of {name} must be one line of text, without line breaks or control characters.",
            field="extra_env",
        )
    return value


def clean_extra_env(env: object) -> dict[str, str]:
    """Extra Claude Code settings a gateway's guide asks for, as allowed names to one-line values."""
    if not isinstance(env, dict):
        raise RuleError(
            'Extra environment must be an object of names to values, like {"DISABLE_TELEMETRY": "1"}.',
            field="extra_env",
        )
    cleaned = {}
    for name, value in env.items():
        if isinstance(name, str) and name in MANAGED_ENV:
            raise RuleError(
                f"{name} is set by the portal from the gateway's fields; edit that field instead.", field="extra_env"
            )
        cleaned[check_env_name(name)] = clean_extra_env_value(name, value)
    return cleaned


TIMEOUT_MS_MIN, TIMEOUT_MS_MAX = 1000, 3_600_000
TIMEOUT_MS_RULE = "The timeout is in milliseconds and must be between 1000 (1 s) and 3600000 (1 h)."


def clean_timeout_ms(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not TIMEOUT_MS_MIN <= value <= TIMEOUT_MS_MAX:
        raise RuleError(TIMEOUT_MS_RULE)
    return value


def clean_troubleshooting(rows: object) -> list[list[str]]:
    """A gateway's troubleshooting table: a list of [symptom, fix] pairs of text."""
    shape = 'Troubleshooting must be a list of [symptom, fix] pairs, like [["401", "Check the key"]].'
    if not isinstance(rows, list):
        raise RuleError(shape)
    cleaned = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, (list, tuple)) or len(row) != 2 or not all(isinstance(part, str) for part in row):
            raise RuleError(f"Troubleshooting entry {number} is not a [symptom, fix] pair of text. {shape}")
        symptom, fix = (part.strip() for part in row)
        if not symptom or not fix:
            raise RuleError(f"Troubleshooting entry {number} needs both a symptom and a fix.")
        if any(unicodedata.category(ch) == "Cc" for ch in symptom + fix):
            raise RuleError(
                f"Troubleshooting entry {number} contains a control character (such as NUL or a tab), which the "
                "guides cannot show. Type it again as plain text."
            )
        cleaned.append([symptom, fix])
    return cleaned


# Gateway fields that hold a model id, spelled in the gateway's style.
GATEWAY_MODEL_FIELDS = (
    "default_model",
    "default_opus_model",
    "default_sonnet_model",
    "default_haiku_model",
    "custom_model_option",
    "probe_model",
)
KEY_MODEL_FIELDS = ("model", "opus_model", "sonnet_model", "haiku_model", "custom_model_option")
# The gateway and key fields a rule governs, with the rule; every door (API, web form, Django
# admin through Model.clean(), the config builder at render) applies this same table.
Rule = Callable[[Any], Any]
# Extra env names whose value is a model id: spelled in the gateway's style like the model fields.
MODEL_EXTRA_ENV = frozenset({"ANTHROPIC_SMALL_FAST_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL"})


def styled_extra_env(env: dict[str, str], style: str) -> dict[str, str]:
    """Cleaned extra env with its model ids (MODEL_EXTRA_ENV) in `style`."""
    return {
        name: _with_field("extra_env", lambda value: styled_model_id(value, style), value)
        if name in MODEL_EXTRA_ENV
        else value
        for name, value in env.items()
    }


GATEWAY_RULES: dict[str, Rule] = {
    "extra_env": lambda value: clean_extra_env(value or {}),
    "timeout_ms": clean_timeout_ms,
    "troubleshooting": lambda value: clean_troubleshooting(value or []),
    "probe_interval_minutes": lambda value: clean_probe_interval(value),
}


def clean_expiry(value: datetime | None) -> datetime | None:
    """A key's expiry, if the database can hold it: it is stored in UTC, where 9999-12-31 23:59 in New York is past the year 9999.

    Stored to the whole second, as the key page's form shows and posts it: an API client's milliseconds
    (JavaScript's toISOString) would otherwise read as an expiry change at every save of that form.
    """
    if value is None:
        return None
    # Stored in UTC and written in TIME_ZONE on every page: a day's margin at either end of the years 1 to 9999
    # keeps both in range, whatever the zone (no zone is a day or more from UTC).
    try:
        in_range = EARLIEST_EXPIRY <= value.astimezone(UTC) <= LATEST_EXPIRY
    except OverflowError:
        in_range = False
    if not in_range:
        raise RuleError(
            "That expiry is beyond the dates the portal can store and show (the years 1 to 9999, a day short of "
            "either end); choose a nearer date."
        ) from None
    return value.replace(microsecond=0)


def to_the_second(value: datetime | None) -> datetime | None:
    """A stored time as the forms show it, to the whole second, to compare with a new one (no range check: it is
    already stored)."""
    return value.replace(microsecond=0) if value else None


EARLIEST_EXPIRY = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
LATEST_EXPIRY = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


def expiry_from_wall_time(wall: datetime, zone: tzinfo, *, offset_possible: bool) -> datetime:
    """An expiry typed without a UTC offset, as the one instant it names in `zone`.

    Refused when the clocks show that time twice (the night they go back) or never (the night they go
    forward): taking either reading silently could end a key's life an hour early or late. `offset_possible`
    says whether the input could carry an offset (the API) or not (a page's date-and-time box).
    """
    first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first
    shown = f"{wall:%Y-%m-%d %H:%M}"
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall.replace(fold=0):
        instead = (
            f"send it with its UTC offset, {first.isoformat()} for the first or {second.isoformat()} for the second"
            if offset_possible
            else "choose a time outside that repeated hour, or set the exact one through the API with its UTC offset"
        )
        raise RuleError(
            f"{shown} happens twice in {zone}, as the clocks go back that night: first at {first:%H:%M %Z} "
            f"({first.astimezone(UTC):%H:%M} UTC), then at {second:%H:%M %Z} ({second.astimezone(UTC):%H:%M} UTC). "
            f"To say which, {instead}.",
            field="expires_at",
        )
    # In the gap, fold=0 reads the time with the offset before the change and fold=1 with the one after.
    change, latest = second.astimezone(UTC), first.astimezone(UTC)
    while change < latest and change.astimezone(zone).utcoffset() != second.utcoffset():
        change += timedelta(minutes=1)
    skipped_from = change + (first.utcoffset() or timedelta())  # the wall time the clocks jump from
    skipped_to = change.astimezone(zone)
    instead = "send a time the clocks show, with its UTC offset" if offset_possible else "choose a time the clocks show"
    raise RuleError(
        f"{shown} does not exist in {zone}: that night the clocks skip from {skipped_from:%H:%M} to "
        f"{skipped_to:%H:%M %Z}. Instead {instead}, such as {skipped_to:%Y-%m-%d %H:%M}"
        + (f" ({skipped_to.isoformat()})." if offset_possible else "."),
        field="expires_at",
    )


KEY_LABEL_MAX_LENGTH = 100  # GatewayKey.label's column


def clean_key_label(label: str | None) -> str:
    """A key's label as My set-up, the audit trail and every script's header show it, next to the masked key
    and fingerprint: the same rule as a team's name (portal.names), so none of them reads reversed."""
    return clean_name(
        label or "",
        what="key label",
        field="label",
        empty="Give the key a label, such as 'Alice laptop' or 'CI'.",
        max_length=KEY_LABEL_MAX_LENGTH,
    )


KEY_RULES: dict[str, Rule] = {
    "label": clean_key_label,
    "custom_headers": lambda value: clean_custom_headers(value or {}),
    "expires_at": clean_expiry,
    "timeout_ms": clean_timeout_ms,
}


def _with_field(name: str, rule: Rule, value: Any) -> Any:
    try:
        return rule(value)
    except RuleError as exc:
        exc.field = exc.field or name
        raise


def clean_gateway_fields(fields: dict[str, Any], *, style: str) -> tuple[dict[str, Any], list[str]]:
    """Apply the catalogue rules to the gateway fields given; return them cleaned, and notices for staff."""
    notices: list[str] = []
    cleaned = dict(fields)
    if "base_url" in cleaned:
        cleaned["base_url"], notices = _with_field("base_url", normalize_base_url, cleaned["base_url"])
    for name in GATEWAY_MODEL_FIELDS:
        if cleaned.get(name):
            cleaned[name] = _with_field(name, lambda value: styled_model_id(value, style), cleaned[name])
    for name, rule in GATEWAY_RULES.items():
        if name in cleaned:
            cleaned[name] = _with_field(name, rule, cleaned[name])
    if "extra_env" in cleaned:
        cleaned["extra_env"] = styled_extra_env(cleaned["extra_env"], style)
    return cleaned, notices


def clean_key_overrides(fields: dict[str, Any], *, style: str) -> dict[str, Any]:
    """Apply the rules to a key's overrides of its gateway's defaults (model ids in `style`)."""
    cleaned = dict(fields)
    for name in KEY_MODEL_FIELDS:
        if cleaned.get(name):
            cleaned[name] = _with_field(name, lambda value: styled_model_id(value, style), cleaned[name])
    for name, rule in KEY_RULES.items():
        if name in cleaned:
            cleaned[name] = _with_field(name, rule, cleaned[name])
    return cleaned


PROBE_INTERVAL_MIN, PROBE_INTERVAL_MAX = 1, 7 * 24 * 60
PROBE_INTERVAL_RULE = "The probe interval is in minutes and must be between 1 and 10080 (a week)."


def clean_probe_interval(minutes: int) -> int:
    """Minutes between scheduled probes of a gateway's keys: at least one, at most a week."""
    if not PROBE_INTERVAL_MIN <= minutes <= PROBE_INTERVAL_MAX:
        raise RuleError(PROBE_INTERVAL_RULE, field="probe_interval_minutes")
    return minutes
