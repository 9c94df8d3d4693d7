"""End to end: the real Claude Code CLI with a live key, installed by the command the API gives (`curl … | sh`).

The portal runs (live_server); the gateway is the emulator, reading the credential headers the
way real gateways do (x-api-key first, Bearer first, or refusing two different keys). The scratch
HOME's shell exports stale ANTHROPIC_API_KEY and ANTHROPIC_AUTH_TOKEN, which would outrank the
helper if settings.json did not blank them. No file under HOME may hold the secret.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from gateways.devices import remove_device
from gateways.models import Device, Gateway
from gateways.services import assign_key, revoke_key, rotate_key_secret, store_key, update_gateway
from portal.models import AccessToken, Membership, Team
from tests.gateway_emulator import GatewayRules, running_emulator
from tests.test_e2e_claude import CLAUDE_BIN, REPLY, _claude_is_installed, run_claude  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SECRET = "sk-live-0123456789abcdef"
NEW_SECRET = "sk-live-rotated-9876543210"
STALE = {"ANTHROPIC_API_KEY": "sk-ant-stale-official-key", "ANTHROPIC_AUTH_TOKEN": "sk-stale-other-gateway"}
MODELS = {"claude-opus-4.8", "claude-sonnet-4.6", "claude-haiku-4.5"}


@pytest.fixture
def portal(live_server, django_user_model):
    """Point TokenBay at an emulator, give bob its key, and make devices the way bob would (the API)."""
    alice = django_user_model.objects.create_user("alice", password="x")
    bob = django_user_model.objects.create_user("bob", password="x")
    team = Team.objects.create(name="Web", slug="web")
    Membership.objects.create(team=team, user=alice, role="admin")
    Membership.objects.create(team=team, user=bob, role="member")
    _, token = AccessToken.issue(bob)
    api = httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {token}"})

    class Portal:
        def connect(self, gateway_url: str, slug: str = "tokenbay") -> None:
            gateway = Gateway.objects.get(slug=slug)
            update_gateway(gateway=gateway, changes={"base_url": gateway_url}, actor=alice)
            self.key = store_key(team=team, gateway=gateway, label="laptop", secret=SECRET, actor=alice)
            assign_key(key=self.key, username="bob", actor=alice)

        def new_device(self) -> str:
            [config] = api.get("/api/v1/me/configs/").json()["results"]
            made = api.post(f"/api/v1/me/configs/{config['id']}/devices/", json={"name": "laptop", "platform": "linux"})
            assert made.status_code == 201, made.text
            self.device_id = made.json()["id"]
            return made.json()["install_command"]

    Portal.alice = alice
    return Portal()


def install(tmp_path: Path, command: str) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    result = subprocess.run(
        ["sh", "-c", command],
        env={"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", **STALE},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Checked: the helper fetched the key." in result.stdout
    return home


def claude(home: Path) -> subprocess.CompletedProcess:
    return run_claude(home, extra_env=STALE)


def files_holding(home: Path, text: str) -> list[str]:
    return [str(p) for p in home.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def rules(mode: str, slug: str = "tokenbay") -> GatewayRules:
    if slug == "tokaify":
        return GatewayRules(auth_scheme="x-api-key", keys={SECRET}, header_mode=mode)
    # TokenBay serves dotted model ids only.
    return GatewayRules(auth_scheme="bearer", keys={SECRET}, header_mode=mode, models=MODELS)


@pytest.mark.parametrize("slug", ["tokenbay", "tokaify"])
@pytest.mark.parametrize("mode", ["x-api-key-first", "bearer-first", "strict"])
def test_claude_answers_with_the_live_key_in_each_header_mode(portal, tmp_path, mode, slug):
    with running_emulator(rules(mode, slug)) as gw:
        portal.connect(gw.base_url, slug)
        command = portal.new_device()
        assert command.startswith("curl -fsSL -H 'Accept: text/x-shellscript' '") and command.endswith("' | sh")
        home = install(tmp_path, command)

        result = claude(home)
        assert result.returncode == 0, result.stdout + result.stderr
        assert REPLY in result.stdout
        for call in gw.message_requests():  # the helper's key, in both headers; never a stale one
            assert call.headers["x-api-key"] == SECRET
            assert call.headers["authorization"] == f"Bearer {SECRET}"
        assert not files_holding(home, SECRET), "the secret was written under HOME"

        url = command.split("'")[3]
        again = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", url], capture_output=True, text=True, timeout=30)
        assert again.stdout.startswith("This install link was already used on ")
        assert again.stdout.endswith("\n410")


def test_after_a_rotation_the_device_needs_nothing_and_after_removal_it_is_refused(portal, tmp_path):
    with running_emulator(rules("x-api-key-first")) as gw:
        portal.connect(gw.base_url)
        home = install(tmp_path, portal.new_device())
        settings = home / ".claude" / "settings.json"
        before = settings.read_bytes()
        assert claude(home).returncode == 0

        rotate_key_secret(key=portal.key, secret=NEW_SECRET, actor=portal.alice)
        gw.rules.keys = {NEW_SECRET}  # the gateway now takes only the new secret
        gw.seen.clear()
        result = claude(home)
        assert result.returncode == 0, result.stdout + result.stderr
        assert REPLY in result.stdout
        assert {c.headers["x-api-key"] for c in gw.message_requests()} == {NEW_SECRET}
        assert settings.read_bytes() == before, "the device's settings changed"
        assert not files_holding(home, NEW_SECRET) and not files_holding(home, SECRET)
        assert Device.objects.get(pk=portal.device_id).has_current_secret

        remove_device(device=Device.objects.get(pk=portal.device_id), actor=portal.alice)
        gw.seen.clear()
        refused = claude(home)
        assert refused.returncode != 0
        output = refused.stdout + refused.stderr
        assert "This device was removed from the portal by alice on " in output, output
        assert "run the install command again from My set-up" in output
        assert not gw.message_requests() or all(c.headers.get("x-api-key") != NEW_SECRET for c in gw.message_requests())


def test_after_the_key_is_revoked_claude_says_so_in_the_portals_words(portal, tmp_path, settings):
    settings.PORTAL_NAME = "Acme portal"
    with running_emulator(rules("strict")) as gw:
        portal.connect(gw.base_url)
        home = install(tmp_path, portal.new_device())
        assert claude(home).returncode == 0
        revoke_key(key=portal.key, actor=portal.alice)
        refused = claude(home)
        assert refused.returncode != 0
        output = refused.stdout + refused.stderr
        assert "The key 'laptop' was revoked in Acme portal; ask your team admin for a new key." in output, output


CURSOR = "\u276f"  # Claude Code's cursor, before the selected choice and in its empty prompt box


def test_the_first_interactive_run_asks_no_key_question(portal, tmp_path):
    """In a terminal (tmux): a key from apiKeyHelper needs no "Detected a custom API key" answer.

    TokAify is an x-api-key gateway, where the static set-up meets that question (default No).
    The installer marked the onboarding done; only the folder-trust question is answered.
    """
    if not shutil.which("tmux"):
        pytest.fail("tmux is missing; `make system-deps` installs it (scripts/install-system-packages.sh).")
    with running_emulator(rules("strict", "tokaify")) as gw:
        portal.connect(gw.base_url, "tokaify")
        home = install(tmp_path, portal.new_device())
        project = home / "project"
        project.mkdir()
        exported = " ".join(f"{name}={value}" for name, value in STALE.items())
        command = (
            f"env -i HOME={home} PATH=/usr/local/bin:/usr/bin:/bin TERM=xterm-256color DISABLE_AUTOUPDATER=1 "
            # api.anthropic.com out of reach, as for many users of gateways; loopback stays direct.
            f"HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost {exported} {CLAUDE_BIN}"
        )
        socket_name = f"portal-live-{uuid.uuid4().hex[:12]}"

        def tmux(*args: str) -> str:
            return subprocess.run(["tmux", "-L", socket_name, *args], capture_output=True, text=True, timeout=10).stdout

        tmux("new-session", "-d", "-x", "120", "-y", "40", "-c", str(project), command)
        screen, typed = "", False
        try:
            deadline = time.monotonic() + 120
            while REPLY not in screen and time.monotonic() < deadline:
                time.sleep(1.5)
                screen = tmux("capture-pane", "-p")
                assert "Detected a custom API key" not in screen, screen
                if "trust this folder" in screen:
                    tmux("send-keys", "Enter" if f"{CURSOR} Yes, I trust" in screen else "Down")
                elif not typed and any(line.strip() == CURSOR for line in screen.splitlines()):
                    tmux("send-keys", "-l", "Reply with the single word: connected")
                    time.sleep(0.5)
                    tmux("send-keys", "Enter")
                    typed = True
        finally:
            tmux("kill-server")
        assert REPLY in screen, screen
        assert {c.headers["x-api-key"] for c in gw.message_requests()} == {SECRET}
