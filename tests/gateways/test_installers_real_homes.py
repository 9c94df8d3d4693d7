"""The sh installers against the home folders developers really have: links into a dotfiles repository,
CRLF files, files that are not UTF-8, folders where a file should be, read-only files, a backup that cannot
be made, and a live device's second install that the merge refuses.

Each runs the rendered installer in sh with a PATH that holds only one JSON-capable interpreter, python3
or node (the merge the installer picks), and HOME in a temporary folder. What is checked is what the
README promises: a refusal prints one sentence, exits 3 and changes nothing; backups are the old files.
No other user is needed: a read-only file is refused by its mode, which root does not bypass here either.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateways.config import live
from gateways.config.builder import ClaudeConfig
from gateways.config.installers import MERGE_JS, MERGE_PY, render_install_sh
from gateways.models import Gateway, GatewayKey

pytestmark = pytest.mark.shell

INTERPRETERS = ["python3", "node"]
TOOLS = ["sh", "mkdir", "chmod", "date", "grep", "cut", "tr", "cat", "dirname", "sed", "mv", "rm"]
ENV = {
    "ANTHROPIC_BASE_URL": "https://api.tokenbay.com",
    "ANTHROPIC_AUTH_TOKEN": "sk-install-secret-0123456789abcdef",
    "ANTHROPIC_API_KEY": "",
}
USER_SETTINGS = {
    "$schema": "https://json.schemastore.org/claude-code-settings.json",
    "model": "opus",
    "permissions": {"allow": ["Bash(npm run test:*)"]},
    "env": {"DISABLE_TELEMETRY": "1"},
}
REFUSED = "Nothing was changed; fix or move the file, then run this again."


def claude_style(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def install_sh() -> str:
    config = ClaudeConfig("TokenBay", "tokenbay", "https://api.tokenbay.com", "bearer", "Bob laptop", "sk-...cdef", ENV)
    return render_install_sh(config)


def device_install_sh(name: str, token: str, slug: str, url: str) -> str:
    gateway = Gateway.objects.get(slug=slug)
    key = GatewayKey(gateway=gateway, label="laptop", masked="sk-...cdef")
    setup = live.LiveSetup("Acme portal", url, name, "linux", live.live_config(gateway, key), token)
    return live.render_device_install_sh(setup)


def tool_dir(tmp_path: Path, interpreter: str) -> Path:
    """A PATH folder with the basics and one interpreter (python3 may be a shim: link the real one)."""
    folder = tmp_path / f"bin-{interpreter}"
    if not folder.exists():
        folder.mkdir()
        for tool in [*TOOLS, interpreter]:
            found = os.path.realpath(sys.executable) if tool == "python3" else shutil.which(tool)
            assert found, f"{tool} is needed to run the installers"
            (folder / tool).symlink_to(found)
    return folder


def make_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    return home


def run_script(script: str, home: Path, interpreter: str) -> subprocess.CompletedProcess:
    path = home.parent / "install.sh"
    path.write_text(script)
    env = {"HOME": str(home), "PATH": str(tool_dir(home.parent, interpreter)), "LC_ALL": "C.UTF-8"}
    return subprocess.run(["sh", str(path)], capture_output=True, text=True, env=env, timeout=60)


def run_merge(home: Path, interpreter: str, stamp: str) -> subprocess.CompletedProcess:
    """The installer's merge as install.sh runs it, with backup names the test knows in advance."""
    script = install_sh()
    env = dict(re.findall(r"^(PORTAL_\w+)='([^']*)'$", script, flags=re.M))
    env.update(HOME=str(home), PATH=str(tool_dir(home.parent, interpreter)), LC_ALL="C.UTF-8")
    settings, state = home / ".claude" / "settings.json", home / ".claude.json"
    args = [str(settings), f"{settings}.bak.{stamp}", str(state), f"{state}.bak.{stamp}"]
    code = ["python3", "-c", MERGE_PY] if interpreter == "python3" else ["node", "-e", MERGE_JS]
    return subprocess.run([*code, *args], capture_output=True, text=True, env=env, timeout=60)


def snapshot(*folders: Path) -> dict[str, bytes | str]:
    """Every entry of the folders (not recursive) with its bytes, or its link target, or 'folder'."""
    found: dict[str, bytes | str] = {}
    for folder in folders:
        for entry in folder.iterdir():
            if entry.is_symlink():
                found[str(entry)] = "-> " + os.readlink(entry)
            elif entry.is_dir():
                found[str(entry)] = "folder"
            else:
                found[str(entry)] = entry.read_bytes()
    return found


def assert_refused(result: subprocess.CompletedProcess, then: str = REFUSED) -> None:
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "    at " not in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert then in result.stderr


# N1 --------------------------------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_refused_device_install_keeps_the_earlier_devices_token_and_helper(tmp_path, interpreter):
    home = make_home(tmp_path)
    (home / ".claude" / "settings.json").write_text(claude_style(USER_SETTINGS))
    first = device_install_sh("laptop (web)", "t" * 43, "tokenbay", "http://127.0.0.1:9/web")
    assert run_script(first, home, interpreter).returncode == 0
    (home / ".claude.json").write_text('{"numStartups": 3,}')  # edited by hand: a trailing comma
    before = snapshot(home, home / ".claude")

    second = device_install_sh("laptop (data)", "u" * 43, "tokaify", "http://127.0.0.1:9/data")
    result = run_script(second, home, interpreter)

    # Its install link worked once: not "run this again", but a new install command.
    assert_refused(result, "Nothing was changed; fix or move the file, then make a new install command under Install")
    # settings.json still sends to TokenBay: the helper must not now fetch team data's Tokaify key for it.
    assert snapshot(home, home / ".claude") == before


# N2 --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_lone_surrogate_escape_in_claude_json_is_kept_as_node_writes_it(tmp_path, interpreter):
    home = make_home(tmp_path)
    # JSON.stringify writes a string cut inside an emoji this way: valid JSON, which Claude Code reads.
    (home / ".claude.json").write_text('{\n  "numStartups": 3,\n  "lastPrompt": "cut \\ud83d"\n}')

    result = run_script(install_sh(), home, interpreter)

    assert result.returncode == 0, result.stderr
    text = (home / ".claude.json").read_text()
    assert '"lastPrompt": "cut \\ud83d"' in text
    assert json.loads(text) == {"numStartups": 3, "lastPrompt": "cut \ud83d", "hasCompletedOnboarding": True}


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_when_a_backup_cannot_be_made_neither_file_changes(tmp_path, interpreter):
    home = make_home(tmp_path)
    (home / ".claude" / "settings.json").write_text(claude_style(USER_SETTINGS))
    (home / ".claude.json").write_text('{"numStartups": 3}')
    (home / ".claude.json.bak.20990101000000.1").write_text("a file already there")
    before = snapshot(home, home / ".claude")

    result = run_merge(home, interpreter, "20990101000000.1")

    assert_refused(result)
    assert ".claude.json.bak.20990101000000.1 cannot be written" in result.stderr
    assert snapshot(home, home / ".claude") == before  # no settings.json backup or temporary file left either


# N3 --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("interpreter", INTERPRETERS)
@pytest.mark.parametrize("which", ["settings.json", ".claude.json"])
def test_a_link_into_a_dotfiles_repository_stays_a_link(tmp_path, interpreter, which):
    home = make_home(tmp_path)
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / which
    old = claude_style(USER_SETTINGS) if which == "settings.json" else '{\n  "numStartups": 3\n}'
    target.write_text(old)
    link = home / ".claude" / which if which == "settings.json" else home / which
    link.symlink_to(Path("..") / ".." / "dotfiles" / which if which == "settings.json" else target)

    result = run_script(install_sh(), home, interpreter)

    assert result.returncode == 0, result.stderr
    assert link.is_symlink(), f"{link.name} was replaced by a regular file"
    merged = json.loads(target.read_text())
    assert merged.get("hasCompletedOnboarding") or merged["env"]["ANTHROPIC_BASE_URL"] == ENV["ANTHROPIC_BASE_URL"]
    [backup] = link.parent.glob(which + ".bak.*")
    assert backup.read_text() == old and not backup.is_symlink()
    assert [p.name for p in dotfiles.iterdir()] == [which]  # no temporary file left in the repository


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_link_to_a_file_not_yet_in_the_repository_stays_a_link(tmp_path, interpreter):
    home = make_home(tmp_path)
    (tmp_path / "dotfiles").mkdir()
    link = home / ".claude" / "settings.json"
    link.symlink_to(tmp_path / "dotfiles" / "settings.json")

    result = run_script(install_sh(), home, interpreter)

    assert result.returncode == 0, result.stderr
    assert link.is_symlink()
    assert json.loads(link.read_text())["env"]["ANTHROPIC_BASE_URL"] == ENV["ANTHROPIC_BASE_URL"]


# N4 --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_the_backup_of_a_crlf_file_is_the_old_file_byte_for_byte(tmp_path, interpreter):
    home = make_home(tmp_path)
    settings = home / ".claude" / "settings.json"
    settings.write_bytes(claude_style(USER_SETTINGS).replace("\n", "\r\n").encode())
    (home / ".claude.json").write_bytes(b'{\r\n  "numStartups": 3\r\n}')
    before = {settings.name: settings.read_bytes(), ".claude.json": (home / ".claude.json").read_bytes()}

    result = run_script(install_sh(), home, interpreter)

    assert result.returncode == 0, result.stderr
    [settings_backup] = (home / ".claude").glob("settings.json.bak.*")
    [state_backup] = home.glob(".claude.json.bak.*")
    assert settings_backup.read_bytes() == before["settings.json"]
    assert state_backup.read_bytes() == before[".claude.json"]


# N5 --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("interpreter", INTERPRETERS)
@pytest.mark.parametrize(
    ("case", "sentence"),
    [
        ("settings-is-a-folder", "settings.json is a folder, not a file."),
        ("claude-json-is-a-folder", ".claude.json is a folder, not a file."),
        ("settings-not-utf8", "settings.json is not UTF-8 text."),
        ("claude-json-not-utf8", ".claude.json is not UTF-8 text."),
    ],
)
def test_a_file_the_merge_cannot_read_is_refused_with_one_sentence(tmp_path, interpreter, case, sentence):
    home = make_home(tmp_path)
    latin1 = b'{"statusLine": "caf\xe9"}\n'  # Latin-1: Python would stop, node would write U+FFFD back
    if case == "settings-is-a-folder":
        (home / ".claude" / "settings.json").mkdir()
    elif case == "claude-json-is-a-folder":
        (home / ".claude.json").mkdir()
    elif case == "settings-not-utf8":
        (home / ".claude" / "settings.json").write_bytes(latin1)
    else:
        (home / ".claude.json").write_bytes(latin1)
    before = snapshot(home, home / ".claude")

    result = run_script(install_sh(), home, interpreter)

    assert_refused(result)
    assert sentence in result.stderr
    assert snapshot(home, home / ".claude") == before


# N6 --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_settings_json_its_owner_made_read_only_is_refused_not_replaced(tmp_path, interpreter):
    home = make_home(tmp_path)
    settings = home / ".claude" / "settings.json"
    settings.write_text(claude_style(USER_SETTINGS))
    settings.chmod(0o444)
    before = snapshot(home, home / ".claude")

    result = run_script(install_sh(), home, interpreter)

    assert_refused(result)
    assert "settings.json is read-only" in result.stderr
    assert snapshot(home, home / ".claude") == before
    assert stat.S_IMODE(settings.stat().st_mode) == 0o444


@pytest.mark.django_db
@pytest.mark.parametrize("installer", ["static", "live"])
def test_the_claude_folder_keeps_its_mode_and_is_private_only_when_the_installer_made_it(tmp_path, installer):
    script = install_sh() if installer == "static" else device_install_sh("laptop", "t" * 43, "tokenbay", "x")
    home = make_home(tmp_path)
    (home / ".claude").chmod(0o750)
    assert run_script(script, home, "python3").returncode == 0
    assert stat.S_IMODE((home / ".claude").stat().st_mode) == 0o750

    shutil.rmtree(home / ".claude")
    assert run_script(script, home, "python3").returncode == 0
    assert stat.S_IMODE((home / ".claude").stat().st_mode) == 0o700
