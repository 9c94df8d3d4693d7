"""The config builder: a gateway's rules plus one key become the environment Claude Code needs.

Pure: data in, an ordered mapping of variable names to values out; no database, no network.
The rules come from the seed guides and from what Claude Code was measured to send
(shared/claude-code-facts.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateways.rules import styled_model_id
from portal.crypto import Secret, reveal

SETTINGS_SCHEMA_URL = "https://json.schemastore.org/claude-code-settings.json"


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

    def __repr__(self) -> str:  # keeps the secret out of tracebacks and debug output
        return f"ClaudeConfig(gateway={self.gateway_slug!r}, key={self.key_masked!r})"

    @property
    def env(self) -> dict[str, str]:
        """Every variable as text, the key included: read it only to write the config out."""
        return {name: reveal(value) for name, value in self.variables.items()}


def _pick(override: str, default: str, style: str) -> str:
    return styled_model_id(override or default, style) if (override or default) else ""


def build_config(gateway, key, secret: Secret) -> ClaudeConfig:
    """Build the Claude Code environment for `key` (a GatewayKey-like object) on `gateway`."""
    style = gateway.model_id_style
    env: dict[str, str | Secret] = {"ANTHROPIC_BASE_URL": gateway.base_url}
    if gateway.auth_scheme == "bearer":
        env["ANTHROPIC_AUTH_TOKEN"] = secret
        # A non-empty leftover ANTHROPIC_API_KEY makes Claude Code send both headers (auth conflict).
        env["ANTHROPIC_API_KEY"] = ""
    else:
        env["ANTHROPIC_API_KEY"] = secret
    models = {
        "ANTHROPIC_MODEL": _pick(key.model, gateway.default_model, style),
        "ANTHROPIC_DEFAULT_OPUS_MODEL": _pick(key.opus_model, gateway.default_opus_model, style),
        "ANTHROPIC_DEFAULT_SONNET_MODEL": _pick(key.sonnet_model, gateway.default_sonnet_model, style),
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": _pick(key.haiku_model, gateway.default_haiku_model, style),
        "ANTHROPIC_CUSTOM_MODEL_OPTION": _pick(key.custom_model_option, gateway.custom_model_option, style),
    }
    env.update({name: value for name, value in models.items() if value})
    if env.get("ANTHROPIC_CUSTOM_MODEL_OPTION"):
        name = key.custom_model_option_name or gateway.custom_model_option_name
        if name:
            env["ANTHROPIC_CUSTOM_MODEL_OPTION_NAME"] = name
    timeout = key.timeout_ms or gateway.timeout_ms
    if timeout:
        env["API_TIMEOUT_MS"] = str(timeout)
    betas_disabled = (
        key.disable_experimental_betas
        if key.disable_experimental_betas is not None
        else gateway.disable_experimental_betas
    )
    if betas_disabled:
        env["CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS"] = "1"
    if key.custom_headers:
        env["ANTHROPIC_CUSTOM_HEADERS"] = "\n".join(f"{name}: {value}" for name, value in key.custom_headers.items())
    for name, value in (gateway.extra_env or {}).items():
        env.setdefault(name, str(value))
    return ClaudeConfig(
        gateway_name=gateway.name,
        gateway_slug=gateway.slug,
        base_url=gateway.base_url,
        auth_scheme=gateway.auth_scheme,
        key_label=key.label,
        key_masked=key.masked,
        variables=env,
    )
