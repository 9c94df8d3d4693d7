"""A HOME that already holds an older Claude Code set-up: a hand-made settings.json env, a Console login.

Real shells, the real `claude` (print mode, and interactively under tmux for install.sh's first run)
against tests/gateway_emulator.py. Each test asserts what the developer meets: the request reaches the
gateway with the right credential and model, or the portal's own output told them what to fix first.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from gateways.config.installers import render_install_ps1, render_install_sh
from gateways.config.snippets import render_cmd, render_powershell
from gateways.rules import MANAGED_ENV
from gateways.services import assign_key
from tests.gateway_emulator import GatewayRules, running_emulator
from tests.gateways.test_switching_setups import (
    DOTTED,
    SHELLS,
    TOKAIFY_KEY,
    TOKENBAY_KEY,
    claude,
    config_for,
    device_installer,
    key_server,  # noqa: F401 (a fixture)
    settings_of,
    sh,
    write_settings,
)
from tests.test_e2e_claude import REPLY, SECRETS, portal_setup, run_claude  # noqa: F401 (a fixture)
from tests.test_e2e_interactive import claude_command, first_run, install, terminal  # noqa: F401 (a fixture)

OLD_API_KEY = "sk-ant-api03-old-official-key"
CONSOLE_KEY = "sk-ant-api03-old-console-login-key"
BETAS = "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS"
OLD_ENVS = {
    # A direct-Anthropic set-up by hand: only the key in settings.json.
    "old-api-key": {"ANTHROPIC_API_KEY": OLD_API_KEY},
    # An older guide's hyphenated model id.
    "old-model": {"ANTHROPIC_MODEL": "claude-sonnet-4-5"},
    "old-header": {"ANTHROPIC_CUSTOM_HEADERS": "X-Team: web"},
}


def source(shell: str, snippet: str, home: Path) -> subprocess.CompletedProcess:
    """The snippet as ~/.bashrc (or its kin) runs it: sourced from a file by a shell without a profile."""
    _, command = SHELLS[shell]
    path = home.parent / f"claude.{shell}"
    path.write_text(snippet)
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8"}
    return subprocess.run([*command, "-c", f"source {path}"], capture_output=True, text=True, env=env, timeout=30)


# --- 1. settings.json env outranks a snippet for every name it sets ----------------------------------------


@pytest.mark.shell
@pytest.mark.parametrize("old", OLD_ENVS, ids=list(OLD_ENVS))
@pytest.mark.parametrize("shell", SHELLS)
def test_a_snippet_warns_when_settings_json_sets_any_variable_the_portal_manages(db, shell, old, tmp_path):
    home = tmp_path / "home"
    write_settings(home, {"env": OLD_ENVS[old], "permissions": {"allow": []}})
    _, _, config = config_for("tokenbay", "https://api.tokenbay.com", TOKENBAY_KEY)
    render, _ = SHELLS[shell]
    result = source(shell, render(config), home)
    assert result.returncode == 0, result.stderr
    warning = result.stderr
    assert f"{home}/.claude/settings.json" in warning, warning  # which file
    assert "install.sh" in warning and "remove" in warning, warning  # what to do
    assert OLD_API_KEY not in warning and "claude-sonnet-4-5" not in warning and TOKENBAY_KEY not in warning


@pytest.mark.shell
@pytest.mark.parametrize("shell", SHELLS)
def test_no_warning_for_the_betas_flag_the_troubleshooting_tells_developers_to_add(db, shell, tmp_path):
    """The page's own advice puts CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS in settings.json: harmless on any gateway."""
    home = tmp_path / "home"
    write_settings(home, {"env": {BETAS: "1", "DISABLE_TELEMETRY": "1"}})
    _, _, config = config_for("tokenbay", "https://api.tokenbay.com", TOKENBAY_KEY)
    render, _ = SHELLS[shell]
    result = source(shell, render(config), home)
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("old", ["old-api-key", "old-model"])
@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_tokenbay_snippet_over_an_old_settings_json_env_warns_and_its_advice_works(portal_setup, tmp_path, shell, old):  # noqa: F811
    """The old key goes out as x-api-key beside the Bearer token, or the hyphenated id reaches a dotted-only gateway.

    The snippet cannot win over settings.json, so it must say so; the installer it names then gets an answer.
    """
    with running_emulator(GatewayRules(auth_scheme="bearer", keys={SECRETS["tokenbay"]}, models=DOTTED)) as gw:
        download = portal_setup("tokenbay", gw.base_url)
        home = tmp_path / "home"
        write_settings(home, {"env": OLD_ENVS[old]})
        sourced = source(shell, download(shell), home)
        snippet = tmp_path / "claude.bash"
        snippet.write_text(download("bash"))
        refused = run_claude(home, shell_snippet=snippet)
        assert refused.returncode != 0, refused.stdout  # measured: settings.json wins, so the warning is needed
        assert f"{home}/.claude/settings.json" in sourced.stderr and "install.sh" in sourced.stderr, sourced.stderr

        before = len(gw.message_requests())
        install(download, home)
        answered = run_claude(home, shell_snippet=snippet)
        calls = gw.message_requests()[before:]
    assert answered.returncode == 0 and REPLY in answered.stdout, answered.stdout + answered.stderr
    assert calls and all(
        c.headers.get("authorization") == f"Bearer {SECRETS['tokenbay']}"
        and "x-api-key" not in c.headers
        and c.body["model"] in DOTTED
        for c in calls
    ), [(c.headers.get("x-api-key"), c.body["model"]) for c in calls]


def test_windows_snippets_look_for_every_variable_the_portal_manages(db):
    _, _, config = config_for("tokenbay", "https://api.tokenbay.com", TOKENBAY_KEY)
    powershell, cmd = render_powershell(config), render_cmd(config)
    [pattern] = re.findall(r"Select-String -LiteralPath \$settings -Pattern '([^']*)' -Quiet", powershell)
    [findstr] = set(re.findall(r"findstr /L ((?:/C:\"[A-Za-z_]+\" )+)", cmd))
    for name in ("apiKeyHelper", *(MANAGED_ENV - {BETAS})):
        assert re.search(pattern, f'"{name}": ""'), name
        assert f'/C:"{name}"' in findstr, name
    assert not re.search(pattern, f'"{BETAS}": "1"') and f'/C:"{BETAS}"' not in findstr
    assert "install.ps1" in powershell and "install.ps1" in cmd


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_setup_page_says_settings_json_outranks_every_variable_it_sets(client, bob, tokaify_key, alice):
    assign_key(key=tokaify_key, username="bob", actor=alice)
    client.force_login(bob)
    html = client.get("/setup/").content.decode()
    notice = re.search(r'<p class="notice" id="one-setup">(.*?)</p>', html, re.S).group(1)
    assert "for every variable it sets" in notice, notice


# --- 2. A Console login's primaryApiKey in ~/.claude.json --------------------------------------------------


def console_login(home: Path) -> Path:
    """~/.claude.json after `/login` with an Anthropic Console account, as Claude Code writes it."""
    home.mkdir(parents=True, exist_ok=True)
    state = home / ".claude.json"
    state.write_text(
        json.dumps({"numStartups": 3, "hasCompletedOnboarding": True, "primaryApiKey": CONSOLE_KEY}, indent=2)
    )
    return state


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_tokenbay_install_sh_over_a_console_login_removes_its_key_and_the_first_run_answers(
    portal_setup,  # noqa: F811
    tmp_path,
    terminal,  # noqa: F811
):
    # claude-code-hub's rule: two different keys in the two headers are refused.
    rules = GatewayRules(auth_scheme="bearer", keys={SECRETS["tokenbay"]}, models=DOTTED, header_mode="strict")
    with running_emulator(rules) as gw:
        download = portal_setup("tokenbay", gw.base_url)
        home = tmp_path / "home"
        (home / "project").mkdir(parents=True)
        state = console_login(home)
        said = install(download, home)
        terminal.start(claude_command(home, {}), home / "project")
        screen = first_run(terminal)
        calls = gw.message_requests()
    assert REPLY in screen
    assert calls and all(
        c.headers.get("authorization") == f"Bearer {SECRETS['tokenbay']}" and "x-api-key" not in c.headers
        for c in calls
    ), sorted({str(c.headers.get("x-api-key")) for c in calls})
    assert "primaryApiKey" in said and CONSOLE_KEY not in said, said
    [backup] = home.glob(".claude.json.bak.*")
    assert json.loads(backup.read_text())["primaryApiKey"] == CONSOLE_KEY
    assert str(backup) in said
    assert "primaryApiKey" not in json.loads(state.read_text())


@pytest.mark.parametrize("interpreter", ["python3", "node"])
def test_a_bearer_install_sh_removes_primary_api_key_and_keeps_the_rest(db, tmp_path, interpreter):
    home = tmp_path / "home"
    state = console_login(home)
    _, _, config = config_for("tokenbay", "https://api.tokenbay.com", TOKENBAY_KEY)
    result = sh(render_install_sh(config), home, interpreter=interpreter)
    assert result.returncode == 0, result.stderr
    assert json.loads(state.read_text()) == {"numStartups": 3, "hasCompletedOnboarding": True}
    out = result.stdout + result.stderr
    assert "removed primaryApiKey" in result.stdout and CONSOLE_KEY not in out, out
    # Without a Console login there is nothing to say.
    again = sh(render_install_sh(config), home, interpreter=interpreter)
    assert "primaryApiKey" not in again.stdout + again.stderr


@pytest.mark.e2e
def test_an_x_api_key_install_sh_keeps_the_console_login_and_claude_answers(db, tmp_path):
    """ANTHROPIC_API_KEY outranks primaryApiKey for the x-api-key header (measured): the login can stay."""
    home = tmp_path / "home"
    state = console_login(home)
    with running_emulator(GatewayRules(auth_scheme="x-api-key", keys={TOKAIFY_KEY}, header_mode="strict")) as gw:
        _, _, config = config_for("tokaify", gw.base_url, TOKAIFY_KEY)
        installed = sh(render_install_sh(config), home)
        result = claude(home)
        sent = [(c.headers.get("x-api-key"), c.headers.get("authorization")) for c in gw.message_requests()]
    assert installed.returncode == 0, installed.stderr
    assert json.loads(state.read_text())["primaryApiKey"] == CONSOLE_KEY
    assert "primaryApiKey" not in installed.stdout + installed.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    assert sent and all(pair == (TOKAIFY_KEY, None) for pair in sent), sent


@pytest.mark.e2e
def test_a_live_device_over_a_console_login_sends_only_the_helpers_key(db, tmp_path, key_server):  # noqa: F811
    """The helper outranks a cached login for both headers (measured), so the device installer leaves the login."""
    home = tmp_path / "home"
    state = console_login(home)
    with running_emulator(GatewayRules(auth_scheme="bearer", keys={TOKENBAY_KEY}, models=DOTTED)) as gw:
        installed = sh(device_installer("tokenbay", gw.base_url, key_server), home)
        result = claude(home)
        sent = [(c.headers.get("x-api-key"), c.headers.get("authorization")) for c in gw.message_requests()]
    assert installed.returncode == 0, installed.stderr
    assert "apiKeyHelper" in settings_of(home)
    assert json.loads(state.read_text())["primaryApiKey"] == CONSOLE_KEY
    assert result.returncode == 0, result.stdout + result.stderr
    assert sent and all(pair == (TOKENBAY_KEY, f"Bearer {TOKENBAY_KEY}") for pair in sent), sent


def test_install_ps1_removes_primary_api_key_only_for_a_bearer_set_up(db):
    _, _, bearer = config_for("tokenbay", "https://api.tokenbay.com", TOKENBAY_KEY)
    _, _, x_api_key = config_for("tokaify", "https://api.tokaify.com", TOKAIFY_KEY)
    removal = "$stateDoc.PSObject.Properties.Remove('primaryApiKey')"
    assert removal in render_install_ps1(bearer)
    assert removal not in render_install_ps1(x_api_key)
