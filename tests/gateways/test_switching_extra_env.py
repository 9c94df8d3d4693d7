"""A team moves from TokenBay (A) to Tokaify (B), and staff gave TokenBay extra env that holds model ids.

TokenBay's ANTHROPIC_SMALL_FAST_MODEL and CLAUDE_CODE_SUBAGENT_MODEL are spelled its way (dotted); Tokaify sets
neither. Whatever way the developer switches (B's snippet after A's in the rc file, B's install.sh after A's
snippet, B's settings.local.json over A's installed settings.json), Claude Code must get none of A's model ids:
it sends them whenever it starts a subagent or a background task. Real bash, zsh, fish and sh (R71).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess

import pytest

from gateways.config import guide
from gateways.config.builder import ClaudeConfig
from gateways.config.installers import extra_env_names, render_install_ps1, render_install_sh
from gateways.config.snippets import REPLACED_ENV, render_bash, render_cmd, render_powershell, settings_env
from gateways.rules import MODEL_EXTRA_ENV
from gateways.services import assign_key
from tests.gateways.test_installers import run_installer, settings_file

pytestmark = [pytest.mark.shell]

A_EXTRA = {"ANTHROPIC_SMALL_FAST_MODEL": "claude-haiku-4.5", "CLAUDE_CODE_SUBAGENT_MODEL": "claude-sonnet-4.6"}
RC = {"bash": ".bashrc", "zsh": ".zshrc", "fish": ".config/fish/config.fish"}
NEW_TERMINAL = {"bash": ["bash", "-i"], "zsh": ["zsh", "-i"], "fish": ["fish", "-i"]}


def dumped(stdout: str) -> dict[str, str]:
    """The variables `env` printed between the markers, by a shell that also prints its prompts."""
    body = stdout.split("<<ENV\n", 1)[1].split("ENV>>", 1)[0]
    return dict(line.split("=", 1) for line in body.splitlines() if "=" in line)


def new_terminal(shell: str, home, stdin: str) -> subprocess.CompletedProcess:
    """An interactive shell, as a new terminal starts one: it reads its rc file in `home`."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "XDG_CONFIG_HOME": str(home / ".config"),
    }
    return subprocess.run(
        NEW_TERMINAL[shell], input=stdin, env=env, capture_output=True, text=True, timeout=60, cwd=home
    )


def exported_in_a_new_terminal(shell: str, home) -> dict[str, str]:
    return dumped(new_terminal(shell, home, "echo '<<ENV'; env; echo 'ENV>>'\n").stdout)


@pytest.fixture
def tokenbay_with_model_ids(tokenbay_key):
    gateway = tokenbay_key.gateway
    gateway.extra_env = A_EXTRA  # staff set these on TokenBay: its model ids, dotted
    gateway.save()
    return tokenbay_key


@pytest.fixture
def downloads(api, alice, bob, tokaify_key, tokenbay_with_model_ids):
    """Bob's downloads of both set-ups, by (gateway slug, format)."""
    client = api(bob)
    out = {}
    for key in (tokenbay_with_model_ids, tokaify_key):
        assignment = assign_key(key=key, username="bob", actor=alice)
        for fmt in (*RC, "install.sh", "settings.local.json"):
            response = client.get(f"/api/v1/me/configs/{assignment.id}/{fmt}")
            assert response.status_code == 200, response.content
            out[key.gateway.slug, fmt] = response.content.decode()
    return out


@pytest.mark.django_db
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_b_s_snippet_after_a_s_in_the_rc_file_exports_none_of_a_s_model_ids(downloads, tmp_path, shell):
    home = tmp_path / "home"
    rc = home / RC[shell]
    rc.parent.mkdir(parents=True)
    rc.write_text(downloads["tokenbay", shell] + "\n" + downloads["tokaify", shell])
    seen = exported_in_a_new_terminal(shell, home)
    assert seen["ANTHROPIC_BASE_URL"] == "https://api.tokaify.com"
    assert seen.get("ANTHROPIC_AUTH_TOKEN") in (None, "")
    assert {name: seen[name] for name in A_EXTRA if name in seen} == {}


@pytest.mark.django_db
def test_b_s_install_sh_names_the_rc_lines_of_a_s_model_ids_and_blanks_them(downloads, tmp_path):
    """TokenBay's bash snippet is in ~/.bashrc; the developer runs Tokaify's install.sh from a new terminal and
    removes the lines it names. Claude Code then reads neither TokenBay's model ids from the shell nor from
    settings.json, which holds them as ""."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text(downloads["tokenbay", "bash"])
    done = new_terminal("bash", home, f"sh <<'INSTALL'\n{downloads['tokaify', 'install.sh']}\nINSTALL\n")
    named: set[int] = set()
    for line in done.stderr.splitlines():
        if ".bashrc sets Claude Code variables on line(s)" in line:
            named = {int(n) for n in line.split("line(s)", 1)[1].split("-", 1)[0].split()}
    assert named, done.stderr[-2000:]
    rc_lines = (home / ".bashrc").read_text().splitlines()
    assert {number for number, line in enumerate(rc_lines, 1) if any(name in line for name in A_EXTRA)} <= named
    # The exported model ids are named, never their values.
    assert "CLAUDE_CODE_SUBAGENT_MODEL is exported in this shell" in done.stderr
    assert "claude-sonnet-4.6" not in done.stdout + done.stderr
    (home / ".bashrc").write_text("\n".join(line for n, line in enumerate(rc_lines, 1) if n not in named) + "\n")
    shell = exported_in_a_new_terminal("bash", home)
    settings = json.loads((home / ".claude/settings.json").read_text())["env"]
    assert {name: settings[name] for name in A_EXTRA} == {
        "ANTHROPIC_SMALL_FAST_MODEL": "",
        "CLAUDE_CODE_SUBAGENT_MODEL": "",
    }
    claude_sees = {**shell, **settings}
    assert {name: claude_sees[name] for name in A_EXTRA if claude_sees.get(name)} == {}


@pytest.mark.django_db
def test_b_s_settings_local_json_blanks_the_model_ids_a_s_installer_wrote_to_the_user_file(downloads, tmp_path):
    """README: a project's settings.local.json from another set-up sends none of the user-wide set-up's model ids.
    Claude Code merges env name by name, so the project file must name A's model ids to blank them."""
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        ["sh"],
        input=downloads["tokenbay", "install.sh"],
        env={"HOME": str(home), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    user_env = json.loads((home / ".claude/settings.json").read_text())["env"]
    assert user_env["CLAUDE_CODE_SUBAGENT_MODEL"] == "claude-sonnet-4.6"
    local_env = json.loads(downloads["tokaify", "settings.local.json"])["env"]
    merged = {**user_env, **local_env}
    assert {name: merged[name] for name in A_EXTRA if merged.get(name)} == {}


@pytest.mark.django_db
@pytest.mark.parametrize("interpreter", ["python3", "node"])
def test_b_s_install_sh_after_a_s_blanks_a_s_model_ids_and_says_so(downloads, tmp_path, interpreter):
    """By installer both ways: the model ids are the installers' like a managed name, "" and reported, not
    recorded as extra env for a later installer to take back."""
    first = run_installer(tmp_path, interpreter=interpreter, text=downloads["tokenbay", "install.sh"])
    assert first.returncode == 0, first.stderr
    assert "portalExtraEnv" not in json.loads(settings_file(tmp_path).read_text())
    second = run_installer(tmp_path, interpreter=interpreter, text=downloads["tokaify", "install.sh"])
    assert second.returncode == 0, second.stderr
    env = json.loads(settings_file(tmp_path).read_text())["env"]
    assert {name: env[name] for name in A_EXTRA} == dict.fromkeys(A_EXTRA, "")
    for name in A_EXTRA:
        assert f"removed {name}, left over from an earlier set-up" in second.stdout
    assert "claude-haiku-4.5" not in second.stdout + second.stderr


# --- The same names in every format, without a shell ----------------------------------------------------------


def config(env: dict[str, str]) -> ClaudeConfig:
    base = {"ANTHROPIC_BASE_URL": "https://api.tokaify.com", "ANTHROPIC_API_KEY": "sk-abc", "ANTHROPIC_AUTH_TOKEN": ""}
    return ClaudeConfig("Tokaify", "tokaify", "https://api.tokaify.com", "x-api-key", "k", "sk-…abc", {**base, **env})


def test_every_format_clears_the_model_id_settings_a_set_up_does_not_set():
    assert set(REPLACED_ENV) >= MODEL_EXTRA_ENV
    without = config({})
    assert {name: settings_env(without)[name] for name in MODEL_EXTRA_ENV} == dict.fromkeys(MODEL_EXTRA_ENV, "")
    unset = next(line for line in render_bash(without).splitlines() if line.startswith("builtin unset "))
    assert set(unset.split()[2:]) >= MODEL_EXTRA_ENV
    powershell = render_powershell(without)
    cmd = render_cmd(without)
    for name in MODEL_EXTRA_ENV:
        assert f"'{name}'" in next(line for line in powershell.splitlines() if line.startswith("foreach ($name in "))
        assert f"reg delete HKCU\\Environment /v {name} /f >nul 2>&1 & set {name}=" in cmd.splitlines()
    assert "CLAUDE_CODE_SUBAGENT_MODEL" in render_install_sh(without)  # the rc files' lines it lists
    # A set-up that sets one keeps it, and writes it: not recorded as extra env, which is what is left.
    with_one = config({"CLAUDE_CODE_SUBAGENT_MODEL": "claude-sonnet-4-6", "DISABLE_AUTOUPDATER": "1"})
    assert settings_env(with_one)["CLAUDE_CODE_SUBAGENT_MODEL"] == "claude-sonnet-4-6"
    assert "CLAUDE_CODE_SUBAGENT_MODEL" not in render_bash(with_one).split("builtin unset ", 1)[1].splitlines()[0]
    assert extra_env_names(with_one) == ["DISABLE_AUTOUPDATER"]
    # install.ps1 records what install.sh's merge records, and owns what it owns.
    ps1 = render_install_ps1(with_one)
    assert ps1_list(ps1, "extra") == ["DISABLE_AUTOUPDATER"]
    assert ps1_list(ps1, "managed") == list(REPLACED_ENV)


def ps1_list(script: str, variable: str) -> list[str]:
    """The names install.ps1 decodes into $variable (base64 JSON)."""
    encoded = re.search(rf"^\${variable} = @\(Decode-Json '([A-Za-z0-9+/=]+)'\)$", script, re.M).group(1)
    return json.loads(base64.b64decode(encoded))


def test_the_shell_tabs_and_headers_say_to_replace_an_earlier_set_up_s_lines():
    """Appended after A's lines, B's snippet would leave A's other extra settings exported."""
    for tab in guide.TABS[:3]:
        assert tab.slug in ("zsh", "bash", "fish")
        assert "replacing any earlier portal set-up's lines" in tab.where
        assert "Append" not in tab.where
    assert "# Put these lines in ~/.bashrc, replacing any earlier portal set-up's lines" in render_bash(config({}))


@pytest.mark.django_db
def test_my_set_up_shows_the_replacing_wording(client, bob, bob_assignment):
    client.force_login(bob)
    page = client.get("/setup/").content.decode()
    assert "Put these lines in ~/.bashrc, replacing any earlier portal set-up&#x27;s lines, then source" in page
    assert "Append to" not in page
