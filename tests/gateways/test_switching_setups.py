"""Switching gateways with the portal's set-ups: installers, live devices and snippets, one after another.

Each test follows a switch a developer makes (a live device then a static installer, a snippet then an
installer, an installer then a snippet, a re-install) in real shells, and, where what counts is what goes
over the wire, asks the gateway emulator what the real Claude Code CLI (print mode) sent.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gateways.config import live
from gateways.config.builder import build_config
from gateways.config.guide import after_setup_steps
from gateways.config.installers import render_install_ps1, render_install_sh
from gateways.config.live import LiveSetup, live_config, render_device_install_ps1, render_device_install_sh
from gateways.config.snippets import render_bash, render_cmd, render_fish, render_powershell, render_zsh
from gateways.models import Gateway, GatewayKey
from gateways.rules import MANAGED_ENV
from gateways.services import assign_key
from portal.crypto import Secret
from tests.gateway_emulator import GatewayRules, running_emulator

pytestmark = [pytest.mark.django_db]

ROOT = Path(__file__).resolve().parents[2]
CLAUDE_BIN = os.environ.get("CLAUDE_BIN", str(ROOT / ".cache/claude-code/node_modules/.bin/claude"))
TOKENBAY_KEY = "sk-tokenbay-old-0123456789abcdef"
TOKAIFY_KEY = "sk-tokaify-new-0123456789abcdef"
DOTTED = {"claude-opus-4.8", "claude-sonnet-4.6", "claude-haiku-4.5"}
BETAS = "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS"
MODEL_AND_HEADER_NAMES = sorted(
    MANAGED_ENV - {"ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", BETAS}
)
SHELLS = {
    "bash": (render_bash, ["bash", "--norc", "--noprofile"]),
    "zsh": (render_zsh, ["zsh", "-f"]),
    "fish": (render_fish, ["fish", "--no-config"]),
}


def config_for(slug: str, base_url: str, secret: str, **key_fields):
    gateway = Gateway.objects.get(slug=slug)
    gateway.base_url = base_url  # in memory only: the preset pointed at an emulator
    key = GatewayKey(gateway=gateway, label="laptop", masked="sk-…cdef", **key_fields)
    return gateway, key, build_config(gateway, key, Secret(secret))


def tool_path(tmp_path: Path, interpreter: str) -> str:
    """A PATH with the tools the installers use and only one JSON-capable interpreter."""
    folder = tmp_path / f"bin-{interpreter}"
    if not folder.exists():
        folder.mkdir()
        for tool in ["sh", "mkdir", "chmod", "date", "grep", "cut", "tr", "cat", "sed", "mv", interpreter]:
            found = os.path.realpath(sys.executable) if tool == "python3" else shutil.which(tool)
            (folder / tool).symlink_to(found)
    return str(folder)


def sh(script: str, home: Path, extra: dict | None = None, *, interpreter: str = "") -> subprocess.CompletedProcess:
    path = tool_path(home.parent, interpreter) if interpreter else os.environ["PATH"]
    env = {"HOME": str(home), "PATH": path, "LC_ALL": "C.UTF-8", **(extra or {})}
    return subprocess.run(["sh"], input=script, env=env, capture_output=True, text=True, timeout=60)


def claude(home: Path, extra: dict | None = None) -> subprocess.CompletedProcess:
    if not Path(CLAUDE_BIN).exists():
        pytest.fail(f"The Claude Code CLI is not at {CLAUDE_BIN}; `make test` installs it (make claude-cli).")
    env = {
        "HOME": str(home),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        **(extra or {}),
    }
    command = [CLAUDE_BIN, "-p", "Reply with the single word: connected"]
    return subprocess.run(command, env=env, cwd=home, capture_output=True, text=True, timeout=120)


def settings_of(home: Path) -> dict:
    return json.loads((home / ".claude" / "settings.json").read_text())


def write_settings(home: Path, document: dict) -> None:
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    (home / ".claude" / "settings.json").write_text(json.dumps(document, indent=2) + "\n")


class _KeyServer(BaseHTTPRequestHandler):
    """Stands in for the portal's key URL: answers TokenBay's live key to the helper."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = TOKENBAY_KEY.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def key_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeyServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v1/device-key"
    server.shutdown()
    server.server_close()


def device_installer(slug: str, base_url: str, key_url: str, **key_fields) -> str:
    gateway, key, _ = config_for(slug, base_url, "", **key_fields)
    setup = LiveSetup("Acme portal", key_url, "laptop", "linux", live_config(gateway, key), "t" * 43)
    return render_device_install_sh(setup)


# --- 1. A static installer after a live device: the portal's apiKeyHelper goes ---------------------------


@pytest.mark.e2e
def test_tokaifys_install_sh_after_a_live_tokenbay_device_sends_only_the_tokaify_key(tmp_path, key_server):
    """The helper's key would go out as Authorization: Bearer beside x-api-key; a Bearer-first gateway uses it."""
    home = tmp_path / "home"
    home.mkdir()
    with running_emulator(GatewayRules(auth_scheme="bearer", keys={TOKENBAY_KEY}, models=DOTTED)) as old_gw:
        installed = sh(device_installer("tokenbay", old_gw.base_url, key_server), home)
        assert "Checked: the helper fetched the key." in installed.stdout, installed.stderr

    rules = GatewayRules(auth_scheme="x-api-key", keys={TOKAIFY_KEY}, header_mode="bearer-first")
    with running_emulator(rules) as new_gw:
        _, _, config = config_for("tokaify", new_gw.base_url, TOKAIFY_KEY)
        switched = sh(render_install_sh(config), home)
        result = claude(home)
        sent = [(c.headers.get("x-api-key"), c.headers.get("authorization")) for c in new_gw.message_requests()]
    assert switched.returncode == 0, switched.stderr
    assert "removed apiKeyHelper" in switched.stdout
    assert "apiKeyHelper" not in settings_of(home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sent and all(pair == (TOKAIFY_KEY, None) for pair in sent), sent


@pytest.mark.shell
@pytest.mark.parametrize("interpreter", ["python3", "node"])
def test_a_static_installer_removes_the_portals_own_helper_and_keeps_the_rest(tmp_path, interpreter):
    home = tmp_path / "home"
    mine = {"permissions": {"allow": ["Bash(make:*)"]}, "env": {"DISABLE_TELEMETRY": "1"}}
    write_settings(home, {**mine, "apiKeyHelper": live.SH_HELPER_COMMAND})
    _, _, config = config_for("tokaify", "https://api.tokaify.com", TOKAIFY_KEY)
    result = sh(render_install_sh(config), home, interpreter=interpreter)
    assert result.returncode == 0, result.stderr
    settings = settings_of(home)
    assert "apiKeyHelper" not in settings
    assert settings["permissions"] == mine["permissions"] and settings["env"]["DISABLE_TELEMETRY"] == "1"
    assert "removed apiKeyHelper" in result.stdout and "My devices" in result.stdout


@pytest.mark.shell
@pytest.mark.parametrize("interpreter", ["python3", "node"])
def test_a_static_installer_keeps_someone_elses_helper_and_warns_without_showing_it(tmp_path, interpreter):
    home = tmp_path / "home"
    theirs = "vault read -field=key secret/claude --token s.hunter2"
    write_settings(home, {"apiKeyHelper": theirs})
    _, _, config = config_for("tokaify", "https://api.tokaify.com", TOKAIFY_KEY)
    result = sh(render_install_sh(config), home, interpreter=interpreter)
    assert result.returncode == 0, result.stderr
    assert settings_of(home)["apiKeyHelper"] == theirs
    assert "apiKeyHelper the portal did not write" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


def test_install_ps1_removes_the_portals_windows_helper_and_only_that():
    _, _, config = config_for("tokaify", "https://api.tokaify.com", TOKAIFY_KEY)
    text = render_install_ps1(config)
    [pattern] = re.findall(r"-like '([^']*)'", text)
    written = live.PS1_HELPER_COMMAND.replace("{path}", r"C:\Users\bob\.claude\portal-key-helper.ps1")
    assert fnmatch.fnmatchcase(written, pattern)  # -like: * is the only wildcard in it
    assert not fnmatch.fnmatchcase(r"powershell -File C:\vault\get-key.ps1", pattern)
    assert "$doc.PSObject.Properties.Remove('apiKeyHelper')" in text
    assert "removed apiKeyHelper" in text and "apiKeyHelper the portal did not write" in text


@pytest.mark.e2e
def test_a_live_device_after_tokaifys_install_sh_sends_only_the_live_key(tmp_path, key_server):
    """The reverse switch: the static key is blanked, so only the helper's key goes out (in both headers)."""
    home = tmp_path / "home"
    home.mkdir()
    _, _, static = config_for("tokaify", "https://api.tokaify.com", TOKAIFY_KEY)
    assert sh(render_install_sh(static), home).returncode == 0
    with running_emulator(GatewayRules(auth_scheme="bearer", keys={TOKENBAY_KEY}, models=DOTTED)) as gw:
        installed = sh(device_installer("tokenbay", gw.base_url, key_server), home)
        result = claude(home)
        sent = [(c.headers.get("x-api-key"), c.headers.get("authorization")) for c in gw.message_requests()]
    assert installed.returncode == 0, installed.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    assert sent and all(TOKAIFY_KEY not in (value or "") for pair in sent for value in pair), sent


# --- 2. A snippet after an installer does not switch: it says so ------------------------------------------


def run_snippet(shell: str, snippet: str, home: Path, *, pasted: bool) -> subprocess.CompletedProcess:
    _, command = SHELLS[shell]
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8", "HOME": str(home)}
    if pasted:
        if shell == "zsh":
            command = [*command, "-i"]
        status = "$status" if shell == "fish" else "$?"
        typed = f"{snippet}echo status={status}\n"
        return subprocess.run(command, input=typed, capture_output=True, text=True, env=env, timeout=30)
    path = home / f"claude-tokaify.{shell}"
    path.write_text(snippet)
    then = "; and" if shell == "fish" else " &&"
    line = f"source {path}{then} echo status=0"
    return subprocess.run([*command, "-c", line], capture_output=True, text=True, env=env, timeout=30)


@pytest.mark.shell
@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("pasted", [False, True], ids=["sourced", "pasted"])
def test_a_snippet_after_an_installer_says_settings_json_wins_and_still_works(shell, pasted, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    _, _, old = config_for("tokenbay", "https://api.tokenbay.com", TOKENBAY_KEY)
    _, _, new = config_for("tokaify", "https://api.tokaify.com", TOKAIFY_KEY)
    render, _ = SHELLS[shell]

    before = run_snippet(shell, render(new), home, pasted=pasted)
    assert "settings.json" not in before.stderr, before.stderr  # nothing to say yet
    assert sh(render_install_sh(old), home).returncode == 0
    after = run_snippet(shell, render(new), home, pasted=pasted)
    assert "status=0" in after.stdout, after.stderr
    assert "settings.json sets ANTHROPIC_BASE_URL or apiKeyHelper" in after.stderr
    assert "install.sh" in after.stderr
    assert TOKENBAY_KEY not in after.stdout + after.stderr and TOKAIFY_KEY not in after.stdout + after.stderr


@pytest.mark.shell
@pytest.mark.parametrize(
    ("document", "warned"),
    [
        ({"apiKeyHelper": live.SH_HELPER_COMMAND}, True),  # a live device
        ({"env": {"ANTHROPIC_BASE_URL": "https://api.tokenbay.com"}}, True),
        ({"env": {"DISABLE_TELEMETRY": "1"}, "permissions": {"allow": []}}, False),
    ],
    ids=["live-device", "base-url", "unrelated"],
)
def test_a_snippet_warns_only_when_settings_json_would_win(document, warned, tmp_path):
    home = tmp_path / "home"
    write_settings(home, document)
    _, _, config = config_for("tokaify", "https://api.tokaify.com", TOKAIFY_KEY)
    result = run_snippet("bash", render_bash(config), home, pasted=False)
    assert "status=0" in result.stdout
    assert ("settings.json sets ANTHROPIC_BASE_URL or apiKeyHelper" in result.stderr) is warned, result.stderr


@pytest.mark.shell
@pytest.mark.parametrize("shell", SHELLS)
def test_a_snippet_reads_settings_json_where_claude_config_dir_points(shell, tmp_path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    write_settings(home, {"env": {"ANTHROPIC_BASE_URL": "https://api.tokenbay.com"}})  # not read: the variable wins
    elsewhere.mkdir()
    _, _, config = config_for("tokaify", "https://api.tokaify.com", TOKAIFY_KEY)
    render, command = SHELLS[shell]
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CLAUDE_CONFIG_DIR": str(elsewhere)}
    quiet = subprocess.run(command, input=render(config), capture_output=True, text=True, env=env, timeout=30)
    assert "settings.json sets" not in quiet.stderr, quiet.stderr
    (elsewhere / "settings.json").write_text('{"apiKeyHelper": "x"}\n')
    warned = subprocess.run(command, input=render(config), capture_output=True, text=True, env=env, timeout=30)
    assert "settings.json sets ANTHROPIC_BASE_URL or apiKeyHelper" in warned.stderr


def test_windows_snippets_check_settings_json_by_content():
    _, _, config = config_for("tokaify", "https://api.tokaify.com", TOKAIFY_KEY)
    powershell = render_powershell(config)
    assert "Select-String -LiteralPath $settings -Pattern '\"(ANTHROPIC_BASE_URL|apiKeyHelper|" in powershell
    assert "$env:CLAUDE_CONFIG_DIR" in powershell and "Write-Warning" in powershell and "install.ps1" in powershell
    cmd = render_cmd(config)
    assert 'findstr /L /C:"ANTHROPIC_BASE_URL" /C:"apiKeyHelper"' in cmd
    assert '"%USERPROFILE%\\.claude\\settings.json"' in cmd and "install.ps1" in cmd
    for line in cmd.splitlines():  # echo inside if ( ... ) breaks on a parenthesis or an ampersand
        if line.startswith("if defined CLAUDE_CONFIG_DIR"):
            assert all(ch not in line.split("echo ", 1)[1].split(" 1>&2")[0] for ch in "()&|<>^%")


def test_the_setup_page_says_a_snippet_cannot_switch_after_an_installer(client, bob, tokaify_key, alice):
    assign_key(key=tokaify_key, username="bob", actor=alice)
    client.force_login(bob)
    html = client.get("/setup/").content.decode()
    notice = re.search(r'<p class="notice" id="one-setup">(.*?)</p>', html, re.S).group(1)
    assert "paste its snippet: each first clears" not in notice
    assert "after an installer or settings.json" in notice and "switch with the other gateway's installer" in notice


# --- 3. An installer after a snippet: no stale model id or header ------------------------------------------


@pytest.mark.e2e
def test_install_sh_after_the_other_gateways_snippet_sends_no_stale_model_or_header(tmp_path):
    """TokenBay's snippet is still in ~/.bashrc and exported; the developer switches to Tokaify with install.sh."""
    home = tmp_path / "home"
    home.mkdir()
    _, _, old = config_for("tokenbay", "https://api.tokenbay.com", TOKENBAY_KEY, custom_headers={"X-Team": "web"})
    (home / ".bashrc").write_text("export PATH=$PATH:$HOME/bin\n" + render_bash(old))
    exported = {name: value for name, value in old.env.items() if value}
    assert {"ANTHROPIC_MODEL", "ANTHROPIC_CUSTOM_HEADERS"} <= set(exported)
    with running_emulator(GatewayRules(auth_scheme="x-api-key", keys={TOKAIFY_KEY})) as gw:
        _, _, new = config_for("tokaify", gw.base_url, TOKAIFY_KEY)
        installed = sh(render_install_sh(new), home, exported)
        result = claude(home, exported)
        calls = gw.message_requests()
    assert installed.returncode == 0, installed.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    models = [call.body.get("model") for call in calls]
    assert models and all(model and model not in DOTTED for model in models), models  # Claude Code's own default
    assert all("x-team" not in call.headers for call in calls)
    for name in ("ANTHROPIC_MODEL", "ANTHROPIC_CUSTOM_HEADERS", "ANTHROPIC_DEFAULT_HAIKU_MODEL"):
        assert f"warning: {name} is exported in this shell" in installed.stderr
    managed = re.compile("|".join(MANAGED_ENV - {BETAS}))
    rc_lines = [str(n) for n, line in enumerate((home / ".bashrc").read_text().splitlines(), 1) if managed.search(line)]
    listed = re.search(r"\.bashrc sets Claude Code variables on line\(s\) ([0-9 ]+)", installed.stderr).group(1)
    assert listed.split() == rc_lines
    assert TOKENBAY_KEY not in installed.stdout + installed.stderr


@pytest.mark.shell
@pytest.mark.parametrize("interpreter", ["python3", "node"])
def test_install_sh_writes_empty_values_for_the_model_and_header_names_it_does_not_set(tmp_path, interpreter):
    home = tmp_path / "home"
    write_settings(home, {"env": {"ANTHROPIC_MODEL": "claude-sonnet-4.6", "API_TIMEOUT_MS": "600000"}})
    _, _, config = config_for("tokaify", "https://api.tokaify.com", TOKAIFY_KEY)
    result = sh(render_install_sh(config), home, interpreter=interpreter)
    assert result.returncode == 0, result.stderr
    env = settings_of(home)["env"]
    assert {name: env[name] for name in config.env} == config.env
    assert {name: env[name] for name in MODEL_AND_HEADER_NAMES} == dict.fromkeys(MODEL_AND_HEADER_NAMES, "")
    assert BETAS not in env  # "" would not be "off" for every release: it is left alone
    assert "removed ANTHROPIC_MODEL, left over from an earlier set-up" in result.stdout
    assert "removed API_TIMEOUT_MS" in result.stdout and "removed ANTHROPIC_CUSTOM_HEADERS" not in result.stdout


# --- 4. Re-installing keeps the betas flag the troubleshooting told the developer to add -------------------


@pytest.mark.shell
@pytest.mark.parametrize("installer", ["install.sh-python3", "install.sh-node", "device"])
def test_reinstalling_keeps_the_betas_flag_the_troubleshooting_asked_for(installer, tmp_path):
    home = tmp_path / "home"
    _, _, config = config_for("tokaify", "https://api.tokaify.com", TOKAIFY_KEY)
    assert BETAS not in config.env
    if installer == "device":
        script = device_installer("tokaify", "https://api.tokaify.com", "http://127.0.0.1:9/unreachable")
        interpreter = ""
    else:
        script, interpreter = render_install_sh(config), installer.split("-")[1]
    assert sh(script, home, interpreter=interpreter).returncode == 0
    settings = settings_of(home)
    settings["env"][BETAS] = "1"  # the advice, followed
    write_settings(home, settings)

    again = sh(script, home, interpreter=interpreter)
    assert again.returncode == 0, again.stderr
    assert settings_of(home)["env"][BETAS] == "1"
    assert f"removed {BETAS}" not in again.stdout


def test_the_windows_installers_keep_the_betas_flag_too():
    gateway, key, config = config_for("tokaify", "https://api.tokaify.com", TOKAIFY_KEY)
    static = render_install_ps1(config)
    [payload] = re.findall(r"\$managed = @\(Decode-Json '([^']*)'\)", static)
    managed = set(json.loads(base64.b64decode(payload)))
    assert BETAS not in managed and "ANTHROPIC_MODEL" in managed
    setup = LiveSetup("Acme portal", "https://portal/k", "pc", "windows", live_config(gateway, key), "t" * 43)
    [device_list] = re.findall(r"\$managed = @\(([^)]*)\)", render_device_install_ps1(setup))
    assert f"'{BETAS}'" not in device_list and "'ANTHROPIC_MODEL'" in device_list


# --- 5. Tokaify: /model before the verification prompt ------------------------------------------------------


def test_tokaify_chooses_the_model_right_after_starting_claude_and_before_the_prompt():
    """Tokaify's guide: Step 4 launch and /model, Step 5 verify. Without a model the first prompt may 404."""
    steps = after_setup_steps(Gateway.objects.get(slug="tokaify"))
    run = next(i for i, step in enumerate(steps) if step.startswith("Run claude"))
    model = next(i for i, step in enumerate(steps) if "/model" in step)
    prompt = next(i for i, step in enumerate(steps) if step.startswith("Send a short prompt"))
    assert run + 1 == model < prompt, steps


def test_tokenbay_has_a_default_model_and_no_model_step():
    steps = after_setup_steps(Gateway.objects.get(slug="tokenbay"))
    assert not any("/model" in step for step in steps)


@pytest.mark.shell
def test_tokaifys_installer_also_says_to_choose_a_model_before_the_prompt(tmp_path, key_server):
    home = tmp_path / "home"
    home.mkdir()
    _, _, tokaify = config_for("tokaify", "https://api.tokaify.com", TOKAIFY_KEY)
    _, _, tokenbay = config_for("tokenbay", "https://api.tokenbay.com", TOKENBAY_KEY)
    for script in (render_install_sh(tokaify), device_installer("tokaify", "https://api.tokaify.com", key_server)):
        said = sh(script, home).stdout
        assert 0 <= said.find("choose a model with /model") < said.find("send a short prompt"), said
    assert "/model" not in sh(render_install_sh(tokenbay), home).stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_an_empty_claude_config_dir_means_the_settings_json_in_the_home_folder(shell, tmp_path):
    """install.sh writes to ${CLAUDE_CONFIG_DIR:-$HOME/.claude}, and Claude Code reads ~/.claude when it is empty."""
    home = tmp_path / "home"
    write_settings(home, {"env": {"ANTHROPIC_BASE_URL": "https://api.tokenbay.com"}})
    _, _, config = config_for("tokaify", "https://api.tokaify.com", TOKAIFY_KEY)
    render, command = SHELLS[shell]
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CLAUDE_CONFIG_DIR": ""}
    ran = subprocess.run(command, input=render(config), capture_output=True, text=True, env=env, timeout=30)
    assert "settings.json sets ANTHROPIC_BASE_URL or apiKeyHelper" in ran.stderr, (ran.stdout, ran.stderr)
