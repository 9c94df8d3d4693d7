"""Several set-ups on one machine: a developer in two teams, and a key edited by a script and a page.

A project's settings.local.json made from one team's download beside another team's user-wide install, a
second live device installed into the same ~/.claude/, and an expiry set through the API with milliseconds
then left alone by a rename on the key's page.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from gateways import services
from gateways.config import live
from gateways.config.installers import REPLACED_ENV, render_install_sh
from gateways.config.snippets import render_settings_json
from gateways.devices import create_device
from gateways.models import Gateway, GatewayKey
from gateways.services import assign_key, store_key
from portal.models import Action, AuditEvent, Membership, Role, Team
from tests.conftest import api_client_for, make_user
from tests.gateway_emulator import GatewayRules, running_emulator
from tests.gateways.test_switching_setups import CLAUDE_BIN, DOTTED, config_for, sh
from tests.page_forms import form_on

WEB_KEY = "sk-tokenbay-web-0123456789abcdef"
DATA_KEY = "sk-tokaify-data-0123456789abcdef"


# --- A project's settings.local.json beside another team's user-wide install ----------------------------


@pytest.mark.django_db
def test_a_downloaded_settings_local_json_sets_every_name_install_sh_writes(api, alice, bob, tokaify_key, tmp_path):
    """Claude Code merges env name by name: the project's file must decide each name the user-wide file sets."""
    assignment = assign_key(key=tokaify_key, username="bob", actor=alice)
    client = api(bob)
    download = client.get(f"/api/v1/me/configs/{assignment.id}/settings.local.json")
    assert download.status_code == 200, download.content
    project_env = json.loads(download.content)["env"]
    home = tmp_path / "home"
    home.mkdir()
    installed = sh(client.get(f"/api/v1/me/configs/{assignment.id}/install.sh").content.decode(), home)
    assert installed.returncode == 0, installed.stderr
    user_env = json.loads((home / ".claude" / "settings.json").read_text())["env"]
    assert project_env == user_env
    assert set(REPLACED_ENV) <= set(project_env)
    assert project_env["ANTHROPIC_MODEL"] == ""  # Tokaify names no model: Claude Code's default, not another's


@pytest.mark.e2e
@pytest.mark.django_db
def test_a_projects_settings_local_json_of_the_other_team_sends_none_of_the_user_wide_model_ids(tmp_path):
    """Team web's install.sh for every folder, team data's settings.local.json in one project (as My set-up advises)."""
    if not Path(CLAUDE_BIN).exists():
        pytest.fail(f"The Claude Code CLI is not at {CLAUDE_BIN}; `make test` installs it (make claude-cli).")
    home = tmp_path / "home"
    project = home / "data-project"
    (project / ".claude").mkdir(parents=True)
    web_rules = GatewayRules(auth_scheme="bearer", keys={WEB_KEY}, models=DOTTED)
    with (
        running_emulator(web_rules) as web_gw,
        running_emulator(GatewayRules(auth_scheme="x-api-key", keys={DATA_KEY})) as data_gw,
    ):
        _, _, web = config_for("tokenbay", web_gw.base_url, WEB_KEY)
        _, _, data = config_for("tokaify", data_gw.base_url, DATA_KEY)
        assert sh(render_install_sh(web), home).returncode == 0
        (project / ".claude" / "settings.local.json").write_text(render_settings_json(data))
        env = {
            "HOME": str(home),
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",
        }
        result = subprocess.run(
            [CLAUDE_BIN, "-p", "Reply with the single word: connected"],
            env=env,
            cwd=project,
            capture_output=True,
            text=True,
            timeout=120,
        )
        calls = data_gw.message_requests()
        assert not web_gw.message_requests()
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls, result.stdout + result.stderr
    assert all(call.headers["x-api-key"] == DATA_KEY for call in calls)
    models = [call.body.get("model") for call in calls]
    assert all(model not in DOTTED for model in models), models


# --- A second live device in the same ~/.claude/ ---------------------------------------------------------


def run(command: str, home: Path) -> subprocess.CompletedProcess:
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    return subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def two_teams(live_server, django_user_model):
    """Bob in teams web (TokenBay) and data (Tokaify), a key of each assigned to him, and his install commands."""
    alice = make_user("alice")
    charlie = make_user("charlie")
    bob = make_user("bob")
    web = Team.objects.create(name="Web", slug="web")
    data = Team.objects.create(name="Data", slug="data")
    Membership.objects.create(team=web, user=alice, role=Role.ADMIN)
    Membership.objects.create(team=data, user=charlie, role=Role.ADMIN)
    Membership.objects.create(team=web, user=bob, role=Role.MEMBER)
    Membership.objects.create(team=data, user=bob, role=Role.MEMBER)
    tokenbay, tokaify = Gateway.objects.get(slug="tokenbay"), Gateway.objects.get(slug="tokaify")
    web_key = store_key(team=web, gateway=tokenbay, label="bob", secret="sk-live-web-0123456789abcdef", actor=alice)
    data_key = store_key(team=data, gateway=tokaify, label="bob", secret="sk-live-data-0123456789abcdef", actor=charlie)
    assignments = {
        "web": assign_key(key=web_key, username="bob", actor=alice),
        "data": assign_key(key=data_key, username="bob", actor=charlie),
    }

    def install_command(team: str, name: str) -> str:
        _, code = create_device(assignment=assignments[team], name=name, platform="linux", actor=bob)
        url = live_server.url + reverse("api-device-install", args=[code])
        return f"curl -fsSL -H 'Accept: text/x-shellscript' '{url}' | sh"

    return install_command


@pytest.mark.shell
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_second_live_device_on_the_same_machine_names_the_device_whose_helper_it_replaced(two_teams, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    first = run(two_teams("web", "work laptop (web)"), home)
    assert first.returncode == 0, first.stderr
    assert "replaced the key helper" not in first.stdout + first.stderr  # nothing was there
    second = run(two_teams("data", "work laptop (data)"), home)
    assert second.returncode == 0, second.stderr
    assert (
        "replaced the key helper of device work laptop (web), from an earlier set-up on this machine: its token is "
        "gone from here. Remove that device under My devices in the portal, so it no longer counts as live."
    ) in second.stdout
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    assert run(settings["apiKeyHelper"], home).stdout == "sk-live-data-0123456789abcdef\n"


def _setup(name: str, token: str, platform: str = "linux") -> live.LiveSetup:
    gateway = Gateway.objects.get(slug="tokenbay")
    key = GatewayKey(gateway=gateway, label="laptop", masked="sk-…cdef")
    return live.LiveSetup("Acme portal", "http://127.0.0.1:9/k", name, platform, live.live_config(gateway, key), token)


@pytest.mark.shell
@pytest.mark.django_db
def test_running_the_same_device_installer_again_replaces_no_other_device(tmp_path):
    """The helper carries its device's id: the same device's installer, run twice, has nothing to report."""
    home = tmp_path / "home"
    home.mkdir()
    script = live.render_device_install_sh(_setup("laptop", "t" * 43))
    answers = [sh(script, home) for _ in range(2)]
    assert [answer.returncode for answer in answers] == [0, 0], answers[1].stderr
    assert not any("replaced the key helper" in answer.stdout for answer in answers)
    other = sh(live.render_device_install_sh(_setup("laptop", "u" * 43)), home)  # the same name, another device
    assert "replaced the key helper of device laptop," in other.stdout


@pytest.mark.django_db
def test_the_windows_device_installer_names_the_device_whose_helper_it_replaces():
    """PowerShell cannot run here: its check reads back the line the Windows helper writes (.NET regex, as re)."""
    first = _setup("home pc (web)", "t" * 43, "windows")
    helper = live.render_helper_ps1(first).replace("\n", "\r\n")  # as a Windows editor may have saved it
    installer = live.render_device_install_ps1(_setup("home pc (data)", "u" * 43, "windows"))
    pattern = re.search(r"if \(\$old -match (.+?)\) \{ \$Matches\[1\] \}", installer)
    assert pattern, "the installer reads no device name from the old helper"
    quoted = pattern.group(1)
    assert quoted.startswith("'") and quoted.endswith("'")
    match = re.search(quoted[1:-1].replace("''", "'"), helper)
    assert match and match.group(1) == "home pc (web)"
    own_id = re.search(r"^# Device id: ([0-9a-f]+) ", live.render_helper_ps1(first), re.M)
    assert own_id and f"-notmatch '(?m)^# Device id: {own_id.group(1)} '" in live.render_device_install_ps1(first)
    assert "Write-Host ('replaced the key helper of device ' + $replaced + ', from an earlier set-up" in installer
    assert "My devices in the portal, so it no longer counts as live.')" in installer
    # Read before the new helper is written over it.
    assert installer.index("$old = [System.IO.File]::ReadAllText($helper)") < installer.index(
        "[System.IO.File]::WriteAllText($helper"
    )


# --- An expiry set through the API with milliseconds, then a rename on the key's page ----------------------


@pytest.mark.django_db
def test_renaming_a_key_on_its_page_leaves_an_expiry_set_with_milliseconds_through_the_api(web, alice, tokenbay_key):
    erin = make_user("erin")
    Membership.objects.create(team=web, user=erin, role=Role.ADMIN)
    answer = api_client_for(alice).patch(
        f"/api/v1/keys/{tokenbay_key.id}/", {"expires_at": "2020-01-02T03:04:05.678Z"}, format="json"
    )
    assert answer.status_code == 200, answer.content
    assert services.record_expirations() == 1  # it has passed: recorded once

    page = Client()
    page.force_login(erin)
    action = f"/keys/{tokenbay_key.id}/settings/"
    form = form_on(page.get(f"/keys/{tokenbay_key.id}/"), action)
    assert form.get("expires_at"), form
    form["label"] = "Bob old laptop"
    assert page.post(action, form).status_code == 302

    rename = AuditEvent.objects.get(action=Action.KEY_UPDATED, actor_username="erin")
    assert set(rename.details["changed"]) == {"label"}
    assert services.record_expirations() == 0
    assert AuditEvent.objects.filter(action=Action.KEY_EXPIRED).count() == 1


@pytest.mark.django_db
def test_an_expiry_is_stored_to_the_whole_second(api, alice, tokenbay_key):
    answer = api(alice).patch(
        f"/api/v1/keys/{tokenbay_key.id}/", {"expires_at": "2031-01-02T03:04:05.678Z"}, format="json"
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["expires_at"].startswith("2031-01-02T03:04:05")
    assert ".678" not in answer.json()["expires_at"]
    assert GatewayKey.objects.get(pk=tokenbay_key.pk).expires_at.microsecond == 0


@pytest.mark.django_db
def test_an_expiry_stored_with_milliseconds_before_is_the_same_second_to_the_form(alice, tokenbay_key):
    """A key saved before expiries were whole seconds: the form's same second is no change."""
    stored = GatewayKey.objects.get(pk=tokenbay_key.pk)
    GatewayKey.objects.filter(pk=stored.pk).update(expires_at="2031-01-02T03:04:05.678+00:00")
    stored.refresh_from_db()
    services.update_key_settings(
        key=stored, changes={"expires_at": stored.expires_at.replace(microsecond=0), "label": "Renamed"}, actor=alice
    )
    rename = AuditEvent.objects.filter(action=Action.KEY_UPDATED).latest("id")
    assert set(rename.details["changed"]) == {"label"}
