"""The config builder: a gateway's rules plus one key become the environment Claude Code needs.

Pure: data in, an ordered mapping of variable names to values out; no database, no network.
The rules come from the seed guides and from what Claude Code was measured to send
(shared/claude-code-facts.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateways.rules import CREDENTIAL_VARIABLE, AuthScheme, styled_model_id

SETTINGS_SCHEMA_URL = "https://json.schemastore.org/claude-code-settings.json"


@dataclass(frozen=True)
class ClaudeConfig:
    """Everything a renderer needs; `env` holds the secret, so never log one of these."""

    gateway_name: str
    gateway_slug: str
    base_url: str
    auth_scheme: str
    key_label: str
    key_masked: str
    env: dict[str, str]

    def __repr__(self) -> str:  # keeps the secret out of tracebacks and debug output
        return f"ClaudeConfig(gateway={self.gateway_slug!r}, key={self.key_masked!r})"


def build_config(gateway, key, secret: str) -> ClaudeConfig:
    """Build the Claude Code environment for `key` (a GatewayKey-like object) on `gateway` (its gateway).

    Each setting is `key.setting(name)`: the key's override, else the gateway's default.
    """
    style = gateway.model_id_style
    env: dict[str, str] = {"ANTHROPIC_BASE_URL": gateway.base_url}
    env[CREDENTIAL_VARIABLE[gateway.auth_scheme]] = secret
    if gateway.auth_scheme == AuthScheme.BEARER:
        # A non-empty leftover ANTHROPIC_API_KEY makes Claude Code send both headers (auth conflict).
        env["ANTHROPIC_API_KEY"] = ""
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
        env=env,
    )
