"""The config builder's rules, as pure functions: gateway + key + secret in, environment out."""

from __future__ import annotations

import json

import pytest

from gateways.config.builder import SETTINGS_SCHEMA_URL, build_config
from gateways.config.formats import FORMATS
from gateways.config.snippets import UnrepresentableValue, render_cmd, render_powershell, render_settings_json
from gateways.models import Gateway, GatewayKey
from tests.conftest import TOKAIFY_SECRET, TOKENBAY_SECRET

pytestmark = pytest.mark.django_db


def key_for(gateway: Gateway, **overrides) -> GatewayKey:
    return GatewayKey(gateway=gateway, label="laptop", masked="sk-…abcd", **overrides)


def test_x_api_key_gateway_puts_the_secret_in_anthropic_api_key_and_empties_the_bearer_token(tokaify):
    env = build_config(tokaify, key_for(tokaify), TOKAIFY_SECRET).env
    assert env["ANTHROPIC_BASE_URL"] == "https://api.tokaify.com"
    assert env["ANTHROPIC_API_KEY"] == TOKAIFY_SECRET
    # A stale ANTHROPIC_AUTH_TOKEN in the shell would otherwise be sent as a second, wrong Bearer key.
    assert env["ANTHROPIC_AUTH_TOKEN"] == ""
    assert "ANTHROPIC_MODEL" not in env  # Tokaify: choose with /model


def test_bearer_gateway_empties_anthropic_api_key(tokenbay):
    env = build_config(tokenbay, key_for(tokenbay), TOKENBAY_SECRET).env
    assert env["ANTHROPIC_AUTH_TOKEN"] == TOKENBAY_SECRET
    assert env["ANTHROPIC_API_KEY"] == ""
    assert env["ANTHROPIC_MODEL"] == "sonnet"
    assert env["ANTHROPIC_DEFAULT_OPUS_MODEL"] == "claude-opus-4.8"
    assert env["ANTHROPIC_DEFAULT_SONNET_MODEL"] == "claude-sonnet-4.6"
    assert env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "claude-haiku-4.5"
    assert env["API_TIMEOUT_MS"] == "600000"
    assert not env["ANTHROPIC_BASE_URL"].endswith("/v1")


def test_hyphenated_override_is_converted_not_passed_through(tokenbay):
    env = build_config(tokenbay, key_for(tokenbay, sonnet_model="claude-sonnet-4-6"), TOKENBAY_SECRET).env
    assert env["ANTHROPIC_DEFAULT_SONNET_MODEL"] == "claude-sonnet-4.6"


def test_key_overrides_win_over_gateway_defaults(tokenbay):
    key = key_for(
        tokenbay,
        model="opus",
        timeout_ms=120000,
        disable_experimental_betas=True,
        custom_headers={"X-Team": "web", "X-Env": "dev"},
    )
    env = build_config(tokenbay, key, TOKENBAY_SECRET).env
    assert env["ANTHROPIC_MODEL"] == "opus"
    assert env["API_TIMEOUT_MS"] == "120000"
    assert env["CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS"] == "1"
    assert env["ANTHROPIC_CUSTOM_HEADERS"] == "X-Team: web\nX-Env: dev"


def test_model_ids_in_extra_env_are_spelled_the_gateways_way(tokenbay):
    """An extra env model id saved before its gateway's style changed is written in the current style."""
    tokenbay.extra_env = {"CLAUDE_CODE_SUBAGENT_MODEL": "claude-haiku-4-5", "DISABLE_TELEMETRY": "1"}
    env = build_config(tokenbay, key_for(tokenbay), TOKENBAY_SECRET).env
    assert env["CLAUDE_CODE_SUBAGENT_MODEL"] == "claude-haiku-4.5"
    assert env["DISABLE_TELEMETRY"] == "1"


def test_custom_model_option_comes_with_its_name(tokaify):
    key = key_for(tokaify, custom_model_option="claude-sonnet-4-5", custom_model_option_name="Sonnet via Tokaify")
    env = build_config(tokaify, key, TOKAIFY_SECRET).env
    assert env["ANTHROPIC_CUSTOM_MODEL_OPTION"] == "claude-sonnet-4-5"
    assert env["ANTHROPIC_CUSTOM_MODEL_OPTION_NAME"] == "Sonnet via Tokaify"


def test_betas_flag_follows_the_gateway_unless_the_key_says_otherwise(tokaify):
    tokaify.disable_experimental_betas = True
    assert build_config(tokaify, key_for(tokaify), "sk-x").env["CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS"] == "1"
    key = key_for(tokaify, disable_experimental_betas=False)
    assert "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS" not in build_config(tokaify, key, "sk-x").env


def test_extra_env_is_added_but_cannot_replace_managed_values(tokaify):
    tokaify.extra_env = {"DISABLE_TELEMETRY": "1"}
    env = build_config(tokaify, key_for(tokaify), "sk-x").env
    assert env["DISABLE_TELEMETRY"] == "1"


def test_settings_json_is_schema_plus_env_of_strings_only(tokenbay):
    text = render_settings_json(build_config(tokenbay, key_for(tokenbay), TOKENBAY_SECRET))
    document = json.loads(text)
    assert list(document) == ["$schema", "env"]
    assert document["$schema"] == SETTINGS_SCHEMA_URL
    assert all(isinstance(v, str) for v in document["env"].values())
    assert document["env"]["ANTHROPIC_API_KEY"] == ""


def test_config_repr_never_shows_the_secret(tokaify):
    config = build_config(tokaify, key_for(tokaify), TOKAIFY_SECRET)
    assert TOKAIFY_SECRET not in repr(config)


# --- PowerShell and CMD: table tests of the escaping rules (no shell of theirs runs here) ----------


def single(name: str, value: str):
    from gateways.config.builder import ClaudeConfig

    return ClaudeConfig("GW", "gw", "https://gw", "x-api-key", "lbl", "sk-…", {name: value})


@pytest.mark.parametrize(
    "value, expression",
    [
        ("plain", "'plain'"),
        ("it's", "'it''s'"),
        ('$HOME `whoami` $(x) %PATH% ^&|<> ! "q"', "'$HOME `whoami` $(x) %PATH% ^&|<> ! \"q\"'"),
        ("café", "('caf' + [char]0x00E9)"),
        ("\u2018smart\u2019", "('' + [char]0x2018 + 'smart' + [char]0x2019)"),
        ("a\nb", "('a' + [char]0x000A + 'b')"),
        ("😀", "('' + [char]::ConvertFromUtf32(0x1F600))"),
    ],
)
def test_powershell_quoting(value, expression):
    text = render_powershell(single("ANTHROPIC_MODEL", value))
    assert f"$env:ANTHROPIC_MODEL = {expression}\r\n" in text
    assert f"[Environment]::SetEnvironmentVariable('ANTHROPIC_MODEL', {expression}, 'User')\r\n" in text
    assert text.isascii()


def test_powershell_removes_a_variable_that_must_be_empty_and_says_why():
    text = render_powershell(single("ANTHROPIC_API_KEY", ""))
    assert "Remove-Item Env:ANTHROPIC_API_KEY -ErrorAction SilentlyContinue" in text
    assert "[Environment]::SetEnvironmentVariable('ANTHROPIC_API_KEY', $null, 'User')" in text
    assert "cannot keep an empty variable" in text


@pytest.mark.parametrize(
    "value, setx, set_line",
    [
        ("sk-abc", 'setx ANTHROPIC_MODEL "sk-abc" >nul', 'set "ANTHROPIC_MODEL=sk-abc"'),
        ("a&b|c<d>e^f!g", 'setx ANTHROPIC_MODEL "a&b|c<d>e^f!g" >nul', 'set "ANTHROPIC_MODEL=a&b|c<d>e^f!g"'),
        ("with space", 'setx ANTHROPIC_MODEL "with space" >nul', 'set "ANTHROPIC_MODEL=with space"'),
        ("C:\\path\\", 'setx ANTHROPIC_MODEL "C:\\path\\\\" >nul', 'set "ANTHROPIC_MODEL=C:\\path\\"'),
    ],
)
def test_cmd_quoting(value, setx, set_line):
    lines = render_cmd(single("ANTHROPIC_MODEL", value)).split("\r\n")
    assert setx in lines
    assert set_line in lines


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("100%", "percent sign"),
        ('say "hi"', "double quote"),
        ("two\nlines", "line break"),
        ("café", "outside printable ASCII"),
        ("x" * 1025, "1024 characters"),
    ],
)
def test_cmd_refuses_what_it_cannot_carry(value, fragment):
    with pytest.raises(UnrepresentableValue, match=fragment):
        render_cmd(single("ANTHROPIC_MODEL", value))


def test_cmd_removes_a_variable_that_must_be_empty_and_says_why():
    lines = render_cmd(single("ANTHROPIC_API_KEY", "")).split("\r\n")
    assert "reg delete HKCU\\Environment /v ANTHROPIC_API_KEY /f >nul 2>&1" in lines
    assert "set ANTHROPIC_API_KEY=" in lines
    assert any("cannot store an empty variable" in line for line in lines)


def test_windows_snippets_first_clear_every_managed_or_model_id_variable_this_set_up_does_not_use():
    from gateways.config.snippets import CLEARED_ENV

    config = single("ANTHROPIC_API_KEY", "sk-abc")
    unused = sorted(CLEARED_ENV - {"ANTHROPIC_API_KEY"})
    assert {"ANTHROPIC_SMALL_FAST_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL"} <= set(unused)
    powershell = render_powershell(config).split("\r\n")
    clear = next(line for line in powershell if line.startswith("foreach ($name in "))
    assert clear == (
        "foreach ($name in " + ", ".join(f"'{n}'" for n in unused) + ") "
        '{ Remove-Item "Env:$name" -ErrorAction SilentlyContinue; '
        "[Environment]::SetEnvironmentVariable($name, $null, 'User') }"
    )
    assert powershell.index(clear) < powershell.index("$env:ANTHROPIC_API_KEY = 'sk-abc'")
    cmd = render_cmd(config).split("\r\n")
    for name in unused:
        # Both the saved user variable (registry) and this window's copy.
        assert f"reg delete HKCU\\Environment /v {name} /f >nul 2>&1 & set {name}=" in cmd
    assert not any("/v ANTHROPIC_API_KEY" in line for line in cmd)


# --- Every renderer refuses a name off the allow-list, whatever built the config ---------------------

REFUSED_NAMES = [
    "X=1; touch marker; Y",
    "PROMPT_COMMAND",
    "BASH_ENV",
    "NODE_OPTIONS",
    "LD_PRELOAD",
    "DYLD_INSERT_LIBRARIES",
    "PATH",
    "PSModulePath",
    "ComSpec",
    "PATHEXT",
    "X & calc.exe & Y",
    "X`); Start-Process calc; #",
    "X%PATH%",
    "CLAUDE_CODE_SHELL_PREFIX",
]


@pytest.mark.parametrize("name", REFUSED_NAMES)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_no_format_writes_a_refused_name(fmt, name):
    from gateways.config.builder import ClaudeConfig

    config = ClaudeConfig("GW", "gw", "https://gw", "x-api-key", "lbl", "sk-…", {"ANTHROPIC_MODEL": "m", name: "v"})
    with pytest.raises(UnrepresentableValue, match="This set-up cannot be written") as refused:
        FORMATS[fmt].render(config)
    if not name.isidentifier():
        assert name not in str(refused.value)  # a refusal may be piped into a shell: no stored text in it


@pytest.mark.parametrize(
    "gateway_fields, key_fields, sentence",
    [
        ({"extra_env": {"PROMPT_COMMAND": "touch marker"}}, {}, "the gateway's extra_env setting"),
        ({"extra_env": ["DISABLE_TELEMETRY"]}, {}, "the gateway's extra_env setting"),
        ({"default_haiku_model": "$(touch marker)"}, {}, "the gateway's default_haiku_model setting"),
        ({}, {"sonnet_model": "a b"}, "the key's sonnet_model setting"),
        ({}, {"custom_headers": ["X-Team: web"]}, "the key's custom_headers setting"),
    ],
)
def test_the_builder_refuses_stored_fields_that_break_the_rules(tokenbay, gateway_fields, key_fields, sentence):
    for name, value in gateway_fields.items():
        setattr(tokenbay, name, value)
    with pytest.raises(UnrepresentableValue, match=sentence) as refused:
        build_config(tokenbay, key_for(tokenbay, **key_fields), TOKENBAY_SECRET)
    assert "marker" not in str(refused.value) and TOKENBAY_SECRET not in str(refused.value)


# --- What probes saw of the credential headers, against the gateway's auth scheme ------------------


@pytest.mark.parametrize(
    "scheme, seen, expected",
    [
        ("x-api-key", {}, ""),
        ("x-api-key", {"x_api_key": True, "bearer": True}, ""),
        ("x-api-key", {"x_api_key": False, "bearer": True}, "set the gateway's auth scheme to Bearer token"),
        ("bearer", {"bearer": False, "x_api_key": True}, "set the gateway's auth scheme to x-api-key header"),
        ("bearer", {"bearer": False}, "Check the gateway's auth scheme"),
        ("bearer", {"bearer": True, "x_api_key": False, "mismatch_refused": True}, ""),
    ],
)
def test_auth_scheme_warning_only_when_probes_saw_its_header_refused(scheme, seen, expected):
    from gateways.rules import auth_scheme_warning

    warning = auth_scheme_warning(scheme, seen)
    assert (expected in warning) if expected else warning == ""


def test_credential_header_sentences_say_what_was_seen_and_skip_what_was_not():
    from gateways.rules import describe_credential_headers

    assert describe_credential_headers({"x_api_key": True, "bearer": False, "mismatch_refused": True}) == [
        "The key alone in x-api-key is accepted.",
        "The key alone as Authorization: Bearer is refused.",
        "A different, stale key in the other header makes it refuse the request.",
    ]


def test_a_config_for_a_gateway_whose_auth_scheme_contradicts_the_probes_carries_the_warning(tokaify):
    from gateways.config.installers import render_install_ps1, render_install_sh
    from gateways.config.snippets import render_bash, render_fish

    tokaify.credential_headers = {"x_api_key": False, "bearer": True}
    config = build_config(tokaify, key_for(tokaify), TOKAIFY_SECRET)
    [warning] = config.warnings
    assert "refuse the key sent as x-api-key" in warning
    for text in (render_bash(config), render_fish(config), render_cmd(config), render_powershell(config)):
        assert "# Warning: Probes saw this gateway refuse the key sent as x-api-key" in text.replace("REM", "#", 4)
        assert all(len(line) <= 120 for line in text.splitlines() if "Warning" in line or "auth scheme" in line)
    assert "echo 'warning: Probes saw this gateway" in render_install_sh(config)
    assert "Write-Warning 'Probes saw this gateway" in render_install_ps1(config)
    json.loads(render_settings_json(config))  # JSON has no comments: the page shows the warning instead
    tokaify.credential_headers = {"x_api_key": True, "bearer": True}
    assert build_config(tokaify, key_for(tokaify), TOKAIFY_SECRET).warnings == ()
