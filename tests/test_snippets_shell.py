"""Generated snippets, run in real bash, zsh and fish: every value comes out unchanged.

Each snippet is tried both ways the page promises: sourced as a file, and pasted (fed to the
shell on standard input, which it reads like typed lines).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateways.config.builder import ClaudeConfig
from gateways.config.snippets import UnrepresentableValue, render_bash, render_fish, render_zsh

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
def test_an_empty_value_is_really_set_and_empty(shell, tmp_path):
    render, _ = SHELLS[shell]
    snippet = render(config_with({"ANTHROPIC_API_KEY": "", "ANTHROPIC_AUTH_TOKEN": "sk-x"}))
    seen = environment_after(shell, snippet, tmp_path, pasted=False)
    assert "ANTHROPIC_API_KEY" in seen
    assert seen["ANTHROPIC_API_KEY"] == ""


@pytest.mark.parametrize("shell", SHELLS)
def test_a_nul_character_is_refused_with_a_reason(shell):
    render, _ = SHELLS[shell]
    with pytest.raises(UnrepresentableValue, match="NUL"):
        render(config_with({"X": "a\x00b"}))
