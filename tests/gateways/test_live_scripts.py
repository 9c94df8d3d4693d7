"""The live-key installer and helper, run for real: the install command (`curl … | sh`) against the running portal.

Each runs in dash (Debian's /bin/sh) and in bash as sh (macOS's /bin/sh), with a PATH that holds
only the tools wanted: curl, wget only (node edits the JSON), or python3 only. The fetch tools are
wrapped to log their command lines, so the device token can be checked to never appear on one.
The Windows installer and helper cannot run here: table tests check what they say.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from gateways.config import live
from gateways.config.builder import ClaudeConfig
from gateways.devices import SH_INSTALL_COMMAND, create_device, install_command, remove_device
from gateways.models import Device, Gateway
from gateways.services import assign_key, revoke_key, store_key
from portal.models import Membership, Team

pytestmark = [pytest.mark.shell, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SECRET = "sk-live-script-0123456789abcdef"
CLAUDE_AGENT = "claude-code_2-1-330_harness"  # what Claude Code 2.1.330 exports to the helper (measured)
END_OF_CALL = "\n<end of call>\n"
BASICS = ["cat", "sed", "tr", "date", "mkdir", "chmod", "mv", "rm"]
FETCHERS = {"curl": ["curl", "python3"], "wget": ["wget", "node"], "python3": ["python3"]}
SHELLS = {"dash": "/usr/bin/dash", "bash": "/bin/bash"}
DOWNLOAD = {  # how a developer with only that tool pipes the installer into sh
    "curl": "/usr/bin/" + SH_INSTALL_COMMAND,  # the documented command
    "wget": "/usr/bin/wget -qO- '{url}' | sh",
    "python3": "'{python}' -c 'import sys,urllib.request as u;sys.stdout.write(u.urlopen(sys.argv[1]).read().decode())' "
    "'{url}' | sh",
}


def real(tool: str) -> str:
    # python3 on PATH may be a version manager's shim; use the real interpreter.
    return os.path.realpath(sys.executable) if tool == "python3" else shutil.which(tool)


def tool_dir(tmp_path: Path, shell: str, fetcher: str) -> tuple[Path, Path]:
    """A PATH folder with the basics, `sh` as the shell under test, and only the fetcher's tools (logged)."""
    folder = tmp_path / f"bin-{shell}-{fetcher}"
    folder.mkdir()
    log = tmp_path / "argv.log"
    (folder / "sh").symlink_to(SHELLS[shell])
    for tool in BASICS:
        (folder / tool).symlink_to(shutil.which(tool))
    for tool in FETCHERS[fetcher]:
        wrapper = folder / tool
        wrapper.write_text(f'#!/bin/sh\nprintf "{tool} %s{END_OF_CALL}" "$*" >> "{log}"\nexec "{real(tool)}" "$@"\n')
        wrapper.chmod(0o755)
    return folder, log


@pytest.fixture
def portal(live_server, django_user_model):
    """A key assigned to bob; `device(platform)` makes a device and returns it with its install URL."""
    alice = django_user_model.objects.create_user("alice", password="x")
    bob = django_user_model.objects.create_user("bob", password="x")
    team = Team.objects.create(name="Web", slug="web")
    Membership.objects.create(team=team, user=alice, role="admin")
    Membership.objects.create(team=team, user=bob, role="member")
    key = store_key(team=team, gateway=Gateway.objects.get(slug="tokenbay"), label="laptop", secret=SECRET, actor=alice)
    assignment = assign_key(key=key, username="bob", actor=alice)

    def device(platform: str = "linux") -> tuple[Device, str]:
        made, code = create_device(assignment=assignment, name="laptop", platform=platform, actor=bob)
        return made, live_server.url + reverse("api-device-install", args=[code])

    device.alice = alice
    return device


def run(command: str, *, home: Path, path: Path, extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {"HOME": str(home), "PATH": str(path), "LC_ALL": "C.UTF-8", **(extra or {})}
    return subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=60)


def files_holding(home: Path, text: str) -> list[str]:
    return [str(p) for p in home.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


@pytest.mark.parametrize("fetcher", list(FETCHERS))
@pytest.mark.parametrize("shell", list(SHELLS))
def test_the_installer_and_helper_work_with_the_tools_the_machine_has(portal, tmp_path, shell, fetcher):
    device, url = portal()
    home = tmp_path / "home"
    home.mkdir()
    path, log = tool_dir(tmp_path, shell, fetcher)

    installed = run(DOWNLOAD[fetcher].format(url=url, python=real("python3")), home=home, path=path)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "Checked: the helper fetched the key." in installed.stdout

    claude = home / ".claude"
    token_file, helper = claude / live.TOKEN_FILE, claude / live.HELPER_SH
    assert stat.S_IMODE(claude.stat().st_mode) == 0o700
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(helper.stat().st_mode) == 0o700
    settings = json.loads((claude / "settings.json").read_text())
    assert settings["apiKeyHelper"] == live.SH_HELPER_COMMAND
    assert settings["env"]["ANTHROPIC_API_KEY"] == settings["env"]["ANTHROPIC_AUTH_TOKEN"] == ""
    assert settings["env"]["ANTHROPIC_BASE_URL"] == "https://api.tokenbay.com"
    assert json.loads((home / ".claude.json").read_text())["hasCompletedOnboarding"] is True
    assert not files_holding(home, SECRET), "the secret was written to disk"

    # As Claude Code runs it, two minutes later (the installer's check fetch was the first): the
    # apiKeyHelper command through /bin/sh, with the AI_AGENT Claude Code exports.
    Device.objects.filter(pk=device.pk).update(last_seen_at=timezone.now() - timedelta(minutes=2))
    fetched = run(settings["apiKeyHelper"], home=home, path=path, extra={"AI_AGENT": CLAUDE_AGENT})
    assert (fetched.returncode, fetched.stdout, fetched.stderr) == (0, SECRET + "\n", "")
    device.refresh_from_db()
    assert device.last_seen_at is not None and device.has_current_secret
    assert device.claude_version == "2.1.330"

    token = token_file.read_text().split("Bearer ")[1].strip()
    calls = log.read_text()
    fetches = [call for call in calls.split(END_OF_CALL) if "/api/v1/device/key" in call]
    assert fetches and all(call.startswith(f"{fetcher} ") for call in fetches), calls  # the tool under test fetched
    assert token not in calls and SECRET not in calls, "the token or the key was on a command line"

    remove_device(device=device, actor=portal.alice)
    refused = run(settings["apiKeyHelper"], home=home, path=path)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.startswith("This device was removed from the portal by alice on ")
    assert refused.stderr.endswith("; run the install command again from My set-up.\n")
    assert refused.stderr.count("\n") == 1


def installed_helper(tmp_path: Path, url: str, token: str = "pkf_a_b") -> tuple[Path, Path]:
    """(home, helper): the helper for the portal at `url` and its device token, as the installer leaves them."""
    setup = live.LiveSetup("Acme portal", url, "pc", "linux", ClaudeConfig("G", "g", "", "", "k", "m", {}), token)
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    helper = home / ".claude" / live.HELPER_SH
    helper.write_text(live.render_helper_sh(setup))
    (home / ".claude" / live.TOKEN_FILE).write_text(f"header = Authorization: Bearer {token}\n")
    return home, helper


@pytest.mark.parametrize("fetcher", list(FETCHERS))
def test_the_helper_says_which_address_it_could_not_reach(tmp_path, fetcher):
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api/v1/device/key"
    home, helper = installed_helper(tmp_path, url)
    path, _ = tool_dir(tmp_path, "dash", fetcher)
    result = run(f"sh '{helper}'", home=home, path=path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"cannot reach Acme portal at {url}\n"


def answering(body: bytes = b"", status_of=lambda path: 502, headers=(), seen: list | None = None):
    """A started HTTP server on 127.0.0.1 answering every GET with `body` (HTML), the status `status_of(path)`
    and `headers`; each request's Authorization header is added to `seen`. A proxy's page, a sign-in page."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if seen is not None:
                seen.append(self.headers.get("Authorization"))
            self.send_response(status_of(self.path))
            for name, value in (("Content-Type", "text/html"), ("Content-Length", str(len(body))), *headers):
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize(
    ("status", "said"),
    [(502, "is not answering properly (HTTP 502); try again in a minute."), (403, "refused the key (HTTP 403).")],
)
@pytest.mark.parametrize("fetcher", list(FETCHERS))
def test_a_proxys_page_is_an_outage_for_a_5xx_and_a_refusal_otherwise(tmp_path, fetcher, status, said):
    server = answering(b"<html><body>Bad Gateway</body></html>", lambda path: int(path.rsplit("/", 1)[1]))
    url = f"http://127.0.0.1:{server.server_address[1]}/api/v1/device/key/{status}"
    home, helper = installed_helper(tmp_path, url)
    path, _ = tool_dir(tmp_path, "dash", fetcher)
    try:
        result = run(f"sh '{helper}'", home=home, path=path)
    finally:
        server.shutdown()
    if fetcher == "wget":  # wget tells an error answer, not its status: the sentence blames neither side
        said = "answered with an error page instead of the key; if it goes on, tell its admins."
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"Acme portal at {url} {said}\n")


DEVICE_TOKEN = "pkf_a_secretdevicetoken"


@pytest.mark.parametrize("fetcher", ["curl", "python3", "wget"])
def test_a_redirect_neither_carries_the_device_token_elsewhere_nor_yields_a_key(tmp_path, fetcher):
    seen: list[str | None] = []
    other = answering(b"<html>Sign in</html>", lambda path: 200, seen=seen)  # a sign-in page, an attacker's server
    target = f"http://localhost:{other.server_address[1]}/login"
    front = answering(status_of=lambda path: 302, headers=[("Location", target)])  # at the portal's address
    url = f"http://127.0.0.1:{front.server_address[1]}/api/v1/device/key"
    home, helper = installed_helper(tmp_path, url, token=DEVICE_TOKEN)
    path, _ = tool_dir(tmp_path, "dash", fetcher)
    try:
        result = run(f"sh '{helper}'", home=home, path=path)
    finally:
        front.shutdown()
        other.shutdown()
    assert all(DEVICE_TOKEN not in (header or "") for header in seen), f"{fetcher}: the device token went to {target}"
    assert result.returncode == 1 and result.stdout == "", f"{fetcher}: printed {result.stdout!r} as the key"


def test_a_helper_without_its_token_file_says_what_to_do(tmp_path):
    setup = live.LiveSetup(
        "the portal", "http://127.0.0.1:9/k", "pc", "linux", ClaudeConfig("G", "g", "", "", "k", "m", {}), "t"
    )
    helper = tmp_path / live.HELPER_SH
    helper.write_text(live.render_helper_sh(setup))
    path, _ = tool_dir(tmp_path, "dash", "curl")
    result = run(f"sh '{helper}'", home=tmp_path, path=path)
    assert result.returncode == 1
    assert "is missing; run the install command again from My set-up in the portal." in result.stderr


def test_a_second_install_replaces_the_first_and_keeps_the_users_settings(portal, tmp_path):
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    mine = {"permissions": {"allow": ["Bash(ls)"]}, "env": {"DISABLE_TELEMETRY": "1"}}
    (home / ".claude" / "settings.json").write_text(json.dumps(mine, indent=2) + "\n")
    (home / ".claude.json").write_text('{"numStartups": 3}')
    path, _ = tool_dir(tmp_path, "dash", "curl")
    # The second link is made after the first install: one made while the first waits replaces it (R68).
    _, first_url = portal()
    result = run(DOWNLOAD["curl"].format(url=first_url), home=home, path=path)
    assert result.returncode == 0, result.stderr
    second, second_url = portal()
    result = run(DOWNLOAD["curl"].format(url=second_url), home=home, path=path)
    assert result.returncode == 0, result.stderr
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    assert settings["permissions"] == mine["permissions"] and settings["env"]["DISABLE_TELEMETRY"] == "1"
    assert json.loads((home / ".claude.json").read_text()) == {"numStartups": 3, "hasCompletedOnboarding": True}
    backups = sorted((home / ".claude").glob("settings.json.bak.*"))
    assert json.loads(backups[0].read_text()) == mine
    token = (home / ".claude" / live.TOKEN_FILE).read_text()
    second.refresh_from_db()
    assert second.token_lookup_id in token  # the second device's token replaced the first's


def test_the_install_url_answers_once(portal, tmp_path):
    _, url = portal()
    home = tmp_path / "home"
    home.mkdir()
    path, _ = tool_dir(tmp_path, "dash", "curl")
    assert run(DOWNLOAD["curl"].format(url=url), home=home, path=path).returncode == 0
    again = subprocess.run(["curl", "-sS", url], capture_output=True, text=True, timeout=30)
    assert again.stdout.startswith("This install link was already used on ")


def spoil(why: str, device: Device, url: str, alice) -> str:
    """Make the install link `url` refused for `why`; return the URL to use."""
    if why == "used":
        Device.objects.filter(pk=device.pk).update(installed_at=timezone.now())
    elif why == "expired":
        Device.objects.filter(pk=device.pk).update(install_expires_at=timezone.now() - timedelta(minutes=1))
    elif why == "revoked":
        revoke_key(key=device.key, actor=alice)
    elif why == "malformed":
        return url.rsplit("_", 1)[0] + "_cut-short"
    return url


@pytest.mark.parametrize("why", ["used", "expired", "malformed", "revoked"])
@pytest.mark.parametrize("shell", list(SHELLS))
def test_a_refused_install_link_fails_the_documented_command_with_the_portals_sentence(
    portal, tmp_path, settings, shell, why
):
    """`curl -f` drops a 4xx body: the command showed "error: 410" and sh, given nothing, exited 0."""
    settings.PORTAL_NAME = 'Acme\'s $(touch "$HOME/ran") `touch "$HOME/ran"` portal'
    device, url = portal()
    url = spoil(why, device, url, portal.alice)
    home = tmp_path / "home"
    home.mkdir()
    path, _ = tool_dir(tmp_path, shell, "curl")

    result = run(install_command(url, "linux"), home=home, path=path)

    plain = subprocess.run(["curl", "-sS", "-w", "%{http_code}", url], capture_output=True, text=True, timeout=30)
    sentence, status = plain.stdout[:-3], plain.stdout[-3:]
    assert status in {"403", "404", "410"}  # to anything else the link answers its true status
    assert "Acme's $(touch" in sentence
    assert (result.returncode, result.stdout, result.stderr) == (1, "", sentence)
    assert not (home / "ran").exists() and not (home / ".claude").exists()


def test_an_error_page_in_front_of_the_portal_never_runs(tmp_path):
    """A proxy's error page, even one that reads as commands, stays out of sh: the command keeps curl -f."""
    server = answering(b'touch "$HOME/ran"\n<html><body>502 Bad Gateway</body></html>\n')
    try:
        home = tmp_path / "home"
        home.mkdir()
        path, _ = tool_dir(tmp_path, "dash", "curl")
        url = f"http://127.0.0.1:{server.server_port}/api/v1/device/install/0123456789ab_x"
        result = run(install_command(url, "linux"), home=home, path=path)
    finally:
        server.shutdown()
        server.server_close()
    assert "502" in result.stderr
    assert not (home / "ran").exists()


# The Windows installer and helper: what each must say, since PowerShell cannot run here.
WINDOWS_SETUP = live.LiveSetup(
    portal_name="Acme's portal",
    key_url="https://portal.example.com/api/v1/device/key",
    device_name="Büro-PC",
    platform="windows",
    config=ClaudeConfig(
        "TokenBay",
        "tokenbay",
        "https://api.tokenbay.com",
        "bearer",
        "laptop",
        "sk-…42",
        {"ANTHROPIC_BASE_URL": "https://api.tokenbay.com", "ANTHROPIC_AUTH_TOKEN": "", "ANTHROPIC_API_KEY": ""},
    ),
    token="pkf_0123456789ab_TOKENVALUE",
)
INSTALL_PS1 = [
    ("written for PowerShell, stopping at the first error", "$ErrorActionPreference = 'Stop'"),
    ("the token file is the user's only, like chmod 600", "$acl.SetAccessRuleProtection($true, $false)"),
    ("the ACL names the current user", "[System.Security.Principal.WindowsIdentity]::GetCurrent().User"),
    (
        "the ACL is set before the token is written",
        "Protect-File $tokenFile\n[System.IO.File]::WriteAllText($tokenFile",
    ),
    ("the token goes into its file", "'pkf_0123456789ab_TOKENVALUE'"),
    (
        "cmd runs apiKeyHelper, so PowerShell is spelled out",
        "'powershell -NoProfile -NonInteractive -ExecutionPolicy Bypass -File \"' + $helper + '\"'",
    ),
    ("apiKeyHelper is set at the top level", "Set-Property $doc 'apiKeyHelper'"),
    ("stale exports cannot outrank the helper", "'ANTHROPIC_API_KEY' = ''"),
    ("both credential variables are blanked", "'ANTHROPIC_AUTH_TOKEN' = ''"),
    ("the gateway's address", "'ANTHROPIC_BASE_URL' = 'https://api.tokenbay.com'"),
    ("other keys are kept: properties are added, never the file replaced", "Add-Member -NotePropertyName $name"),
    ("a backup first", 'Copy-Item -LiteralPath $path "$path.bak.$stamp"'),
    ("bad JSON changes nothing", 'throw ("$path is not valid JSON. " + $afterRefusal)'),
    (
        "a refusal sends to a new install command: this one worked once",
        "$afterRefusal = 'Nothing was changed; fix or move the file, then make a new install command under Install on",
    ),
    ("the first run is marked done", "Set-Property $state 'hasCompletedOnboarding' $true"),
    ("the helper is checked once", "& powershell -NoProfile -NonInteractive -ExecutionPolicy Bypass -File $helper"),
    ("the portal is named in what it prints", "from Acme's portal when it needs it"),
]
HELPER_PS1 = [
    (
        "Invoke-RestMethod with the token in a header",
        'Invoke-RestMethod -Uri $url -Headers @{ Authorization = "Bearer $token"',
    ),
    ("the token is read from beside the helper", "Join-Path $PSScriptRoot 'portal-device-token'"),
    ("the portal's address is carried", "$url = 'https://portal.example.com/api/v1/device/key'"),
    ("the portal's name, quoted for PowerShell", "$portal = 'Acme''s portal'"),
    ("a refusal prints the portal's sentence", '$line = "$($_.ErrorDetails.Message)".Split("`n")[0].Trim()'),
    ("errors go to stderr with exit 1", "function Fail([string]$line) { [Console]::Error.WriteLine($line); exit 1 }"),
    ("an unreachable portal is named with its address", 'Fail "cannot reach $portal at $url"'),
    ("only the key goes to stdout", '[Console]::Out.WriteLine("$key".Trim())'),
    ("no redirect takes the device token elsewhere", "-UserAgent $agent -TimeoutSec 30 -MaximumRedirection 0"),
    ("a 5xx page is an outage, not a refusal", 'if ($status -ge 500) { "$portal at $url is not answering properly'),
    ("Claude Code's version from AI_AGENT", "$env:AI_AGENT -match '^claude-code_(\\d+)-(\\d+)-(\\d+)'"),
]


@pytest.mark.parametrize(("why", "fragment"), INSTALL_PS1, ids=[w for w, _ in INSTALL_PS1])
def test_the_windows_installer(why, fragment):
    assert fragment in live.render_device_install_ps1(WINDOWS_SETUP), why


@pytest.mark.parametrize(("why", "fragment"), HELPER_PS1, ids=[w for w, _ in HELPER_PS1])
def test_the_windows_helper(why, fragment):
    assert fragment in live.render_helper_ps1(WINDOWS_SETUP), why


def test_the_windows_installer_never_ends_the_session_that_runs_it():
    """`irm | iex` runs it in the developer's own PowerShell: `exit` would close their window."""
    script = live.render_device_install_ps1(WINDOWS_SETUP)
    helper = live.render_helper_ps1(WINDOWS_SETUP)
    outside_helper = script.replace(helper, "")
    assert "exit" not in outside_helper
    body = outside_helper[outside_helper.index("& {") :]
    assert body.rstrip().endswith("}")  # a child scope: no variable or preference leaks into the session
    assert 'throw ("$path is not valid JSON. " + $afterRefusal)' in body


def test_the_windows_installer_embeds_the_helper_once_and_the_token_only_in_its_file():
    script = live.render_device_install_ps1(WINDOWS_SETUP)
    helper = live.render_helper_ps1(WINDOWS_SETUP)
    assert f"@'\n{helper}'@" in script  # a literal here-string: nothing in the helper is expanded at install
    assert "\n'@" not in helper  # so the here-string cannot end early
    assert script.count(WINDOWS_SETUP.token) == 1
    assert WINDOWS_SETUP.token not in helper
    assert "Büro" not in script and "B?ro-PC" in script  # comments stay ASCII


def test_the_sh_installer_embeds_the_token_once_and_no_secret():
    setup = live.LiveSetup(**{**WINDOWS_SETUP.__dict__, "platform": "linux"})
    script = live.render_device_install_sh(setup)
    assert script.count(setup.token) == 1
    assert "sk-" not in script.replace("sk-…42", "").replace("sk-...42", "")
