"""A setting staff take out of a gateway's extra environment leaves settings.json at the next install.

The installers record the extra-env names they wrote (settings.json's `portalExtraEnv`) and remove
the recorded names a new set-up no longer sets; every other name stays as the developer left it.
Real sh, with the python3 and the node merge; the real Claude Code CLI reads the recorded file.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gateways.config.builder import ClaudeConfig
from gateways.config.installers import EXTRA_ENV_RECORD, render_install_ps1, render_install_sh
from gateways.models import Gateway
from gateways.services import update_gateway
from tests.gateways.test_installers import ENV, EXISTING, claude_style, run_installer, settings_file
from tests.test_e2e_claude import (  # noqa: F401 (portal_setup is a fixture)
    CLAUDE_BIN,
    REPLY,
    RULES,
    assert_auth_as_the_gateway_wants,
    portal_setup,
    run_claude,
)

INTERPRETERS = pytest.mark.parametrize("interpreter", ["python3", "node"])
# Not a model id: those (rules.MODEL_EXTRA_ENV) are the installers' like a managed name, written as "" when a
# set-up does not set them, never recorded (tests/gateways/test_switching_extra_env.py).
STAFF_SETTING = {"CLAUDE_CODE_MAX_OUTPUT_TOKENS": "8192"}


def download(client, assignment_id: int) -> str:
    response = client.get(f"/api/v1/me/configs/{assignment_id}/install.sh")
    assert response.status_code == 200, response.content
    return response.content.decode()


def config(extra: dict[str, str]) -> ClaudeConfig:
    return ClaudeConfig(
        "TokenBay", "tokenbay", "https://api.tokenbay.com", "bearer", "Bob laptop", "sk-…42", {**ENV, **extra}
    )


@pytest.mark.shell
@pytest.mark.django_db
@INTERPRETERS
def test_a_setting_staff_remove_leaves_settings_json_when_the_developer_downloads_again(
    api, staff, bob, bob_assignment, tmp_path, interpreter
):
    settings_file(tmp_path).parent.mkdir(parents=True)
    settings_file(tmp_path).write_text(claude_style(EXISTING))  # the developer's own DISABLE_TELEMETRY among them
    as_staff, as_bob = api(staff), api(bob)
    assert as_staff.patch("/api/v1/gateways/tokenbay/", {"extra_env": STAFF_SETTING}, format="json").status_code == 200
    first = run_installer(tmp_path, interpreter=interpreter, text=download(as_bob, bob_assignment.id))
    assert first.returncode == 0, first.stderr
    document = json.loads(settings_file(tmp_path).read_text())
    assert document["env"]["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "8192"
    assert document[EXTRA_ENV_RECORD] == ["CLAUDE_CODE_MAX_OUTPUT_TOKENS"]

    assert as_staff.patch("/api/v1/gateways/tokenbay/", {"extra_env": {}}, format="json").status_code == 200
    assert Gateway.objects.get(slug="tokenbay").extra_env == {}
    again = run_installer(tmp_path, interpreter=interpreter, text=download(as_bob, bob_assignment.id))
    assert again.returncode == 0, again.stderr
    document = json.loads(settings_file(tmp_path).read_text())
    assert "CLAUDE_CODE_MAX_OUTPUT_TOKENS" not in document["env"]
    assert EXTRA_ENV_RECORD not in document  # nothing of the gateway's own is left to take back
    assert document["env"]["DISABLE_TELEMETRY"] == "1"  # the developer's, never the portal's to remove
    assert {k: document[k] for k in ("permissions", "hooks", "enabledPlugins")} == {
        k: EXISTING[k] for k in ("permissions", "hooks", "enabledPlugins")
    }
    assert "removed CLAUDE_CODE_MAX_OUTPUT_TOKENS, which this set-up no longer sets" in again.stdout


@pytest.mark.shell
@INTERPRETERS
def test_switching_gateways_by_installer_removes_only_the_other_set_ups_extra_settings(tmp_path, interpreter):
    first = {"BASH_DEFAULT_TIMEOUT_MS": "600000", "DISABLE_AUTOUPDATER": "1"}
    assert run_installer(tmp_path, interpreter=interpreter, text=render_install_sh(config(first))).returncode == 0
    second = {"DISABLE_AUTOUPDATER": "1", "ANTHROPIC_SMALL_FAST_MODEL": "claude-haiku-4.5"}
    result = run_installer(tmp_path, interpreter=interpreter, text=render_install_sh(config(second)))
    assert result.returncode == 0, result.stderr
    document = json.loads(settings_file(tmp_path).read_text())
    assert "BASH_DEFAULT_TIMEOUT_MS" not in document["env"]
    assert document["env"]["DISABLE_AUTOUPDATER"] == "1"
    assert document["env"]["ANTHROPIC_SMALL_FAST_MODEL"] == "claude-haiku-4.5"  # written as a managed name is
    assert document[EXTRA_ENV_RECORD] == ["DISABLE_AUTOUPDATER"]


@pytest.mark.shell
@INTERPRETERS
def test_a_removed_setting_still_exported_in_the_shell_is_named_not_shown(tmp_path, interpreter):
    assert (
        run_installer(tmp_path, interpreter=interpreter, text=render_install_sh(config(STAFF_SETTING))).returncode == 0
    )
    result = run_installer(
        tmp_path,
        interpreter=interpreter,
        text=render_install_sh(config({})),
        extra_env={"CLAUDE_CODE_MAX_OUTPUT_TOKENS": "4242-from-an-old-snippet"},
    )
    assert result.returncode == 0, result.stderr
    assert "CLAUDE_CODE_MAX_OUTPUT_TOKENS is still exported in this shell" in result.stderr
    assert "4242-from-an-old-snippet" not in result.stdout + result.stderr


@pytest.mark.shell
def test_python_and_node_write_the_same_record(tmp_path):
    written = []
    for interpreter in ("python3", "node"):
        root = tmp_path / interpreter
        root.mkdir()
        for extra in (STAFF_SETTING, {"DISABLE_AUTOUPDATER": "1"}):
            result = run_installer(root, interpreter=interpreter, text=render_install_sh(config(extra)))
            assert result.returncode == 0, result.stderr
        written.append(settings_file(root).read_bytes())
    assert json.loads(written[0])[EXTRA_ENV_RECORD] == ["DISABLE_AUTOUPDATER"]
    assert written[0] == written[1]


@pytest.mark.shell
@INTERPRETERS
def test_a_record_the_developer_broke_is_ignored_not_obeyed(tmp_path, interpreter):
    settings_file(tmp_path).parent.mkdir(parents=True)
    hand_made = {"env": {"PATH_NOTE": "mine", "ANTHROPIC_MODEL": "x"}, EXTRA_ENV_RECORD: "PATH_NOTE"}
    settings_file(tmp_path).write_text(claude_style(hand_made))
    result = run_installer(tmp_path, interpreter=interpreter, text=render_install_sh(config({})))
    assert result.returncode == 0, result.stderr
    assert json.loads(settings_file(tmp_path).read_text())["env"]["PATH_NOTE"] == "mine"


def test_install_ps1_records_and_removes_the_extra_settings_the_same_way():
    text = render_install_ps1(config(STAFF_SETTING))
    assert "$extra = @(Decode-Json " in text
    assert f"$doc.PSObject.Properties['{EXTRA_ENV_RECORD}']" in text
    # The recorded names the new set-up does not set leave env, with a sentence, and the record is replaced.
    assert "removed $name, which this set-up no longer sets" in text
    assert "$envBlock.PSObject.Properties.Remove($name)" in text
    assert f"-NotePropertyName '{EXTRA_ENV_RECORD}' -NotePropertyValue $extra -Force" in text
    assert text.index(f"$doc.PSObject.Properties['{EXTRA_ENV_RECORD}']") < text.index("Save-Json $settings")


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_claude_answers_through_a_settings_json_that_carries_the_record(portal_setup, tmp_path, django_user_model):  # noqa: F811
    from tests.gateway_emulator import running_emulator

    if not Path(CLAUDE_BIN).exists():
        pytest.fail(f"The Claude Code CLI is not at {CLAUDE_BIN}; `make test` installs it (make claude-cli).")
    with running_emulator(RULES["tokenbay"]()) as gw:
        fetch = portal_setup("tokenbay", gw.base_url)
        update_gateway(
            gateway=Gateway.objects.get(slug="tokenbay"),
            changes={"extra_env": {"CLAUDE_CODE_SUBAGENT_MODEL": "claude-haiku-4.5", "DISABLE_AUTOUPDATER": "1"}},
            actor=django_user_model.objects.get(username="alice"),
        )
        home = tmp_path / "home"
        home.mkdir()
        env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin"}
        installed = subprocess.run(
            ["sh"], input=fetch("install.sh"), env=env, capture_output=True, text=True, timeout=60
        )
        assert installed.returncode == 0, installed.stderr
        document = json.loads((home / ".claude" / "settings.json").read_text())
        assert document[EXTRA_ENV_RECORD] == ["DISABLE_AUTOUPDATER"]  # a model id is written as a managed name is
        assert document["env"]["CLAUDE_CODE_SUBAGENT_MODEL"] == "claude-haiku-4.5"
        result = run_claude(home)
        assert result.returncode == 0, result.stdout + result.stderr
        assert REPLY in result.stdout
        assert_auth_as_the_gateway_wants(gw, "tokenbay")
