"""End to end: the real Claude Code CLI, configured only by what the running portal hands out.

For each seed gateway, the portal runs (live_server), the gateway is the emulator enforcing
that gateway's auth rules on 127.0.0.1, and `claude -p` must get an answer through
settings.json, through the bash snippet and through install.sh. A deliberately wrong
config fails in the same harness, so these tests can fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from gateways.models import Gateway
from gateways.services import assign_key, store_key, update_gateway
from portal.models import AccessToken
from tests.gateway_emulator import GatewayRules, running_emulator

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

ROOT = Path(__file__).resolve().parent.parent
CLAUDE_BIN = os.environ.get("CLAUDE_BIN", str(ROOT / ".cache/claude-code/node_modules/.bin/claude"))
REPLY = "Claude Code is connected to the emulator."
SECRETS = {"tokaify": "sk-tokaify-e2e-0123456789", "tokenbay": "sk-tokenbay-e2e-0123456789"}
RULES = {
    "tokaify": lambda: GatewayRules(auth_scheme="x-api-key", keys={SECRETS["tokaify"]}),
    # TokenBay serves dotted ids only: a hyphenated model id would be a 404.
    "tokenbay": lambda: GatewayRules(
        auth_scheme="bearer",
        keys={SECRETS["tokenbay"]},
        models={"claude-opus-4.8", "claude-sonnet-4.6", "claude-haiku-4.5"},
    ),
}


@pytest.fixture(scope="module", autouse=True)
def _claude_is_installed():
    if not Path(CLAUDE_BIN).exists():
        pytest.fail(f"The Claude Code CLI is not at {CLAUDE_BIN}; `make test` installs it (make claude-cli).")


def run_claude(home: Path, *, shell_snippet: Path | None = None, extra_env: dict | None = None):
    env = {
        "HOME": str(home),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "DISABLE_AUTOUPDATER": "1",
        # Fail at once on a refused key instead of retrying for minutes (the harness, not the config).
        "CLAUDE_CODE_MAX_RETRIES": "0",
        **(extra_env or {}),
    }
    prompt = "Reply with the single word: connected"
    if shell_snippet:
        command = [
            "bash",
            "--norc",
            "--noprofile",
            "-c",
            f'source "{shell_snippet}" && exec "{CLAUDE_BIN}" -p "{prompt}"',
        ]
    else:
        command = [CLAUDE_BIN, "-p", prompt]
    return subprocess.run(command, env=env, cwd=home, capture_output=True, text=True, timeout=120)


@pytest.fixture
def portal_setup(live_server, tmp_path, django_user_model):
    """Point a preset at an emulator, store and assign a key, and return a download helper."""

    def prepare(slug: str, gateway_url: str):
        admin = django_user_model.objects.create_user("alice", password="x")
        dev = django_user_model.objects.create_user("bob", password="x")
        from portal.models import Membership, Team

        team = Team.objects.create(name="Web", slug="web")
        Membership.objects.create(team=team, user=admin, role="admin")
        Membership.objects.create(team=team, user=dev, role="member")
        gateway = Gateway.objects.get(slug=slug)
        update_gateway(gateway=gateway, changes={"base_url": gateway_url}, actor=admin)
        key = store_key(team=team, gateway=gateway, label="laptop", secret=SECRETS[slug], actor=admin)
        assign_key(key=key, username="bob", actor=admin)
        _, token = AccessToken.issue(dev)
        client = httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {token}"})
        [config] = client.get("/api/v1/me/configs/").json()["results"]

        def download(fmt: str) -> str:
            response = client.get(f"/api/v1/me/configs/{config['id']}/{fmt}")
            assert response.status_code == 200, response.text
            return response.text

        return download

    return prepare


def home_with_settings(tmp_path: Path, text: str) -> Path:
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude" / "settings.json").write_text(text)
    return home


def assert_auth_as_the_gateway_wants(gw, slug: str) -> None:
    calls = gw.message_requests()
    assert calls, "Claude Code sent no message"
    for call in calls:
        if slug == "tokenbay":
            assert call.headers["authorization"] == f"Bearer {SECRETS['tokenbay']}"
            assert "x-api-key" not in call.headers
            assert call.body["model"] in {"claude-opus-4.8", "claude-sonnet-4.6", "claude-haiku-4.5"}
        else:
            assert call.headers["x-api-key"] == SECRETS["tokaify"]


@pytest.mark.parametrize("slug", ["tokaify", "tokenbay"])
def test_claude_answers_through_the_downloaded_settings_json(portal_setup, tmp_path, slug):
    with running_emulator(RULES[slug]()) as gw:
        download = portal_setup(slug, gw.base_url)
        home = home_with_settings(tmp_path, download("settings.json"))
        result = run_claude(home)
        assert result.returncode == 0, result.stdout + result.stderr
        assert REPLY in result.stdout
        assert_auth_as_the_gateway_wants(gw, slug)


@pytest.mark.parametrize("slug", ["tokaify", "tokenbay"])
def test_claude_answers_through_the_generated_bash_snippet(portal_setup, tmp_path, slug):
    with running_emulator(RULES[slug]()) as gw:
        download = portal_setup(slug, gw.base_url)
        snippet = tmp_path / "claude.bash"
        snippet.write_text(download("bash"))
        home = tmp_path / "home"
        home.mkdir()
        result = run_claude(home, shell_snippet=snippet)
        assert result.returncode == 0, result.stdout + result.stderr
        assert REPLY in result.stdout
        assert_auth_as_the_gateway_wants(gw, slug)


def test_install_sh_then_claude_works_even_with_a_stale_key_exported(portal_setup, tmp_path):
    with running_emulator(RULES["tokenbay"]()) as gw:
        download = portal_setup("tokenbay", gw.base_url)
        home = tmp_path / "home"
        (home / ".claude").mkdir(parents=True)
        (home / ".claude" / "settings.json").write_text(json.dumps({"permissions": {"allow": ["Bash(ls)"]}}, indent=2))
        installed = subprocess.run(
            ["sh"],
            input=download("install.sh"),
            env={"HOME": str(home), "PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert installed.returncode == 0, installed.stderr
        settings = json.loads((home / ".claude" / "settings.json").read_text())
        assert settings["permissions"] == {"allow": ["Bash(ls)"]}
        # A leftover official key in the shell: the settings' explicit "" must win over it.
        result = run_claude(home, extra_env={"ANTHROPIC_API_KEY": "sk-ant-stale-official"})
        assert result.returncode == 0, result.stdout + result.stderr
        assert REPLY in result.stdout
        assert_auth_as_the_gateway_wants(gw, "tokenbay")


def test_a_bearer_key_sent_as_x_api_key_fails_in_the_same_harness(portal_setup, tmp_path):
    with running_emulator(RULES["tokenbay"]()) as gw:
        download = portal_setup("tokenbay", gw.base_url)
        good = json.loads(download("settings.json"))
        wrong = dict(good["env"])
        wrong["ANTHROPIC_API_KEY"] = wrong.pop("ANTHROPIC_AUTH_TOKEN")
        home = home_with_settings(tmp_path, json.dumps({"env": wrong}))
        result = run_claude(home)
        assert result.returncode != 0
        assert REPLY not in result.stdout
        assert gw.message_requests()[0].headers.get("x-api-key") == SECRETS["tokenbay"]
