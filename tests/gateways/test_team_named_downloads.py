"""One developer, one gateway, two teams: every download, header and page says which team's set-up it is.

bob holds a Tokaify key in team Web and another in team Data. Saved side by side (Downloads, a dotfiles
folder) neither file may take the other's name, and the header that ends up in ~/.bashrc names its team.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import replace

import pytest

from gateways.config.builder import ClaudeConfig, build_config
from gateways.config.installers import render_install_sh
from gateways.config.snippets import render_bash, render_fish, render_zsh
from gateways.devices import create_device
from gateways.models import GatewayKey
from gateways.services import assign_key, store_key
from portal.crypto import Secret
from portal.models import Membership, Role

pytestmark = pytest.mark.django_db

WEB_SECRET = "sk-tokaify-web-0123456789abcdef"
DATA_SECRET = "sk-tokaify-data-0123456789abcd"
SHELLS = {
    "bash": (render_bash, ["bash", "--norc", "--noprofile"]),
    "zsh": (render_zsh, ["zsh", "-f"]),
    "fish": (render_fish, ["fish", "--no-config"]),
}
TEAM_NAMED = {
    "bash": "claude-{team}-tokaify.bash",
    "zsh": "claude-{team}-tokaify.zsh",
    "fish": "claude-{team}-tokaify.fish",
    "powershell": "claude-{team}-tokaify.ps1",
    "cmd": "claude-{team}-tokaify.cmd",
    "install.sh": "install-claude-{team}-tokaify.sh",
    "install.ps1": "install-claude-{team}-tokaify.ps1",
}


@pytest.fixture
def two_tokaify_setups(alice, bob, charlie, web, data_team, tokaify):
    Membership.objects.create(team=data_team, user=bob, role=Role.MEMBER)
    web_key = store_key(team=web, gateway=tokaify, label="bob", secret=WEB_SECRET, actor=alice)
    data_key = store_key(team=data_team, gateway=tokaify, label="bob", secret=DATA_SECRET, actor=charlie)
    return assign_key(key=web_key, username="bob", actor=alice), assign_key(key=data_key, username="bob", actor=charlie)


def filename(response) -> str:
    return re.fullmatch(r'attachment; filename="([^"]+)"', response["Content-Disposition"]).group(1)


@pytest.mark.parametrize("format_name", TEAM_NAMED)
def test_each_teams_download_is_named_after_its_team_and_gateway(api, client, bob, two_tokaify_setups, format_name):
    web_setup, data_setup = two_tokaify_setups
    by_api = api(bob)
    client.force_login(bob)
    for assignment, team in [(web_setup, "web"), (data_setup, "data")]:
        expected = TEAM_NAMED[format_name].format(team=team)
        assert filename(by_api.get(f"/api/v1/me/configs/{assignment.pk}/{format_name}")) == expected
        assert filename(client.get(f"/setup/{assignment.pk}/{format_name}")) == expected


@pytest.mark.parametrize("format_name", ["settings.json", "settings.local.json"])
def test_settings_files_keep_the_names_claude_code_reads(api, bob, two_tokaify_setups, format_name):
    for assignment in two_tokaify_setups:
        assert filename(api(bob).get(f"/api/v1/me/configs/{assignment.pk}/{format_name}")) == format_name


@pytest.mark.parametrize("format_name", TEAM_NAMED)
def test_each_downloads_first_line_names_its_team(api, bob, two_tokaify_setups, format_name):
    web_setup, data_setup = two_tokaify_setups
    client = api(bob)
    for assignment, team, secret in [(web_setup, "Web", WEB_SECRET), (data_setup, "Data", DATA_SECRET)]:
        text = client.get(f"/api/v1/me/configs/{assignment.pk}/{format_name}").content.decode()
        first = next(line for line in text.splitlines() if "Claude Code" in line)
        assert f"Claude Code -> Tokaify for team {team} (key bob, sk-...{secret[-4:]})" in first, first


def test_install_sh_says_which_teams_set_up_it_installed(api, bob, two_tokaify_setups):
    text = api(bob).get(f"/api/v1/me/configs/{two_tokaify_setups[1].pk}/install.sh").content.decode()
    assert 'echo "Claude Code is set up for Tokaify for team Data in $settings."' in text


@pytest.mark.parametrize("format_name,run", [("install.sh", "sh "), ("install.ps1", "-File ")])
def test_an_installers_run_line_names_the_file_it_is_saved_as(api, bob, two_tokaify_setups, format_name, run):
    response = api(bob).get(f"/api/v1/me/configs/{two_tokaify_setups[1].pk}/{format_name}")
    [run_line] = [line for line in response.content.decode().splitlines() if line.startswith("# Run:")]
    assert f"{run}{filename(response)}" in run_line


def config_for_team(team_name: str, tokaify) -> ClaudeConfig:
    key = GatewayKey(gateway=tokaify, label="Bob's laptop (x); touch label_ran; (y", masked="sk-…cdef")
    config = build_config(tokaify, key, Secret(WEB_SECRET))
    return replace(config, team_name=team_name, team_slug="web")


@pytest.mark.shell
@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("pasted", [False, True], ids=["sourced", "pasted"])
def test_a_hostile_team_name_in_the_header_never_runs(shell, pasted, tmp_path, tokaify):
    """A team's name is typed by whoever made the team: in the header it is a note, pasted or sourced."""
    render, command = SHELLS[shell]
    hostile = "Web $(touch dollar_ran) `touch tick_ran` '; touch quote_ran; ' \"x\nexport ANTHROPIC_BASE_URL=evil"
    snippet = render(config_for_team(hostile, tokaify))
    header = snippet.splitlines()[0]
    assert "for team Web" in header and "$" not in header and "`" not in header and '"' not in header
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8", "HOME": str(tmp_path)}
    if pasted:
        command = [*command, "-i"] if shell == "zsh" else command
        typed = snippet + "env\n"
        result = subprocess.run(command, input=typed, capture_output=True, text=True, env=env, cwd=tmp_path)
    else:
        (tmp_path / "snippet").write_text(snippet)
        result = subprocess.run(
            [*command, "-c", "source snippet; env"], capture_output=True, text=True, env=env, cwd=tmp_path
        )
    assert "ANTHROPIC_BASE_URL=https://api.tokaify.com" in result.stdout.splitlines(), result.stderr
    assert f"ANTHROPIC_AUTH_TOKEN={WEB_SECRET}" in result.stdout.splitlines() or (
        f"ANTHROPIC_API_KEY={WEB_SECRET}" in result.stdout.splitlines()
    )
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith("_ran")]
    assert "command not found" not in result.stderr and "unmatched" not in result.stderr, result.stderr


@pytest.mark.shell
def test_an_rc_file_with_the_old_header_is_still_found_by_the_installer(tmp_path, tokaify, web):
    """Nothing keys on the header line: install.sh finds a snippet's exports in ~/.bashrc by variable name.

    So a block pasted before the header named the team is flagged like a new one, not missed.
    """
    home = tmp_path / "home"
    home.mkdir()
    key = GatewayKey(gateway=tokaify, team=web, label="bob", masked="sk-…cdef")
    config = build_config(tokaify, key, Secret(WEB_SECRET))
    new_block = render_bash(config)
    old_block = new_block.replace(" for team Web (key", " (key", 1)
    assert old_block != new_block  # the header before this change, as a developer's ~/.bashrc may still hold it
    (home / ".bashrc").write_text("export PATH=$PATH:$HOME/bin\n" + old_block)
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8", "HOME": str(home)}
    result = subprocess.run(["sh"], input=render_install_sh(config), capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert ".bashrc sets Claude Code variables on line(s)" in result.stderr


def test_the_install_page_and_my_devices_name_the_team(client, bob, two_tokaify_setups):
    client.force_login(bob)
    for assignment, team in zip(two_tokaify_setups, ["Web", "Data"], strict=True):
        create_device(assignment=assignment, name=f"{team} laptop", platform="linux", actor=bob)
        page = client.post(
            f"/setup/{assignment.pk}/devices/", {"name": f"{team} desk", "platform": "linux"}, follow=True
        )
        heading = re.search(r"<h1>Install on .*?</h1>", page.content.decode(), re.S).group(0)
        assert f"team <bdi>{team}</bdi>" in heading, heading
    rows = client.get("/devices/").content.decode()
    for team in ["Web", "Data"]:
        row = re.search(rf'<tr data-device="\d+">\s*<td><bdi>{team} laptop.*?</tr>', rows, re.S).group(0)
        assert f"<bdi>Tokaify</bdi> · team <bdi>{team}</bdi> · <bdi>bob</bdi>" in row, row


def test_a_live_installer_names_the_team(client, bob, two_tokaify_setups):
    client.force_login(bob)
    page = client.post(
        f"/setup/{two_tokaify_setups[1].pk}/devices/", {"name": "data box", "platform": "linux"}, follow=True
    ).content.decode()
    url = re.search(r"(/api/v1/device/install/[\w-]+)", page).group(1)
    script = client.get(url, HTTP_ACCEPT="text/x-shellscript").content.decode()
    assert "\n# Claude Code -> Tokaify for team Data with a live key from the portal (device data box)\n" in script
    assert "fetches its key for Tokaify for team Data from" in script


def test_the_config_carries_its_teams_name_and_slug(tokaify, web):
    key = GatewayKey(gateway=tokaify, team=web, label="bob", masked="sk-…cdef")
    config = build_config(tokaify, key, Secret(WEB_SECRET))
    assert (config.team_name, config.team_slug) == ("Web", "web")
    assert "web" in repr(config) and WEB_SECRET not in repr(config)


def test_a_key_without_its_team_loaded_costs_no_query(tokaify, web, alice, django_assert_num_queries):
    """build_config reads no database (a probe builds one per key): a key whose team is not loaded gets none."""
    saved = store_key(team=web, gateway=tokaify, label="bob", secret=WEB_SECRET, actor=alice)
    key = GatewayKey.objects.select_related("gateway").get(pk=saved.pk)
    with django_assert_num_queries(0):
        config = build_config(key.gateway, key, Secret(WEB_SECRET))
    assert config.team_name == "" and "for team" not in render_bash(config).splitlines()[0]
