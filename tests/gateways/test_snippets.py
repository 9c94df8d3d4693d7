"""Generated snippets, run in real bash, zsh and fish: every value comes out unchanged.

Each snippet is tried both ways the page promises: sourced as a file, and pasted (fed to the
shell on standard input, which it reads like typed lines).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateways.config.builder import ClaudeConfig
from gateways.config.snippets import UnrepresentableValue, render_bash, render_fish, render_zsh
from gateways.models import Gateway
from gateways.rules import EXTRA_ENV_NAMES, MANAGED_ENV, RuleError, check_env_name

pytestmark = pytest.mark.shell

SHELLS = {
    "bash": (render_bash, ["bash", "--norc", "--noprofile"]),
    "zsh": (render_zsh, ["zsh", "-f"]),
    "fish": (render_fish, ["fish", "--no-config"]),
}
NAMES = ["ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_CUSTOM_HEADERS"]
TRICKY = "'\"$`\\%!^&|;<>(){}[]*?~# \t\n\r=é€😀"

values = st.text(
    alphabet=st.one_of(
        st.sampled_from(TRICKY),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    ),
    max_size=30,
)


def config_with(env: dict[str, str]) -> ClaudeConfig:
    return ClaudeConfig("GW", "gw", "https://gw", "bearer", "label", "sk-…", env)


def environment_after(shell: str, snippet: str, tmp: Path, *, pasted: bool) -> dict[str, str]:
    _, command = SHELLS[shell]
    script = tmp / f"snippet.{shell}"
    script.write_text(snippet, encoding="utf-8")
    dump = "env -0"
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8", "HOME": str(tmp)}
    if pasted:
        if shell == "zsh":
            command = [*command, "-i"]  # as at its prompt: `#` starts no comment there unless set
        result = subprocess.run(
            command, input=(snippet + dump + "\n").encode(), capture_output=True, env=env, timeout=30
        )
    else:
        result = subprocess.run([*command, "-c", f"source {script}; {dump}"], capture_output=True, env=env, timeout=30)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    pairs = [item.split("=", 1) for item in result.stdout.decode("utf-8").split("\0") if "=" in item]
    return dict(pairs)


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("pasted", [False, True], ids=["sourced", "pasted"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=st.lists(values, min_size=4, max_size=4))
def test_every_value_survives_the_real_shell(shell, pasted, chosen, tmp_path):
    env = dict(zip(NAMES, chosen, strict=True))
    render, _ = SHELLS[shell]
    try:
        snippet = render(config_with(env))
    except UnrepresentableValue:
        pytest.fail("posix shells and fish can carry any value without NUL")
    seen = environment_after(shell, snippet, tmp_path, pasted=pasted)
    for name, value in env.items():
        assert seen.get(name) == value, (shell, name)


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("pasted", [False, True], ids=["sourced", "pasted"])
def test_a_label_and_gateway_name_in_the_notes_never_run(shell, pasted, tmp_path):
    """The notes name the gateway and the key's label, which admins type: pasted or sourced, they are only notes."""
    render, _ = SHELLS[shell]
    config = ClaudeConfig(
        "GW (x); touch gw_ran; (y",
        "gw",
        "https://gw",
        "bearer",
        "Bob's laptop (x); touch label_ran; (y",
        "sk-…",
        {
            "ANTHROPIC_BASE_URL": "https://gw",
            "ANTHROPIC_AUTH_TOKEN": "sk-one",
            "ANTHROPIC_API_KEY": "",
            "ANTHROPIC_CUSTOM_HEADERS": "X-A: 1\n# a value's line, not a note",
        },
    )
    _, command = SHELLS[shell]
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8", "HOME": str(tmp_path)}
    seen = environment_after(shell, render(config), tmp_path, pasted=pasted)
    assert seen["ANTHROPIC_AUTH_TOKEN"] == "sk-one" and seen["ANTHROPIC_API_KEY"] == ""
    assert seen["ANTHROPIC_CUSTOM_HEADERS"] == "X-A: 1\n# a value's line, not a note"
    assert not (tmp_path / "gw_ran").exists() and not (tmp_path / "label_ran").exists()
    if pasted:
        if shell == "zsh":
            command = [*command, "-i"]
        done = subprocess.run(command, input=render(config).encode(), capture_output=True, env=env, cwd=tmp_path)
        assert b"command not found" not in done.stderr and b"unmatched" not in done.stderr, done.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_an_empty_value_is_really_set_and_empty(shell, tmp_path):
    render, _ = SHELLS[shell]
    snippet = render(config_with({"ANTHROPIC_API_KEY": "", "ANTHROPIC_AUTH_TOKEN": "sk-x"}))
    seen = environment_after(shell, snippet, tmp_path, pasted=False)
    assert "ANTHROPIC_API_KEY" in seen
    assert seen["ANTHROPIC_API_KEY"] == ""


THEN = {"bash": " && ", "zsh": " && ", "fish": "; and "}
STATUS = {"bash": "$?", "zsh": "$?", "fish": "$status"}


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("pasted", [False, True], ids=["sourced", "pasted"])
@pytest.mark.parametrize("erases", [True, False], ids=["erasing-unset-variables", "erasing-nothing"])
def test_a_snippet_that_worked_ends_with_status_zero(shell, pasted, erases, tmp_path):
    """`source file; and claude` runs claude, and a paste leaves no `[4]` at the prompt, even after a failed command.

    fish's `set -e` of an unset variable returns 4, and a `set` that works keeps the status before it.
    """
    render, command = SHELLS[shell]
    env = {"ANTHROPIC_BASE_URL": "https://gw", "ANTHROPIC_AUTH_TOKEN": "sk-one"}
    if not erases:
        env = dict.fromkeys(sorted(MANAGED_ENV), "1")
    snippet = render(config_with(env))
    script = tmp_path / f"snippet.{shell}"
    script.write_text(snippet, encoding="utf-8")
    run_env = {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8", "HOME": str(tmp_path)}
    if pasted:
        if shell == "zsh":
            command = [*command, "-i"]
        typed = f"false\n{snippet}echo status={STATUS[shell]}\n"
        result = subprocess.run(command, input=typed.encode(), capture_output=True, env=run_env, timeout=30)
        assert "status=0" in result.stdout.decode(), result.stdout.decode() + result.stderr.decode()
    else:
        line = f"false; source {script}{THEN[shell]}echo ran"
        result = subprocess.run([*command, "-c", line], capture_output=True, env=run_env, timeout=30)
        assert result.stdout.decode().strip() == "ran", result.stderr.decode()
        assert result.returncode == 0


@pytest.mark.parametrize("shell", SHELLS)
def test_a_nul_character_is_refused_with_a_reason(shell):
    render, _ = SHELLS[shell]
    with pytest.raises(UnrepresentableValue, match="NUL"):
        render(config_with({"ANTHROPIC_MODEL": "a\x00b"}))


# --- Variable names: the renderer's own check, whatever the database holds --------------------------

# What the sweep ran: each plants code that a later prompt, child shell or `node` would run.
HOSTILE_EXTRA_ENV = {
    "command in a name": {"X=1; touch marker; Y": "v"},
    "PROMPT_COMMAND": {"PROMPT_COMMAND": "touch marker"},
    "BASH_ENV": {"BASH_ENV": "./payload.sh"},
    "NODE_OPTIONS": {"NODE_OPTIONS": "--require ./payload.js"},
}


def run_as_a_developer_would(shell: str, text: str, folder: Path) -> None:
    """Source `text` as the page says, then do what a developer does next: a child shell, a prompt, node."""
    _, command = SHELLS[shell]
    (folder / "payload.sh").write_text("touch marker\n")
    (folder / "payload.js").write_text("require('fs').writeFileSync('marker', '')\n")
    script = folder / f"downloaded.{shell}"
    script.write_text(text, encoding="utf-8")
    steps = [f"source {script}", "bash --norc --noprofile -c true", "bash --norc --noprofile -i </dev/null"]
    if shutil.which("node"):
        steps.append("node -e 0")
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8", "HOME": str(folder)}
    subprocess.run([*command, "-c", "; ".join(steps)], cwd=folder, env=env, capture_output=True, timeout=60)


@pytest.mark.django_db
@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("extra_env", list(HOSTILE_EXTRA_ENV.values()), ids=list(HOSTILE_EXTRA_ENV))
def test_a_hostile_name_saved_in_the_database_never_runs_in_a_real_shell(
    api, bob, bob_assignment, tokenbay, shell, extra_env, tmp_path
):
    Gateway.objects.filter(pk=tokenbay.pk).update(extra_env=extra_env)  # around every rule, like a migration
    response = api(bob).get(f"/api/v1/me/configs/{bob_assignment.id}/{shell}")
    run_as_a_developer_would(shell, response.content.decode(), tmp_path)
    assert not (tmp_path / "marker").exists()
    assert response.status_code == 422  # refused: there is no snippet to source
    assert "This set-up cannot be written" in response.json()["detail"]


def is_allowed(name: str) -> bool:
    try:
        check_env_name(name)
    except RuleError:
        return False
    return True


names = st.one_of(
    st.sampled_from(sorted(EXTRA_ENV_NAMES | MANAGED_ENV)),
    st.from_regex(r"\A(ANTHROPIC|DISABLE|OTEL_EXPORTER_OTLP|CLAUDE_CODE|LD|BASH)_[A-Z0-9_]{1,12}\Z"),
    st.sampled_from(["PATH", "PROMPT_COMMAND", "BASH_ENV", "ENV", "NODE_OPTIONS", "IFS", "PS1", "fish_user_paths"]),
    st.text(alphabet=st.sampled_from(TRICKY + "AZ_09az"), min_size=1, max_size=12),
)


@pytest.mark.parametrize("shell", SHELLS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(env=st.dictionaries(names, values, min_size=1, max_size=4))
def test_what_the_renderer_accepts_sets_exactly_those_variables_and_nothing_else(shell, env, tmp_path):
    render, _ = SHELLS[shell]
    try:
        snippet = render(config_with(env))
    except UnrepresentableValue:
        assert not all(is_allowed(name) for name in env), "refused although every name is allowed"
        return
    assert all(is_allowed(name) for name in env)
    before = environment_after(shell, "", tmp_path, pasted=False)
    files = set(tmp_path.iterdir())
    after = environment_after(shell, snippet, tmp_path, pasted=False)
    changed = {name: value for name, value in after.items() if before.get(name) != value and name != "_"}
    assert changed == env
    assert set(tmp_path.iterdir()) == files  # sourcing created no file


# --- Switching gateways: gateway B's snippet after gateway A's leaves exactly B's set-up --------------


def seed_configs() -> dict[str, ClaudeConfig]:
    """Both seed gateways' real configs, each with every optional setting the other lacks."""
    from gateways.config.builder import build_config
    from gateways.models import GatewayKey

    tokaify, tokenbay = Gateway.objects.get(slug="tokaify"), Gateway.objects.get(slug="tokenbay")
    tokaify_key = GatewayKey(
        gateway=tokaify,
        label="l",
        masked="sk-…",
        custom_model_option="claude-opus-4-8",
        disable_experimental_betas=True,
    )
    tokenbay_key = GatewayKey(gateway=tokenbay, label="l", masked="sk-…", custom_headers={"X-Team": "web"})
    return {
        "tokaify": build_config(tokaify, tokaify_key, "sk-tokaify-switch-0123456789"),
        "tokenbay": build_config(tokenbay, tokenbay_key, "sk-tokenbay-switch-0123456789"),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("pasted", [False, True], ids=["sourced", "pasted"])
@pytest.mark.parametrize(("first", "second"), [("tokenbay", "tokaify"), ("tokaify", "tokenbay")])
def test_a_second_gateways_snippet_replaces_the_first_one_exactly(shell, pasted, first, second, tmp_path):
    configs = seed_configs()
    render, _ = SHELLS[shell]
    assert set(configs[first].env) - set(configs[second].env), "the test needs variables only the first one sets"
    seen = environment_after(shell, render(configs[first]) + render(configs[second]), tmp_path, pasted=pasted)
    managed = {name: value for name, value in seen.items() if name in MANAGED_ENV}
    assert managed == configs[second].env
