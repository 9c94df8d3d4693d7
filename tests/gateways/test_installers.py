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
from gateways.config.installers import REPLACED_ENV, render_install_sh

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
    assert document["env"] == {**dict.fromkeys(REPLACED_ENV, ""), **ENV}  # "": a stale export cannot win
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
    blanks = {name: "" for name in REPLACED_ENV if name not in ENV}
    expected["env"] = {
        "DISABLE_TELEMETRY": "1",
        "ANTHROPIC_BASE_URL": "https://api.tokenbay.com",
        "ANTHROPIC_MODEL": "",
        **ENV,
        **blanks,
    }
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
@pytest.mark.parametrize(
    "broken",
    ['{"env": {', "[1, 2]", '{"env": "not an object"}', '{"env": {}, "n": 1e400}', '{"env": {}, "n": NaN}'],
    ids=["truncated", "array", "env-not-an-object", "number-too-large", "nan"],
)
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
    assert json.loads(path.read_text())["env"] == {**dict.fromkeys(REPLACED_ENV, ""), **new_env}
    assert "removed ANTHROPIC_AUTH_TOKEN" in result.stdout
    assert "ANTHROPIC_AUTH_TOKEN is exported in this shell; settings.json wins over it" in result.stderr


def test_install_ps1_carries_the_env_as_base64_and_merges(tmp_path):
    from gateways.config.installers import render_install_ps1

    text = render_install_ps1(ClaudeConfig("TokenBay", "tokenbay", "https://x", "bearer", "l", "sk-…", ENV))
    assert SECRET not in text  # only inside the base64 payload
    assert "ConvertFrom-Json" in text and "Copy-Item -LiteralPath $path -Destination $backup" in text
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


# --- ~/.claude.json: Claude Code's first-run answers ----------------------------------------------

TOKAIFY_SECRET = "sk-tokaify-install-0123456789abcdefXYZ"
SUFFIX = TOKAIFY_SECRET[-20:]
TOKAIFY_ENV = {
    "ANTHROPIC_BASE_URL": "https://api.tokaify.com",
    "ANTHROPIC_API_KEY": TOKAIFY_SECRET,
    "ANTHROPIC_AUTH_TOKEN": "",
}
# A ~/.claude.json as Claude Code 2.1.330 wrote it (two-space JSON, no final newline), trimmed.
CLAUDE_STATE = {
    "numStartups": 4,
    "customApiKeyResponses": {"approved": ["someone-elses-tail-1"], "rejected": []},
    "tipsHistory": {"new-user-warmup": 1},
    "firstStartTime": "2026-11-23T06:41:44.366Z",
    "userID": "97c6b68173a0fa42489dc42049ecdb4bb8b64f782873e72f3d0277547483a129",
    "projects": {"/home/bob/web": {"allowedTools": [], "hasTrustDialogAccepted": True, "lastCost": 0.0123}},
    "theme": "dark",
}


def tokaify_script() -> str:
    return render_install_sh(
        ClaudeConfig("Tokaify", "tokaify", "https://api.tokaify.com", "x-api-key", "laptop", "sk-…XYZ", TOKAIFY_ENV)
    )


def state_file(tmp_path: Path) -> Path:
    return tmp_path / "home" / ".claude.json"


def state_style(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


@pytest.mark.parametrize("interpreter", ["python3", "node"])
def test_claude_json_is_created_with_onboarding_done_and_the_key_approved(tmp_path, interpreter):
    result = run_installer(tmp_path, interpreter=interpreter, text=tokaify_script())
    assert result.returncode == 0, result.stderr
    path = state_file(tmp_path)
    assert json.loads(path.read_text()) == {
        "hasCompletedOnboarding": True,
        "customApiKeyResponses": {"approved": [SUFFIX], "rejected": []},
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.read_text().endswith("\n")  # Claude Code's own format
    assert 'as answering Yes to "Detected a custom API key" would do' in result.stdout
    assert TOKAIFY_SECRET not in result.stdout + result.stderr
    assert SUFFIX not in result.stdout + result.stderr
    # The unused credential is blanked in settings.json, so a stale exported token is never sent.
    assert json.loads(settings_file(tmp_path).read_text())["env"]["ANTHROPIC_AUTH_TOKEN"] == ""


@pytest.mark.parametrize("interpreter", ["python3", "node"])
def test_a_bearer_set_up_only_marks_onboarding_done(tmp_path, interpreter):
    result = run_installer(tmp_path, interpreter=interpreter)
    assert result.returncode == 0, result.stderr
    assert json.loads(state_file(tmp_path).read_text()) == {"hasCompletedOnboarding": True}
    assert "Detected a custom API key" not in result.stdout


@pytest.mark.parametrize("interpreter", ["python3", "node"])
def test_claude_json_keeps_every_other_key_byte_for_byte_and_is_backed_up(tmp_path, interpreter):
    path = state_file(tmp_path)
    path.parent.mkdir(parents=True)
    original = state_style(CLAUDE_STATE)
    path.write_text(original)
    result = run_installer(tmp_path, interpreter=interpreter, text=tokaify_script())
    assert result.returncode == 0, result.stderr

    expected = json.loads(original)
    expected["customApiKeyResponses"]["approved"].append(SUFFIX)
    expected["hasCompletedOnboarding"] = True
    assert path.read_text() == state_style(expected)
    [backup] = path.parent.glob(".claude.json.bak.*")
    assert backup.read_text() == original
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert f"Your previous {path} is saved as {backup}" in result.stdout


@pytest.mark.parametrize("interpreter", ["python3", "node"])
def test_an_already_approved_key_is_not_added_twice(tmp_path, interpreter):
    path = state_file(tmp_path)
    path.parent.mkdir(parents=True)
    document = {"hasCompletedOnboarding": True, "customApiKeyResponses": {"approved": [SUFFIX], "rejected": []}}
    path.write_text(state_style(document))
    assert run_installer(tmp_path, interpreter=interpreter, text=tokaify_script()).returncode == 0
    assert path.read_text() == state_style(document)


@pytest.mark.parametrize("interpreter", ["python3", "node"])
def test_a_key_the_developer_once_rejected_moves_to_approved(tmp_path, interpreter):
    path = state_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(
        state_style({"customApiKeyResponses": {"approved": ["other-approved-tail1"], "rejected": [SUFFIX, "x"]}})
    )
    assert run_installer(tmp_path, interpreter=interpreter, text=tokaify_script()).returncode == 0
    assert json.loads(path.read_text()) == {
        "customApiKeyResponses": {"approved": ["other-approved-tail1", SUFFIX], "rejected": ["x"]},
        "hasCompletedOnboarding": True,
    }


@pytest.mark.parametrize("interpreter", ["python3", "node"])
@pytest.mark.parametrize(
    "broken",
    ['{"numStartups": 4,', "[]", '{"customApiKeyResponses": []}', '{"customApiKeyResponses": {"approved": "x"}}'],
    ids=["truncated", "array", "answers-not-an-object", "approved-not-a-list"],
)
def test_an_invalid_claude_json_is_refused_and_nothing_is_written(tmp_path, interpreter, broken):
    path = state_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(broken)
    settings = settings_file(tmp_path)
    settings.parent.mkdir(parents=True)
    settings.write_text(claude_style(EXISTING))
    result = run_installer(tmp_path, interpreter=interpreter, text=tokaify_script())
    assert result.returncode == 3
    assert "Nothing was changed" in result.stderr and str(path) in result.stderr
    assert path.read_text() == broken
    assert settings.read_text() == claude_style(EXISTING)  # checked before either file is written
    assert not list(path.parent.glob(".claude.json.bak.*"))
    assert not list(settings.parent.glob("settings.json.bak.*"))


def test_claude_json_follows_claude_config_dir(tmp_path):
    config_dir = tmp_path / "elsewhere"
    result = run_installer(tmp_path, text=tokaify_script(), extra_env={"CLAUDE_CONFIG_DIR": str(config_dir)})
    assert result.returncode == 0, result.stderr
    assert json.loads((config_dir / ".claude.json").read_text())["hasCompletedOnboarding"] is True
    assert (config_dir / "settings.json").exists()
    assert not state_file(tmp_path).exists()


def test_python_and_node_write_the_same_claude_json(tmp_path):
    outputs = []
    for interpreter in ("python3", "node"):
        root = tmp_path / interpreter
        state_file(root).parent.mkdir(parents=True)
        state_file(root).write_text(state_style(CLAUDE_STATE))
        assert run_installer(root, interpreter=interpreter, text=tokaify_script()).returncode == 0
        outputs.append(state_file(root).read_bytes())
    assert outputs[0] == outputs[1]


def test_a_stale_exported_bearer_token_is_blanked_not_left_to_win(tmp_path):
    result = run_installer(tmp_path, text=tokaify_script(), extra_env={"ANTHROPIC_AUTH_TOKEN": "sk-stale"})
    assert result.returncode == 0
    assert json.loads(settings_file(tmp_path).read_text())["env"]["ANTHROPIC_AUTH_TOKEN"] == ""
    assert "ANTHROPIC_AUTH_TOKEN is exported in this shell; settings.json wins over it for Claude Code" in result.stderr


def ps1(env: dict, scheme: str) -> str:
    from gateways.config.installers import render_install_ps1

    return render_install_ps1(ClaudeConfig("GW", "gw", "https://x", scheme, "l", "sk-…", env))


def test_install_ps1_merges_claude_json_with_the_same_rules():
    import base64

    text = ps1(TOKAIFY_ENV, "x-api-key")
    assert TOKAIFY_SECRET not in text and SUFFIX not in text  # only inside base64 payloads
    assert f"$approve = Decode-Text '{base64.b64encode(SUFFIX.encode()).decode()}'" in text
    assert "Join-Path $stateDir '.claude.json'" in text
    assert "hasCompletedOnboarding -NotePropertyValue $true" in text
    # Keys are case-sensitive: PowerShell's default -contains and -ne are not.
    assert "$approved -cnotcontains $approve" in text and "$_ -cne $approve" in text
    # Both files are read and checked before the first write, so a refusal changes nothing.
    first_write = text.index("Save-Json $settings")
    assert text.index("$doc = Read-JsonObject $settings") < first_write
    assert text.index("$stateDoc = Read-JsonObject $state") < first_write
    assert text.index('Refuse "$state has a customApiKeyResponses') < first_write
    assert 'Refuse "$path is not valid JSON."' in text and "exit 3" in text
    assert "Copy-Item -LiteralPath $path -Destination $backup" in text  # a backup of each file first


def test_install_ps1_for_a_bearer_gateway_approves_no_key():
    text = ps1(ENV, "bearer")
    assert "$approve = Decode-Text ''" in text
    assert "Detected a custom API key" not in text
