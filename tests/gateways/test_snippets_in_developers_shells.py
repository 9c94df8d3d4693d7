"""The bash, zsh and fish snippets in developers' own shells: their options, fish universals, their functions.

Each snippet is the one the portal hands out (GET /api/v1/me/configs/{id}/{format}), run in a real
interactive shell fed on standard input, then the shell prints its environment.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gateways.services import assign_key

pytestmark = [pytest.mark.django_db]

MODEL_NAMES = (
    "ANTHROPIC_MODEL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "API_TIMEOUT_MS",
)


@pytest.fixture
def snippets(api, alice, bob, tokaify_key, tokenbay_key, tmp_path):
    """{(gateway slug, format): path of the downloaded snippet}."""
    client = api(bob)
    out = {}
    for key in (tokaify_key, tokenbay_key):
        assignment = assign_key(key=key, username="bob", actor=alice)
        for fmt in ("bash", "zsh", "fish"):
            response = client.get(f"/api/v1/me/configs/{assignment.id}/{fmt}")
            assert response.status_code == 200, response.content
            path = tmp_path / f"{key.gateway.slug}.{fmt}"
            path.write_bytes(response.content)
            out[key.gateway.slug, fmt] = path
    return out


def run(command: list[str], lines: str, home: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "TERM": "dumb", "LANG": "C.UTF-8", **extra}
    return subprocess.run(command, input=lines, env=env, capture_output=True, text=True, timeout=60, cwd=home)


def dumped(stdout: str) -> dict[str, str]:
    """The variables `env` printed between the markers."""
    body = stdout.split("<<ENV\n", 1)[1].split("ENV>>", 1)[0]
    return dict(line.split("=", 1) for line in body.splitlines() if "=" in line)


DUMP = "echo '<<ENV'; env; echo 'ENV>>'\n"


def test_fish_switch_leaves_a_universal_model_id_of_the_same_name(snippets, tmp_path):
    """A fish user with `set -Ux ANTHROPIC_MODEL ...` (how fish users keep variables) who has TokenBay's snippet
    in config.fish, then pastes Tokaify's to switch: `set -e` erases only the global, and the universal
    comes back, so Claude Code asks Tokaify for a model id the set-up does not set."""
    home = tmp_path / "home"
    home.mkdir()
    lines = (
        "set -Ux ANTHROPIC_MODEL claude-sonnet-4-5\n"
        f"source {snippets['tokenbay', 'fish']}\n"
        f"source {snippets['tokaify', 'fish']}; echo rc=$status\n" + DUMP
    )
    done = run(["fish", "-i"], lines, home, XDG_CONFIG_HOME=str(home / ".config"))
    assert "rc=0" in done.stdout, done.stderr
    seen = dumped(done.stdout)
    assert seen["ANTHROPIC_BASE_URL"] == "https://api.tokaify.com"
    leftovers = {name: seen[name] for name in MODEL_NAMES if name in seen}
    assert leftovers == {}, f"Tokaify's snippet left {leftovers} in the shell"


def test_bash_with_set_eu_and_no_home_keeps_the_terminal_open(snippets, tmp_path):
    """`set -eu` in an interactive bash without HOME: the snippet's `$HOME` in the settings.json check is an
    unbound variable, which closes the developer's terminal before any export ran."""
    home = tmp_path / "home"
    home.mkdir()
    lines = f"set -eu; unset HOME\nsource {snippets['tokaify', 'bash']}\necho ALIVE\n" + DUMP
    done = run(["bash", "--norc", "--noprofile", "-i"], lines, home)
    assert "ALIVE" in done.stdout, done.stderr[-400:]
    assert dumped(done.stdout).get("ANTHROPIC_API_KEY") == "sk-tokaify-alice-0123456789abcdef"


def test_zsh_no_unset_without_home_still_sets_the_key(snippets, tmp_path):
    """zsh with NO_UNSET and no HOME: sourcing the snippet stops at its first line with status 126 and sets nothing."""
    home = tmp_path / "home"
    home.mkdir()
    lines = f"setopt NO_UNSET; unset HOME\nsource {snippets['tokaify', 'zsh']}; echo rc=$?\n" + DUMP
    done = run(["zsh", "-f", "-i"], lines, home)
    assert "rc=0" in done.stdout, done.stdout[-400:] + done.stderr[-400:]
    assert dumped(done.stdout).get("ANTHROPIC_API_KEY") == "sk-tokaify-alice-0123456789abcdef"


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_a_shell_function_named_unset_does_not_keep_the_old_gateways_model_ids(snippets, tmp_path, shell):
    """A developer's own `unset` function (here a logging wrapper that forgets to call the builtin) takes the
    snippet's `unset` line: switching TokenBay -> Tokaify keeps TokenBay's dotted model ids."""
    home = tmp_path / "home"
    home.mkdir()
    command = ["bash", "--norc", "--noprofile", "-i"] if shell == "bash" else ["zsh", "-f", "-i"]
    lines = (
        'unset() { echo "unsetting $*" >&2; }\n'
        f"source {snippets['tokenbay', shell]}\nsource {snippets['tokaify', shell]}\n" + DUMP
    )
    seen = dumped(run(command, lines, home).stdout)
    assert seen["ANTHROPIC_BASE_URL"] == "https://api.tokaify.com"
    assert [name for name in MODEL_NAMES if name in seen] == []
