"""A developer who does exactly what the portal's words say: the live installer's sentence when it stops, what
My devices, the key page and connections call a device that never fetched its key, the troubleshooting row
after staff move a gateway, and the address an install command carries when PORTAL_URL is set."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from django.urls import reverse

from alerts.models import EventKind, Notification
from gateways.config import live
from gateways.config.builder import build_config
from gateways.config.installers import render_install_sh
from gateways.connections import ConnectionFilters, connections_for
from gateways.dashboard import dashboard_for
from gateways.devices import create_device, fetch_key, install_device, rollout
from gateways.models import Device, Gateway
from gateways.services import assign_key, rotate_key_secret, store_key
from portal.crypto import Secret, reveal
from portal.models import Membership, Team

SECRET = "sk-literal-0123456789abcdef"
NEW_LINE_SAID = "make a new install command under Install on a new device on My set-up in the portal"


def _tools(tmp_path: Path, merger: str) -> Path:
    """A PATH with what the documented `curl … | sh` needs, and only `merger` to edit the JSON."""
    folder = tmp_path / f"bin-{merger}"
    folder.mkdir()
    (folder / "sh").symlink_to("/usr/bin/dash")
    for tool in ("cat", "sed", "tr", "date", "mkdir", "chmod", "mv", "rm", "curl", merger):
        real = os.path.realpath(sys.executable) if tool == "python3" else shutil.which(tool)
        (folder / tool).symlink_to(real)
    return folder


def _paste(command: str, home: Path, path: Path) -> subprocess.CompletedProcess:
    env = {"HOME": str(home), "PATH": str(path), "LC_ALL": "C.UTF-8"}
    return subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=60)


def _install_command_from_the_page(client, assignment) -> str:
    """What bob copies: "Make the install command" under Install on a new device on My set-up."""
    page = client.post(f"/setup/{assignment.id}/devices/", {"name": "laptop", "platform": "linux"}, follow=True)
    text = html.unescape(page.content.decode())
    said = " ".join(text.split())
    assert (
        'Did the installer stop on the machine? Fix what it named, then make a new line under "Install on a new' in said
    )
    return re.search(r"<code>(curl [^<]+)</code>", text).group(1)


@pytest.fixture
def bobs_live_key(live_server, django_user_model, settings):
    """bob holds a TokenBay key; the portal's public address is the live server's."""
    settings.PORTAL_URL = live_server.url
    alice = django_user_model.objects.create_user("alice", password="x")
    bob = django_user_model.objects.create_user("bob", password="x")
    team = Team.objects.create(name="Web", slug="web")
    Membership.objects.create(team=team, user=alice, role="admin")
    Membership.objects.create(team=team, user=bob, role="member")
    key = store_key(team=team, gateway=Gateway.objects.get(slug="tokenbay"), label="laptop", secret=SECRET, actor=alice)
    return bob, assign_key(key=key, username="bob", actor=alice)


@pytest.mark.shell
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("merger", ["python3", "node"])
def test_a_live_install_stopped_by_a_broken_settings_file_says_what_works_and_it_does(
    client, bobs_live_key, tmp_path, merger
):
    bob, assignment = bobs_live_key
    client.force_login(bob)
    home, path = tmp_path / "home", _tools(tmp_path, merger)
    (home / ".claude").mkdir(parents=True)
    settings_file = home / ".claude" / "settings.json"
    settings_file.write_text('{"permissions": {"allow": ["Bash(ls)"]},}\n')  # a stray comma
    command = _install_command_from_the_page(client, assignment)

    stopped = _paste(command, home, path)
    assert stopped.returncode == 3
    assert "Nothing was changed; fix or move the file, then " + NEW_LINE_SAID in stopped.stderr, stopped.stderr
    assert "run this again" not in stopped.stderr
    # Running the same line again is what does not work: the link was used when the installer was served.
    again = _paste(command, home, path)
    assert "already used" in again.stderr and "Install on a new device on My set-up" in again.stderr

    # bob does what the sentence says: fixes the file, makes a new install command, pastes it.
    settings_file.write_text('{"permissions": {"allow": ["Bash(ls)"]}}\n')
    done = _paste(_install_command_from_the_page(client, assignment), home, path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Checked: the helper fetched the key." in done.stdout


@pytest.mark.django_db
def test_the_static_installer_still_says_run_this_again_and_the_live_ones_say_make_a_new_command():
    gateway = Gateway.objects.get(slug="tokenbay")
    key = store_key(team=Team.objects.create(name="T", slug="t"), gateway=gateway, label="k", secret=SECRET, actor=None)
    static = render_install_sh(build_config(gateway, key, Secret(SECRET)))
    assert "then run this again" in static  # true for a script the developer keeps and may run again
    setup = live.LiveSetup(
        "the portal", "https://p.example/api/v1/device/key", "pc", "windows", live.live_config(gateway, key), "pkf_x_y"
    )
    windows = live.render_device_install_ps1(setup)
    assert "run this again" not in windows
    assert "'Nothing was changed; fix or move the file, then " + NEW_LINE_SAID in windows  # both JSON refusals
    linux = live.render_device_install_sh(replace(setup, platform="linux"))
    said = json.loads(base64.b64decode(re.search(r"PORTAL_AFTER_REFUSAL='([^']+)'", linux).group(1)))
    assert said == "Nothing was changed; fix or move the file, then " + NEW_LINE_SAID + ": this one worked once."
    assert "fix or move it, then run this again" not in linux  # a folder where its helper or token goes


@pytest.mark.shell
@pytest.mark.django_db
def test_a_live_installer_stopped_by_a_folder_or_a_missing_tool_says_make_a_new_command(tmp_path):
    gateway = Gateway.objects.get(slug="tokenbay")
    key = store_key(team=Team.objects.create(name="T", slug="t"), gateway=gateway, label="k", secret=SECRET, actor=None)
    portal = 'Acme\'s "$portal"'
    setup = live.LiveSetup(
        portal, "https://p.example/api/v1/device/key", "pc", "linux", live.live_config(gateway, key), "x"
    )
    script = tmp_path / "install.sh"
    script.write_text(live.render_device_install_sh(setup))
    home = tmp_path / "home"
    (home / ".claude" / live.HELPER_SH).mkdir(parents=True)
    folder = _paste(f"sh '{script}'", home, _tools(tmp_path, "python3"))
    told = f"then make a new install command under Install on a new device on My set-up in {portal}: this one worked"
    assert folder.returncode == 3 and "is a folder, not a file. Nothing was changed; fix or move the file, " + told in (
        folder.stderr
    ), folder.stderr
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "sh").symlink_to("/usr/bin/dash")
    (bare / "date").symlink_to(shutil.which("date"))
    neither = _paste(f"sh '{script}'", home, bare)
    assert neither.returncode == 4 and "Nothing was changed; install one, " + told in neither.stderr, neither.stderr


# --- S1 (b): a device whose installer was served but never fetched its key is not "live" -----------------------


def _served_not_fetched(assignment, bob) -> tuple[Device, str]:
    """The install link used (the installer served), then nothing: its merge stopped on the machine."""
    device, code = create_device(assignment=assignment, name="bob laptop", platform="linux", actor=bob)
    tokens = []
    install_device(code=code, request=None, render=lambda d, token: tokens.append(token) or "script")
    device.refresh_from_db()
    return device, tokens[0]


@pytest.mark.django_db
def test_a_device_that_never_fetched_its_key_is_not_live_anywhere(client, api, alice, bob, bob_assignment, staff):
    _, token = _served_not_fetched(bob_assignment, bob)
    key = bob_assignment.key

    client.force_login(bob)
    page = client.get("/devices/").content.decode()
    row = page.split("bob laptop", 1)[1].split("</tr>", 1)[0]
    state = re.search(r'data-device-state="([^"]+)"[^>]*>([^<]+)<', row)
    assert state.groups() == ("never_fetched", "installed, key never fetched"), row
    assert api(bob).get("/api/v1/devices/").json()["results"][0]["state"] == "never_fetched"
    assert rollout(key)["live"] == 0
    # The key page lists it, since its token works, with "never" as its last fetch, so an admin can remove it.
    client.force_login(alice)
    devices = client.get(f"/keys/{key.id}/").content.decode().split('id="live-devices"', 1)[1].split("</section>")[0]
    row = devices.split("bob laptop", 1)[1].split("</tr>", 1)[0]
    assert "never" in row and "installed, key never fetched" in row and "Remove" in row, row
    row = connections_for(alice, ConnectionFilters()).get(pk=bob_assignment.pk)
    assert row.live_devices == 0

    # Its first fetch makes it live, everywhere.
    assert reveal(fetch_key(raw_token=token, request=None)) == "sk-tokenbay-alice-0123456789abcdef"
    assert api(bob).get("/api/v1/devices/").json()["results"][0]["state"] == "live"
    assert rollout(key)["live"] == 1
    assert connections_for(alice, ConnectionFilters()).get(pk=bob_assignment.pk).live_devices == 1
    client.force_login(bob)
    assert 'data-device-state="live"' in client.get("/devices/").content.decode()


@pytest.mark.django_db
def test_the_api_schema_names_every_device_state(api, bob):
    schema = api(bob).get("/api/v1/schema/?format=json").json()
    state = schema["components"]["schemas"]["DeviceOutput"]["properties"]["state"]
    described = state.get("description", "") + " ".join(state.get("enum", []))
    for value in ("waiting", "expired", "never_fetched", "live", "refused", "unassigned", "removed"):
        assert value in described, described


# --- S2: the troubleshooting row names the base URL the set-up uses -------------------------------------------

NEW_BASE = "https://eu.tokaify.example"


@pytest.mark.django_db
def test_the_tokaify_troubleshooting_row_names_the_base_url_after_staff_change_it(
    client, api, staff, alice, bob, tokaify_key
):
    assert api(staff).patch("/api/v1/gateways/tokaify/", {"base_url": NEW_BASE}, format="json").status_code == 200
    assign_key(key=tokaify_key, username="bob", actor=alice)
    client.force_login(bob)
    page = html.unescape(client.get("/setup/").content.decode())
    troubleshooting = page.split("Troubleshooting Tokaify", 1)[1]
    assert f"use {NEW_BASE}, not .../v1" in troubleshooting
    assert "api.tokaify.com" not in troubleshooting and "{base_url}" not in troubleshooting
    catalogue = html.unescape(client.get("/gateways/tokaify/").content.decode())
    assert f"use {NEW_BASE}, not .../v1" in catalogue and "{base_url}" not in catalogue


@pytest.mark.django_db
def test_the_migration_rewrites_only_the_presets_untouched_row(alice):
    from importlib import import_module

    from django.apps import apps

    migration = import_module("gateways.migrations.0015_troubleshooting_names_the_base_url")
    tokaify, tokenbay = Gateway.objects.get(slug="tokaify"), Gateway.objects.get(slug="tokenbay")
    old = ["Base URL ends in /v1", migration.OLD_FIX]
    Gateway.objects.filter(pk=tokaify.pk).update(troubleshooting=[["401", "Check the key."], old])
    edited = ["Base URL ends in /v1", "Use https://api.tokaify.com (our proxy: https://proxy.example)."]
    Gateway.objects.filter(pk=tokenbay.pk).update(troubleshooting=[edited], is_preset=True)

    migration.name_the_base_url(apps, None)
    tokaify.refresh_from_db()
    tokenbay.refresh_from_db()
    assert tokaify.troubleshooting == [["401", "Check the key."], ["Base URL ends in /v1", migration.NEW_FIX]]
    assert tokenbay.troubleshooting == [edited]  # the staff's words stay
    migration.name_the_address_again(apps, None)
    tokaify.refresh_from_db()
    assert tokaify.troubleshooting == [["401", "Check the key."], old]


@pytest.mark.django_db
def test_rolling_the_migration_back_leaves_no_placeholder_for_the_older_release(staff):
    """The older release shows rows word for word: every {base_url}, a staff-typed one too, becomes the address."""
    from importlib import import_module

    from django.apps import apps

    from gateways.services import create_gateway

    migration = import_module("gateways.migrations.0015_troubleshooting_names_the_base_url")
    create_gateway(
        slug="corp",
        actor=staff,
        name="Corp",
        base_url="https://gw.corp.example",
        auth_scheme="bearer",
        troubleshooting=[["404 on /v1/v1", "Use {base_url} as the base URL."]],
    )
    migration.name_the_address_again(apps, None)
    assert Gateway.objects.get(slug="corp").troubleshooting == [
        ["404 on /v1/v1", "Use https://gw.corp.example as the base URL."]
    ]


@pytest.mark.django_db
def test_no_preset_troubleshooting_names_a_fixed_address():
    for gateway in Gateway.objects.filter(is_preset=True):
        for symptom, fix in gateway.troubleshooting:  # as stored: the rows shown have the base URL filled in
            assert "https://" not in symptom + fix, (gateway.slug, fix)


# --- S3: install links at PORTAL_URL, like invitations and reset links -----------------------------------------

INTERNAL = "portal.internal:8000"
PUBLIC = "https://portal.example.com"


@pytest.fixture
def internal_host(settings):
    settings.PORTAL_URL = PUBLIC
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "portal.internal", "testserver"]


@pytest.mark.django_db
def test_the_api_install_link_is_at_the_public_address(api, bob, bob_assignment, internal_host):
    answer = (
        api(bob)
        .post(
            f"/api/v1/me/configs/{bob_assignment.id}/devices/",
            {"name": "laptop", "platform": "linux"},
            format="json",
            HTTP_HOST=INTERNAL,
        )
        .json()
    )
    assert answer["install_url"].startswith(f"{PUBLIC}/api/v1/device/install/"), answer
    assert f"'{PUBLIC}/api/v1/device/install/" in answer["install_command"]


@pytest.mark.django_db
def test_the_install_page_command_is_at_the_public_address(client, bob, bob_assignment, internal_host):
    client.force_login(bob)
    page = client.post(
        f"/setup/{bob_assignment.id}/devices/",
        {"name": "laptop", "platform": "windows"},
        HTTP_HOST=INTERNAL,
        follow=True,
    )
    assert f"irm '{PUBLIC}/api/v1/device/install/" in html.unescape(page.content.decode())


@pytest.mark.django_db
def test_the_helper_keeps_fetching_from_the_public_address(client, bob, bob_assignment, internal_host):
    _, code = create_device(assignment=bob_assignment, name="laptop", platform="linux", actor=bob)
    script = client.get(reverse("api-device-install", args=[code]), HTTP_HOST=INTERNAL).content.decode()
    assert f"url='{PUBLIC}/api/v1/device/key'" in script
    assert "portal.internal" not in script


# --- The settings.json tab speaks to every system, so it offers each system's installer ---------------------------


@pytest.mark.django_db
def test_the_settings_tab_offers_windows_its_installer_beside_install_sh(client, bob, bob_assignment):
    """It says "(Windows: %USERPROFILE%\\.claude\\settings.json) ... use an installer below": install.sh alone, a POSIX
    sh script, was the only one below, for a Windows browser too."""
    client.force_login(bob)
    page = client.get("/setup/", HTTP_USER_AGENT="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/156").content
    panel = html.unescape(page.decode().split('data-panel="settings"', 1)[1])
    downloads = panel[panel.index('class="downloads"') : panel.index("</p>", panel.index('class="downloads"'))]
    assert "Download install.sh (macOS, Linux)" in downloads
    assert "Download install.ps1 (Windows)" in downloads
    ps1 = client.get(f"/setup/{bob_assignment.id}/install.ps1")
    assert ps1.status_code == 200 and b"settings.json" in ps1.content


# --- A device that never fetched its key holds no secret: the rotation notice does not count it as live ----------


@pytest.mark.django_db
def test_a_holder_whose_only_device_never_fetched_is_not_told_of_as_using_live_devices(alice, bob, bob_assignment):
    key = bob_assignment.key
    _, code = create_device(assignment=bob_assignment, name="bob laptop", platform="linux", actor=bob)
    install_device(code=code, request=None, render=lambda d, token: "script")  # served; the merge then stopped
    assert rollout(key)["live"] == 0  # the key page: no live device
    never = next(s for s in dashboard_for(alice) if s.slug == "never_downloaded")
    assert [a.user.username for a in never.rows] == ["bob"]  # the dashboard: he never downloaded nor fetched

    rotate_key_secret(key=key, secret="sk-tokenbay-rotated-0123456789", actor=alice)

    told = Notification.objects.filter(event=EventKind.KEY_ROTATED, team=key.team).latest("pk")
    # bob has no secret anywhere: no download, and a device that never fetched one.
    assert told.payload["live_holders"] == 0, told.text
    assert told.payload["never_downloaded"] == 1, told.text
