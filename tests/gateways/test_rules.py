from __future__ import annotations

import pytest

from gateways.rules import (
    RuleError,
    check_env_name,
    clean_custom_headers,
    clean_extra_env,
    clean_gateway_fields,
    clean_secret,
    clean_troubleshooting,
    mask,
    normalize_base_url,
    styled_model_id,
)


@pytest.mark.parametrize(
    "given, expected, notices",
    [
        ("https://api.tokaify.com", "https://api.tokaify.com", 0),
        ("https://api.tokaify.com/", "https://api.tokaify.com", 0),
        ("https://api.tokaify.com/v1", "https://api.tokaify.com", 1),
        ("https://api.tokaify.com/v1/", "https://api.tokaify.com", 1),
        ("https://gw.example.com/anthropic", "https://gw.example.com/anthropic", 0),
        ("https://gw.example.com/anthropic/v1", "https://gw.example.com/anthropic", 1),
        ("https://gw.example.com/v1/messages", "https://gw.example.com", 1),
        ("https://gw.example.com/anthropic/V1/Messages/", "https://gw.example.com/anthropic", 1),
        ("https://gw.example.com/v1/v1", "https://gw.example.com", 1),
        ("https://gw.example.com/messages", "https://gw.example.com/messages", 0),
        ("https://gw.example.com/v10", "https://gw.example.com/v10", 0),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080", 0),
        ("http://localhost:9000", "http://localhost:9000", 0),
    ],
)
def test_base_url_is_the_root_claude_code_needs(given, expected, notices):
    url, messages = normalize_base_url(given)
    assert url == expected
    assert len(messages) == notices
    if notices:
        assert "/v1/messages itself" in messages[0]


@pytest.mark.parametrize(
    "given, fragment",
    [
        ("ftp://api.example.com", "must start with https://"),
        ("api.example.com", "must start with https://"),
        ("http://api.example.com", "only allowed for 127.0.0.1"),
        ("https://api.example.com/?x=1", "cannot have a query"),
        ("https://user:pw@api.example.com", "cannot carry a user name"),
    ],
)
def test_bad_base_urls_are_refused_with_advice(given, fragment):
    with pytest.raises(RuleError, match=fragment):
        normalize_base_url(given)


@pytest.mark.parametrize(
    "given",
    ["https://\uff11\uff12\uff17.\uff10.\uff10.\uff11:18443", "https://\uff45xample.com", "https://exa mple.com"],
)
def test_a_host_with_lookalike_or_invalid_characters_is_refused(given):
    with pytest.raises(RuleError, match="host name"):
        normalize_base_url(given)


def test_an_internationalised_host_is_written_in_its_ascii_form():
    url, notices = normalize_base_url("https://Bücher.example:8443/api")
    assert url == "https://xn--bcher-kva.example:8443/api"
    assert "xn--bcher-kva.example" in notices[0]


@pytest.mark.parametrize(
    "given", ["https://gw.example:99999", "https://gw.example:\uff11\uff18\uff14\uff14\uff13", "https://[::1"]
)
def test_a_base_url_that_cannot_be_parsed_is_refused_with_a_sentence(given):
    with pytest.raises(RuleError, match="cannot be read"):
        normalize_base_url(given)


def test_secret_is_trimmed():
    assert clean_secret("  sk-abc123-0123456789  \n", requires_sk_prefix=True) == "sk-abc123-0123456789"


@pytest.mark.parametrize(
    "secret, fragment",
    [
        ("sk-abc def", "space or line break"),
        ("sk-abc\ndef", "space or line break"),
        ("sk-abc\x07def", "control character"),
        ("sk-abc\u200bdef", "control character"),
        ("", "empty"),
        ("abc123", "do not remove the sk- prefix"),
    ],
)
def test_bad_secrets_are_refused_with_the_guides_advice(secret, fragment):
    with pytest.raises(RuleError, match=fragment):
        clean_secret(secret, requires_sk_prefix=True)


def test_secret_without_prefix_is_fine_where_the_gateway_does_not_ask():
    assert clean_secret("abc123-0123456789", requires_sk_prefix=False) == "abc123-0123456789"


@pytest.mark.parametrize(
    "model, style, expected",
    [
        ("claude-sonnet-4-6", "dotted", "claude-sonnet-4.6"),
        ("claude-sonnet-4.6", "dotted", "claude-sonnet-4.6"),
        ("claude-opus-4-8", "dotted", "claude-opus-4.8"),
        ("claude-sonnet-4-5-20250929", "dotted", "claude-sonnet-4.5-20250929"),
        ("claude-sonnet-4-20250514", "dotted", "claude-sonnet-4-20250514"),
        ("sonnet", "dotted", "sonnet"),
        ("claude-haiku-4.5", "hyphenated", "claude-haiku-4-5"),
        ("claude-haiku-4-5", "as-is", "claude-haiku-4-5"),
    ],
)
def test_model_ids_are_spelled_the_gateways_way(model, style, expected):
    assert styled_model_id(model, style) == expected


def test_model_id_with_odd_characters_is_refused():
    with pytest.raises(RuleError, match="not a model id"):
        styled_model_id("claude sonnet; rm -rf", "dotted")


def test_mask_shows_prefix_and_last_four():
    assert mask("sk-0123456789abcd") == "sk-…abcd"
    assert mask("short") == "…"


def test_custom_headers_refuse_auth_headers_and_bad_names():
    assert clean_custom_headers({"X-Team": " web "}) == {"X-Team": "web"}
    with pytest.raises(RuleError, match="set by Claude Code"):
        clean_custom_headers({"Authorization": "x"})
    with pytest.raises(RuleError, match="not a valid HTTP header"):
        clean_custom_headers({"Bad Name": "x"})


@pytest.mark.parametrize("value", ["café", "café€", "web\u00a0team"])
def test_custom_header_values_must_be_printable_ascii(value):
    with pytest.raises(RuleError, match="printable ASCII"):
        clean_custom_headers({"X-Team": value})


def test_extra_env_cannot_override_managed_variables():
    assert clean_extra_env({"DISABLE_TELEMETRY": 1}) == {"DISABLE_TELEMETRY": "1"}
    with pytest.raises(RuleError, match="set by the portal"):
        clean_extra_env({"ANTHROPIC_API_KEY": "x"})
    with pytest.raises(RuleError, match="not a valid environment variable"):
        clean_extra_env({"lower-case": "x"})


# Names that run code when exported in a shell or handed to Claude Code (a Node program), as the
# sweep ran them, and neighbours of Claude Code's own names that name a program or move its settings.
CODE_RUNNING_NAMES = [
    "PATH",
    "PROMPT_COMMAND",
    "BASH_ENV",
    "ENV",
    "NODE_OPTIONS",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "DYLD_INSERT_LIBRARIES",
    "PS1",
    "PS4",
    "IFS",
    "SHELLOPTS",
    "ZDOTDIR",
    "PYTHONSTARTUP",
    "CLAUDE_CODE_SHELL_PREFIX",
    "CLAUDE_CODE_GIT_BASH_PATH",
    "CLAUDE_ENV_FILE",
    "CLAUDE_CONFIG_DIR",
    "HTTPS_PROXY",
    "ANTHROPIC_",
    "DISABLE_",
]


@pytest.mark.parametrize("name", CODE_RUNNING_NAMES)
def test_extra_env_refuses_every_name_off_the_allow_list_and_says_why(name):
    with pytest.raises(RuleError, match="would run code") as refused:
        clean_extra_env({name: "1"})
    assert "Allowed: ANTHROPIC_*" in str(refused.value)
    assert refused.value.field == "extra_env"


@pytest.mark.parametrize("name", ["X=1; touch marker; Y", "fish_function_path", "lower-case", "A B", "É", ""])
def test_extra_env_refuses_names_a_shell_would_read_as_code(name):
    with pytest.raises(RuleError, match="not a valid environment variable name"):
        clean_extra_env({name: "1"})


@pytest.mark.parametrize(
    "name",
    [
        "DISABLE_TELEMETRY",
        "DISABLE_AUTOUPDATER",
        "DISABLE_PROMPT_CACHING",
        "ANTHROPIC_SMALL_FAST_MODEL",
        "ANTHROPIC_CUSTOM_MODEL_OPTION_DESCRIPTION",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
        "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY",
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_METRICS_EXPORTER",
        "MAX_THINKING_TOKENS",
        "BASH_DEFAULT_TIMEOUT_MS",
        "MCP_TIMEOUT",
    ],
)
def test_extra_env_takes_the_claude_code_settings_a_guide_may_ask_for(name):
    assert clean_extra_env({name: 1}) == {name: "1"}


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\x00b", "a\x1b[31m", "a\u202eb", "tab\there"])
def test_extra_env_values_are_one_line_without_control_characters(value):
    with pytest.raises(RuleError, match="one line of text"):
        clean_extra_env({"DISABLE_TELEMETRY": value})


@pytest.mark.parametrize("value", [True, None, [1], {"a": 1}, 1.5])
def test_extra_env_values_are_text_or_whole_numbers(value):
    with pytest.raises(RuleError, match="text or a whole number"):
        clean_extra_env({"DISABLE_TELEMETRY": value})


def test_managed_names_pass_the_render_check_but_not_extra_env():
    assert check_env_name("ANTHROPIC_AUTH_TOKEN") == "ANTHROPIC_AUTH_TOKEN"
    with pytest.raises(RuleError, match="set by the portal"):
        clean_extra_env({"ANTHROPIC_AUTH_TOKEN": "x"})


def test_troubleshooting_is_a_list_of_symptom_fix_pairs():
    assert clean_troubleshooting([[" 401 ", " Check the key "], ("slow", "Raise API_TIMEOUT_MS")]) == [
        ["401", "Check the key"],
        ["slow", "Raise API_TIMEOUT_MS"],
    ]
    for bad in ([["a", "b", "c"]], [["a"]], [["a", 1]], ["a :: b"], {"a": "b"}, [["", "fix"]]):
        with pytest.raises(RuleError, match="Troubleshooting"):
            clean_troubleshooting(bad)


def test_a_base_url_that_outgrows_its_column_once_written_in_ascii_is_refused():
    host = ".".join(["ü"] * 30) + ".io"
    url = f"https://{host}/" + "a" * (298 - len(f"https://{host}"))
    assert len(url) == 299  # fits as typed; each ü becomes xn--tda
    with pytest.raises(
        RuleError, match=r"is 4\d\d characters long once its host name is written in ASCII; at most 300"
    ):
        normalize_base_url(url)
    root, _ = normalize_base_url("https://" + ".".join(["ü"] * 10) + ".io/anthropic")
    assert root.startswith("https://xn--tda.") and root.endswith(".io/anthropic")


def test_a_troubleshooting_entry_with_a_control_character_is_refused():
    for symptom, fix in (("a\x00b", "fix"), ("401", "check\tthe key")):
        with pytest.raises(RuleError, match="Troubleshooting entry 1 contains a control character"):
            clean_troubleshooting([[symptom, fix]])


def test_gateway_rules_name_the_field_at_fault():
    with pytest.raises(RuleError) as refused:
        clean_gateway_fields({"default_model": "a b"}, style="as-is")
    assert refused.value.field == "default_model"
    with pytest.raises(RuleError) as refused:
        clean_gateway_fields({"troubleshooting": [["a", "b", "c"]]}, style="as-is")
    assert refused.value.field == "troubleshooting"
