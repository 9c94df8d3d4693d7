"""The config builder: a gateway's rules plus one key become the environment Claude Code needs.

Pure: data in, an ordered mapping of variable names to values out; no database, no network.
The rules come from the seed guides and from what Claude Code was measured to send
(shared/claude-code-facts.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateways import rules
from gateways.rules import CREDENTIAL_VARIABLE, UnrepresentableValue, styled_model_id
from portal.crypto import Secret, reveal

if TYPE_CHECKING:  # the builder takes model instances but never touches the database
    from gateways.models import Gateway, GatewayKey

SETTINGS_SCHEMA_URL = "https://json.schemastore.org/claude-code-settings.json"
# Claude Code remembers an approved ANTHROPIC_API_KEY by this many trailing characters (~/.claude.json).
API_KEY_SUFFIX_LENGTH = 20


@dataclass(frozen=True)
class ClaudeConfig:
    """Everything a renderer needs. `variables` keeps the key wrapped in a Secret; `env` unwraps it."""

    gateway_name: str
    gateway_slug: str
    base_url: str
    auth_scheme: str
    key_label: str
    key_masked: str
    variables: dict[str, str | Secret]
    # Sentences every format carries (a comment in scripts, a notice on the page): what is known to be wrong.
    warnings: tuple[str, ...] = ()
    # The key's team: a developer in two teams may hold a key on the same gateway in each, and the file names
    # and headers must tell those set-ups apart. "" when the key's team was not loaded (see build_config).
    team_name: str = ""
    team_slug: str = ""

    def __repr__(self) -> str:  # keeps the secret out of tracebacks and debug output
        return f"ClaudeConfig(team={self.team_slug!r}, gateway={self.gateway_slug!r}, key={self.key_masked!r})"

    @property
    def env(self) -> dict[str, str]:
        """Every variable as text, the key included: read it only to write the config out."""
        return {name: reveal(value) for name, value in self.variables.items()}

    @property
    def approved_key_suffix(self) -> str:
        """What Claude Code stores in ~/.claude.json when a developer approves ANTHROPIC_API_KEY: its last 20 characters.

        Empty for Bearer gateways: Claude Code only asks "Detected a custom API key..." about ANTHROPIC_API_KEY.
        """
        return reveal(self.variables.get("ANTHROPIC_API_KEY", ""))[-API_KEY_SUFFIX_LENGTH:]


# The stored fields that go into a config, checked again at every render: data saved around the
# rules (a data migration, `objects.create`, an old row) is refused, never written out.
STORED_GATEWAY_FIELDS = (
    "extra_env",
    "default_model",
    "default_opus_model",
    "default_sonnet_model",
    "default_haiku_model",
    "custom_model_option",
)
STORED_KEY_FIELDS = (*rules.KEY_MODEL_FIELDS, "custom_headers")


def _refuse_stored(owner: str, clean: Callable[[dict[str, Any]], object], fields: dict[str, Any]) -> None:
    try:
        clean(fields)
    except rules.RuleError as exc:
        # Name the field, never the stored value: a refusal may be piped into a shell
        # (curl ... | sh), so it must not echo text that staff or a migration wrote.
        raise UnrepresentableValue(
            f"This set-up cannot be written: the {owner}'s {exc.field or 'stored'} setting breaks the portal's "
            "rules. Ask staff or your team admin to correct it, then download again."
        ) from None


def _stored_root(fields: dict[str, Any]) -> None:
    """A stored base URL must be one the rules leave as it is (https, no /v1), and the scheme one the portal knows."""
    try:
        kept = rules.normalize_base_url(fields["base_url"])[0] == fields["base_url"]
    except rules.RuleError:
        kept = False
    if not kept:
        raise rules.RuleError("not the root the rules would keep", field="base_url")
    if fields["auth_scheme"] not in CREDENTIAL_VARIABLE:
        raise rules.RuleError("not a known scheme", field="auth_scheme")


def build_config(gateway: Gateway, key: GatewayKey, secret: Secret) -> ClaudeConfig:
    """Build the Claude Code environment for `key` on `gateway` (saved or not: nothing is read from the database).

    Each setting is `key.setting(name)`: the key's override, else the gateway's default. The key's team is
    named only when the caller loaded it (every download reads it with the key): a probe builds a config per
    key and must not pay a query for a name it never writes.
    Raises UnrepresentableValue, with a sentence, when a stored field breaks the rules.
    """
    style = gateway.model_id_style
    _refuse_stored(
        "gateway",
        lambda fields: rules.clean_gateway_fields(fields, style=style),
        {name: getattr(gateway, name) for name in STORED_GATEWAY_FIELDS},
    )
    _refuse_stored(
        "key",
        lambda fields: rules.clean_key_overrides(fields, style=style),
        {name: getattr(key, name) for name in STORED_KEY_FIELDS},
    )
    _refuse_stored("gateway", _stored_root, {"base_url": gateway.base_url, "auth_scheme": gateway.auth_scheme})
    env: dict[str, str | Secret] = {"ANTHROPIC_BASE_URL": gateway.base_url}
    # The credential variable the gateway does not use is set to "": settings.json outranks the shell
    # only for the names it sets, and a stale key left in the shell would be sent in the other header
    # too (measured: a Bearer-first gateway then uses the stale key, claude-code-hub refuses the pair).
    for scheme, variable in CREDENTIAL_VARIABLE.items():
        env[variable] = secret if scheme == gateway.auth_scheme else ""
    models = {
        "ANTHROPIC_MODEL": styled_model_id(key.setting("model"), style),
        "ANTHROPIC_DEFAULT_OPUS_MODEL": styled_model_id(key.setting("opus_model"), style),
        "ANTHROPIC_DEFAULT_SONNET_MODEL": styled_model_id(key.setting("sonnet_model"), style),
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": styled_model_id(key.setting("haiku_model"), style),
        "ANTHROPIC_CUSTOM_MODEL_OPTION": styled_model_id(key.setting("custom_model_option"), style),
    }
    env.update({name: value for name, value in models.items() if value})
    if env.get("ANTHROPIC_CUSTOM_MODEL_OPTION"):
        name = key.setting("custom_model_option_name")
        if name:
            env["ANTHROPIC_CUSTOM_MODEL_OPTION_NAME"] = name
    timeout = key.setting("timeout_ms")
    if timeout:
        env["API_TIMEOUT_MS"] = str(timeout)
    if key.setting("disable_experimental_betas"):
        env["CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS"] = "1"
    headers = rules.clean_custom_headers(key.custom_headers or {})
    if headers:
        env["ANTHROPIC_CUSTOM_HEADERS"] = "\n".join(f"{name}: {value}" for name, value in headers.items())
    for name, value in rules.styled_extra_env(rules.clean_extra_env(gateway.extra_env or {}), style).items():
        env.setdefault(name, value)
    team = key.team if type(key).team.is_cached(key) else None
    return ClaudeConfig(
        team_name=team.name if team else "",
        team_slug=team.slug if team else "",
        gateway_name=gateway.name,
        gateway_slug=gateway.slug,
        base_url=gateway.base_url,
        auth_scheme=gateway.auth_scheme,
        key_label=key.label,
        key_masked=key.masked,
        variables=env,
        warnings=tuple(
            w for w in [rules.auth_scheme_warning(gateway.auth_scheme, gateway.credential_headers or {})] if w
        ),
    )


def saved_as(pattern: str, *, team_slug: str, gateway_slug: str) -> str:
    """The name a download is saved under: `pattern` (like claude-{team}-{gateway}.bash) with the two slugs.

    A character outside [A-Za-z0-9_-] (a slug saved around the validators) becomes a dash: the name sits inside
    the Content-Disposition header's quotes, and a script's "Run:" line names it.
    """
    return pattern.format(team=_plain_slug(team_slug), gateway=_plain_slug(gateway_slug))


def _plain_slug(slug: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", slug) or "-"
