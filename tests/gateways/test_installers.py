"""install.sh merges into ~/.claude/settings.json and never destroys what the user had."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateways.config.builder import ClaudeConfig
from gateways.config.installers import render_install_sh

pytestmark = pytest.mark.shell

SECRET = "sk-install-secret-42"
ENV = {
    "ANTHROPIC_BASE_URL": "https://api.tokenbay.com",
    "ANTHROPIC_AUTH_TOKEN": SECRET,
    "ANTHROPIC_API_KEY": "",
    "API_TIMEOUT_MS": "600000",
}
EXISTING = {
    "$schema": "https://json.schemastore.org/claude-code-settings.json",
    "permissions": {"allow": ["Bash(npm run test:*)"], "deny": ["Read(./.env)"]},
    "env": {"DISABLE_TELEMETRY": "1", "ANTHROPIC_BASE_URL": "https://old.example.com", "ANTHROPIC_MODEL": "old"},
    "hooks": {"PostToolUse": [{"matcher": "Edit", "hooks": [{"type": "command", "command": "ruff format"}]}]},
    "enabledPlugins": {"formatter@market": True},
    "unicode": "café ☕",
}


def claude_style(document: dict) -> str:
    """How Claude Code writes its settings: two-space JSON."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def script(env: dict | None = None) -> str:
    return render_install_sh(
        ClaudeConfig("TokenBay", "tokenbay", "https://api.tokenbay.com", "bearer", "Bob laptop", "sk-…42", env or ENV)
    )


def tool_dir(tmp_path: Path, *, interpreter: str) -> str:
    """A PATH with the usual tools and only one JSON-capable interpreter (or none)."""
    bin_dir = tmp_path / f"bin-{interpreter}"
    if bin_dir.exists():
        return str(bin_dir)
    bin_dir.mkdir()
    for tool in ["sh", "mkdir", "chmod", "date", "grep", "cut", "tr", "cat", "dirname", interpreter]:
        # python3 on PATH may be a version manager's shim; link the real interpreter instead.
        found = os.path.realpath(sys.executable) if tool == "python3" else shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def run_installer(
    tmp_path: Path,
    *,
    interpreter: str = "python3",
    extra_env: dict | None = None,
    text: str | None = None,
    piped: bool = False,
):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "HOME": str(home),
        "PATH": tool_dir(tmp_path, interpreter=interpreter),
        "LC_ALL": "C.UTF-8",
        **(extra_env or {}),
    }
    body = text or script()
    if piped:  # curl ... | sh
        return subprocess.run(["sh"], input=body, capture_output=True, text=True, env=env, timeout=60)
    path = tmp_path / "install.sh"
    path.write_text(body)
    return subprocess.run(["sh", str(path)], capture_output=True, text=True, env=env, timeout=60)


def settings_file(tmp_path: Path) -> Path:
    return tmp_path / "home" / ".claude" / "settings.json"


@pytest.mark.parametrize("interpreter", ["python3", "node"])
def test_creates_the_file_when_missing(tmp_path, interpreter):
    result = run_installer(tmp_path, interpreter=interpreter)
    assert result.returncode == 0, result.stderr
    path = settings_file(tmp_path)
    document = json.loads(path.read_text())
    assert document["env"] == ENV
    assert document["$schema"].startswith("https://json.schemastore.org/")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize("interpreter", ["python3", "node"])
def test_merges_env_and_keeps_everything_else_byte_for_byte(tmp_path, interpreter):
    path = settings_file(tmp_path)
    path.parent.mkdir(parents=True)
    original = claude_style(EXISTING)
    path.write_text(original)

    result = run_installer(tmp_path, interpreter=interpreter)
    assert result.returncode == 0, result.stderr

    expected = json.loads(original)
    expected["env"] = {"DISABLE_TELEMETRY": "1", "ANTHROPIC_BASE_URL": "https://api.tokenbay.com", **ENV}
    assert path.read_text() == claude_style(expected)
    assert "removed ANTHROPIC_MODEL" in result.stdout
    backups = list(path.parent.glob("settings.json.bak.*"))
    assert len(backups) == 1
    assert backups[0].read_text() == original
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600  # it may hold an old key


def test_python_and_node_write_the_same_bytes(tmp_path):
    outputs = []
    for interpreter in ("python3", "node"):
        root = tmp_path / interpreter
        root.mkdir()
        settings_file(root).parent.mkdir(parents=True)
        settings_file(root).write_text(claude_style(EXISTING))
        assert run_installer(root, interpreter=interpreter).returncode == 0
        outputs.append(settings_file(root).read_bytes())
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("interpreter", ["python3", "node"])
@pytest.mark.parametrize("broken", ['{"env": {', "[1, 2]", '{"env": "not an object"}'])
def test_refuses_invalid_json_and_leaves_it_untouched(tmp_path, interpreter, broken):
    path = settings_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(broken)
    result = run_installer(tmp_path, interpreter=interpreter)
    assert result.returncode == 3
    assert "Nothing was changed" in result.stderr
    assert path.read_text() == broken
    assert not list(path.parent.glob("settings.json.bak.*"))


def test_without_python_or_node_it_explains_and_changes_nothing(tmp_path):
    result = run_installer(tmp_path, interpreter="true")
    assert result.returncode == 4
    assert "needs python3 or node" in result.stderr
    assert not settings_file(tmp_path).exists()


def test_works_piped_into_sh(tmp_path):
    result = run_installer(tmp_path, piped=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(settings_file(tmp_path).read_text())["env"]["ANTHROPIC_AUTH_TOKEN"] == SECRET


def test_warns_about_conflicting_variables_without_printing_them(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".zshrc").write_text('export PATH=/x\nexport ANTHROPIC_API_KEY="sk-old-official-key"\n')
    result = run_installer(tmp_path, extra_env={"ANTHROPIC_API_KEY": "sk-old-official-key"})
    assert result.returncode == 0
    assert "ANTHROPIC_API_KEY is exported in this shell" in result.stderr
    assert ".zshrc sets Claude Code variables on line(s) 2" in result.stderr
    assert "sk-old-official-key" not in result.stdout + result.stderr


def test_an_x_api_key_setup_removes_a_leftover_bearer_token(tmp_path):
    path = settings_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(claude_style({"env": {"ANTHROPIC_AUTH_TOKEN": "sk-old", "ANTHROPIC_API_KEY": ""}}))
    new_env = {"ANTHROPIC_BASE_URL": "https://api.tokaify.com", "ANTHROPIC_API_KEY": "sk-tokaify"}
    result = run_installer(tmp_path, text=script(new_env), extra_env={"ANTHROPIC_AUTH_TOKEN": "sk-exported"})
    assert result.returncode == 0
    assert json.loads(path.read_text())["env"] == new_env
    assert "takes precedence over the key the portal just set" in result.stderr


def test_install_ps1_carries_the_env_as_base64_and_merges(tmp_path):
    from gateways.config.installers import render_install_ps1

    text = render_install_ps1(ClaudeConfig("TokenBay", "tokenbay", "https://x", "bearer", "l", "sk-…", ENV))
    assert SECRET not in text  # only inside the base64 payload
    assert "ConvertFrom-Json" in text and "Copy-Item $settings $backup" in text
    assert "exit 3" in text


def test_running_twice_keeps_two_backups_and_the_same_result(tmp_path):
    path = settings_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(claude_style(EXISTING))
    assert run_installer(tmp_path).returncode == 0
    first = path.read_text()
    assert run_installer(tmp_path).returncode == 0
    assert path.read_text() == first  # idempotent
    assert len(list(path.parent.glob("settings.json.bak.*"))) == 2
