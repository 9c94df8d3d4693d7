"""The first interactive run, as a new developer meets it: the real `claude` in a terminal (tmux).

Fresh HOME, the portal's install.sh, then `claude` in a project folder. Only the folder-trust
question is answered Yes (it preselects "No, exit"); any other screen gets a plain Enter, the
hurried answer that picks each screen's default. Then a prompt, and the emulator's reply must
appear on screen. print mode (`claude -p`, tests/test_e2e_claude.py) skips all of this.

api.anthropic.com must stay out of reach, as it is for many users of third-party gateways: the
terminal gets a proxy on a closed loopback port for everything but 127.0.0.1, so no test
reaches the internet and the onboarding contact fails the same way on every machine.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.gateway_emulator import GatewayRules, running_emulator
from tests.test_e2e_claude import CLAUDE_BIN, REPLY, RULES, SECRETS, portal_setup  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PROMPT = "Reply with the single word: connected"
TRUST = "Yes, I trust this folder"
STALE = {"ANTHROPIC_AUTH_TOKEN": "sk-stale-token-from-an-old-gateway", "ANTHROPIC_API_KEY": "sk-stale-api-key-old"}
CURSOR = "\u276f"  # the heavy angle Claude Code draws before the selected choice and in its prompt box
DEADLINE = 120  # seconds for the whole first run; a normal one takes about ten
# Screens Claude Code cannot get past on its own: after a few Enters (each one a retry) the run has failed.
DEAD_ENDS = ("Unable to connect to Anthropic services",)
RETRIES_AT_A_DEAD_END = 3


@pytest.fixture(scope="module", autouse=True)
def _tools_are_installed():
    if not Path(CLAUDE_BIN).exists():
        pytest.fail(f"The Claude Code CLI is not at {CLAUDE_BIN}; `make test` installs it (make claude-cli).")
    if not shutil.which("tmux"):
        pytest.fail("tmux is missing; `make system-deps` installs it (scripts/install-system-packages.sh).")


class Terminal:
    """One tmux server on its own socket: a 120x40 terminal that a test reads and types into."""

    def __init__(self, folder: Path):
        self.socket = f"portal-e2e-{uuid.uuid4().hex[:12]}"
        self.conf = folder / "tmux.conf"
        # Keep the pane after claude exits, so a failure shows its last words.
        self.conf.write_text("set-option -g remain-on-exit on\n")

    def tmux(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", str(self.conf), *args], capture_output=True, text=True, timeout=10
        )

    def start(self, command: str, cwd: Path) -> None:
        started = self.tmux("new-session", "-d", "-x", "120", "-y", "40", "-c", str(cwd), command)
        assert started.returncode == 0, started.stderr

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p").stdout

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-l", text)

    def close(self) -> None:
        self.tmux("kill-server")


@pytest.fixture
def terminal(tmp_path):
    term = Terminal(tmp_path)
    yield term
    term.close()


def input_is_ready(screen: str) -> bool:
    """The main prompt box, empty: a line holding only the cursor (menus show the cursor and a choice)."""
    return any(line.strip() == CURSOR for line in screen.splitlines())


def first_run(term: Terminal) -> str:
    """Answer only the trust question Yes, Enter elsewhere, send PROMPT; return the screen with the reply.

    A key is sent only once the screen has been still for a moment (Claude Code draws a screen before
    it listens), and sent again if the screen shows it was lost.
    """
    confirmed = sent = False
    retries = 0
    screen, last, changed_at, acted_at = "", "", time.monotonic(), 0.0
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        time.sleep(0.2)
        screen = term.screen()
        if REPLY in screen:
            return screen
        if "Pane is dead" in screen:  # claude exited: no point in waiting
            break
        now = time.monotonic()
        if screen != last:
            last, changed_at = screen, now
        if now - changed_at < 0.8 or now - acted_at < 1.5:
            continue
        acted_at = now
        if any(message in screen for message in DEAD_ENDS):
            retries += 1
            if retries > RETRIES_AT_A_DEAD_END:
                break
        if TRUST in screen and not confirmed:
            if f"{CURSOR} {TRUST}" in screen:
                term.keys("Enter")
                confirmed = True
            else:
                term.keys("Down")  # the preselected answer is "No, exit"
        elif sent:
            continue  # waiting for the answer
        elif PROMPT in screen:
            term.keys("Enter")
            sent = True
        elif input_is_ready(screen):
            term.type(PROMPT)
        else:
            term.keys("Enter")  # any other screen: the hurried developer's answer
    raise AssertionError(f"No answer on screen. Last screen:\n{screen}")


def install(download, home: Path) -> str:
    installed = subprocess.run(
        ["sh"],
        input=download("install.sh"),
        env={"HOME": str(home), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert installed.returncode == 0, installed.stderr
    return installed.stdout


def claude_command(home: Path, exported: dict[str, str]) -> str:
    """A minimal login environment, a real shell that exports `exported`, then claude."""
    env = {
        "HOME": str(home),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "TERM": "xterm-256color",
        "DISABLE_AUTOUPDATER": "1",
        # Nothing but the emulator is reachable: api.anthropic.com fails like on an offline network.
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    exports = "".join(f"export {name}={shlex.quote(value)}; " for name, value in exported.items())
    script = f"{exports}exec {shlex.quote(CLAUDE_BIN)}"
    return shlex.join(
        ["env", "-i", *(f"{k}={v}" for k, v in env.items()), "bash", "--norc", "--noprofile", "-c", script]
    )


def assert_only_the_right_header(gw, slug: str) -> None:
    calls = gw.message_requests()
    assert calls, "Claude Code sent no message"
    for call in calls:
        if slug == "tokenbay":
            assert call.headers.get("authorization") == f"Bearer {SECRETS[slug]}"
            assert "x-api-key" not in call.headers
        else:
            assert call.headers.get("x-api-key") == SECRETS[slug]
            assert "authorization" not in call.headers


def rules_for(slug: str, *, header_mode: str = "") -> GatewayRules:
    rules = RULES[slug]()
    rules.header_mode = header_mode
    # The real interactive CLI passes claude-relay-service's client check: the probe imitates it.
    rules.claude_code_only = True
    return rules


@pytest.mark.parametrize("slug", ["tokaify", "tokenbay"])
def test_first_interactive_run_after_install_sh_answers(portal_setup, tmp_path, terminal, slug):  # noqa: F811
    with running_emulator(rules_for(slug)) as gw:
        download = portal_setup(slug, gw.base_url)
        home = tmp_path / "home"
        (home / "project").mkdir(parents=True)
        assert ".claude.json" in install(download, home)
        terminal.start(claude_command(home, {}), home / "project")
        screen = first_run(terminal)
        assert REPLY in screen
        assert_only_the_right_header(gw, slug)


@pytest.mark.parametrize("slug", ["tokaify", "tokenbay"])
def test_first_interactive_run_ignores_stale_keys_exported_in_the_shell(
    portal_setup,  # noqa: F811
    tmp_path,
    terminal,
    slug,
):
    # claude-code-hub's rule: two different keys in the two headers are refused.
    with running_emulator(rules_for(slug, header_mode="strict")) as gw:
        download = portal_setup(slug, gw.base_url)
        home = tmp_path / "home"
        (home / "project").mkdir(parents=True)
        install(download, home)
        terminal.start(claude_command(home, STALE), home / "project")
        screen = first_run(terminal)
        assert REPLY in screen
        assert_only_the_right_header(gw, slug)


def test_without_the_installers_claude_json_an_x_api_key_set_up_stops_before_the_gateway(
    portal_setup,  # noqa: F811
    tmp_path,
    terminal,
):
    """The same harness fails where the issue did: settings.json alone, api.anthropic.com out of reach."""
    with running_emulator(rules_for("tokaify")) as gw:
        download = portal_setup("tokaify", gw.base_url)
        home = tmp_path / "home"
        (home / ".claude").mkdir(parents=True)
        (home / "project").mkdir()
        (home / ".claude" / "settings.json").write_text(download("settings.json"))
        terminal.start(claude_command(home, {}), home / "project")
        with pytest.raises(AssertionError, match="Unable to connect to Anthropic services"):
            first_run(terminal)
        assert not gw.message_requests()
    state = home / ".claude.json"
    assert not (state.exists() and json.loads(state.read_text()).get("hasCompletedOnboarding"))
