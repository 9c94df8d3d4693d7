"""A live device must run its installer again after a settings change, even when a rotation follows it.

The helper fetches only the key (README, Live keys), so a rotation reaches the device by itself, while a
change of the settings its settings.json holds (gateway or key) reaches it only when the install command
runs again. A rotation after such a change used to hide it. And the Windows installer keeps the same
`portalExtraEnv` record as the sh one, so the next install takes back the extra settings staff removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone

from gateways import devices
from gateways.config import live
from gateways.config.installers import EXTRA_ENV_RECORD
from gateways.devices import create_device, fetch_key, install_device
from gateways.models import GATEWAY_FIELDS, INSTALLED_GATEWAY_FIELDS, Device, Gateway, GatewayKey
from gateways.probes.runner import probe_key
from gateways.services import rotate_key_secret, update_gateway, update_key_settings
from tests.conftest import TOKENBAY_SECRET
from tests.gateway_emulator import GatewayRules, running_emulator

NEW_SECRET = "sk-tokenbay-rotated-0123456789abcdef"
REINSTALL_ON_MY_DEVICES = "settings changed: run the install command again from My set-up"
REINSTALL_ON_KEY_PAGE = "must run the install command again"


def live_device(assignment) -> tuple[Device, str]:
    """A device installed and fetching, as its installer and helper would leave it; with its token."""
    device, code = create_device(assignment=assignment, name="work laptop", platform="linux", actor=assignment.user)
    device, token = install_device(code=code, request=None, render=lambda d, t: t)
    fetch_key(raw_token=token, request=None)
    return device, token


def later(minutes: int):
    """Each step a few minutes after the last, so no two stamps tie."""
    return time_machine.travel(timezone.now() + timedelta(minutes=minutes), tick=False)


def told_to_reinstall(device: Device, api, alice, bob) -> dict[str, bool]:
    """Whether each place a person looks says the device must run its install command again."""
    device = Device.objects.select_related("key", "user").get(pk=device.pk)
    [listed] = api(bob).get("/api/v1/devices/").json()["results"]
    page = Client()
    page.force_login(bob)
    my_devices = page.get("/devices/").content.decode()
    page.force_login(alice)
    key_page = page.get(f"/keys/{device.key_id}/").content.decode()
    return {
        "model": device.needs_reinstall,
        "query": Device.objects.needing_reinstall().filter(pk=device.pk).exists(),
        "api": listed["needs_reinstall"],
        "my devices": REINSTALL_ON_MY_DEVICES in my_devices,
        "key page": REINSTALL_ON_KEY_PAGE in key_page,
        "rollout": devices.rollout(GatewayKey.objects.get(pk=device.key_id))["reinstall"] == 1,
        "not current": not Device.objects.current().filter(pk=device.pk).exists(),
    }


EVERYWHERE = dict.fromkeys(["model", "query", "api", "my devices", "key page", "rollout", "not current"], True)
NOWHERE = {name: False for name in EVERYWHERE}


@pytest.mark.django_db
def test_a_key_settings_change_then_a_rotation_still_asks_the_device_to_reinstall(api, alice, bob, bob_assignment):
    device, _ = live_device(bob_assignment)
    with later(5):
        update_key_settings(key=bob_assignment.key, changes={"model": "opus"}, actor=alice)
    with later(10):
        rotate_key_secret(key=bob_assignment.key, secret=NEW_SECRET, actor=alice)
    assert told_to_reinstall(device, api, alice, bob) == EVERYWHERE
    [row] = api(alice).get("/api/v1/connections/", params={"state": "stale"}).json()["results"]
    assert (row["user"], row["live_devices"], row["live_devices_current"]) == ("bob", 1, 0)


@pytest.mark.django_db
def test_a_gateway_change_then_a_rotation_still_asks_the_device_to_reinstall(api, alice, bob, staff, bob_assignment):
    device, _ = live_device(bob_assignment)
    with later(5):
        update_gateway(gateway=bob_assignment.key.gateway, changes={"base_url": "https://eu.tokenbay.com"}, actor=staff)
    with later(10):
        rotate_key_secret(key=bob_assignment.key, secret=NEW_SECRET, actor=alice)
    assert told_to_reinstall(device, api, alice, bob) == EVERYWHERE


@pytest.mark.django_db
def test_a_rotation_alone_asks_for_no_reinstall(api, alice, bob, bob_assignment):
    device, token = live_device(bob_assignment)
    with later(5):
        rotate_key_secret(key=bob_assignment.key, secret=NEW_SECRET, actor=alice)
    assert told_to_reinstall(device, api, alice, bob) == {**NOWHERE, "not current": True}  # it has the old secret
    with later(6):
        assert fetch_key(raw_token=token, request=None).reveal() == NEW_SECRET  # its helper's next fetch
        assert told_to_reinstall(device, api, alice, bob) == NOWHERE  # nothing left to do


@pytest.mark.django_db
def test_a_device_installed_after_the_change_and_before_the_rotation_is_current(api, alice, bob, bob_assignment):
    update_key_settings(key=bob_assignment.key, changes={"model": "opus"}, actor=alice)
    with later(5):
        device, _ = live_device(bob_assignment)
    with later(10):
        rotate_key_secret(key=bob_assignment.key, secret=NEW_SECRET, actor=alice)
    assert told_to_reinstall(device, api, alice, bob) == {**NOWHERE, "not current": True}


@pytest.mark.django_db
def test_a_label_or_expiry_change_is_not_in_settings_json_so_asks_for_no_reinstall(api, alice, bob, bob_assignment):
    device, _ = live_device(bob_assignment)
    with later(5):
        update_key_settings(
            key=bob_assignment.key,
            changes={"label": "Bob's laptop", "expires_at": timezone.now() + timedelta(days=90)},
            actor=alice,
        )
    assert told_to_reinstall(device, api, alice, bob) == NOWHERE
    # Nor are earlier downloads stale: the label is only in their comments, the expiry in none.
    assert GatewayKey.objects.get().config_changed_at < device.installed_at


@pytest.mark.django_db
def test_a_gateway_field_outside_settings_json_asks_for_no_reinstall(api, alice, bob, staff, bob_assignment):
    device, _ = live_device(bob_assignment)
    with later(5):
        update_gateway(
            gateway=bob_assignment.key.gateway,
            changes={"notes": "Ask #ai-help.", "probe_interval_minutes": 30},
            actor=staff,
        )
    assert told_to_reinstall(device, api, alice, bob) == NOWHERE


def test_every_gateway_field_outside_the_installed_ones_leaves_a_devices_settings_as_they_are():
    """INSTALLED_GATEWAY_FIELDS names every gateway field the builder puts into settings.json's env."""
    gateway = Gateway(slug="g", name="G", base_url="https://api.example.com", auth_scheme="bearer", extra_env={})
    key = GatewayKey(gateway=gateway, label="k", masked="sk-…42")
    before = live.live_config(gateway, key).env
    for name in set(GATEWAY_FIELDS) - set(INSTALLED_GATEWAY_FIELDS):
        value = getattr(gateway, name)
        changed = {bool: lambda v: not v, int: lambda v: v + 7, list: lambda v: [*v, ["a", "b"]]}
        setattr(gateway, name, changed.get(type(value), lambda v: f"{v}x")(value))
    assert live.live_config(gateway, key).env == before


@pytest.mark.django_db
def test_the_probes_betas_switch_then_a_rotation_still_asks_the_device_to_reinstall(
    api, alice, bob, tokenbay, bob_assignment
):
    rules = GatewayRules(
        auth_scheme="bearer",
        keys={TOKENBAY_SECRET, NEW_SECRET},
        models={"claude-opus-4.8", "claude-sonnet-4.6", "claude-haiku-4.5"},
        reject_context_management=True,
    )
    with running_emulator(rules) as gw:
        Gateway.objects.filter(pk=tokenbay.pk).update(base_url=gw.base_url)  # before the device is installed
        with later(1):
            device, _ = live_device(bob_assignment)
        with later(5):
            key = GatewayKey.objects.select_related("gateway", "team").get()
            assert probe_key(key, trigger="web", user=alice).verdict == "ok"
    assert GatewayKey.objects.get().disable_experimental_betas is True  # settings.json needs the variable now
    with later(10):
        rotate_key_secret(key=GatewayKey.objects.get(), secret=NEW_SECRET, actor=alice)
    assert told_to_reinstall(device, api, alice, bob) == EVERYWHERE


# --- The data migration ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_migration_dates_each_keys_settings_from_what_is_known(migrator):
    executor = migrator
    # The other apps stay at their latest migrations (their tables as the rows below need them).
    others = [node for node in executor.loader.graph.leaf_nodes() if node[0] != "gateways"]
    BEFORE = [("gateways", "0009_gateway_slug_lowercase_unique"), *others]
    AFTER = [("gateways", "0010_key_settings_changed_at"), *others]
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    Team, Gateway_, GatewayKey_ = (
        apps.get_model(*name) for name in (("portal", "Team"), ("gateways", "Gateway"), ("gateways", "GatewayKey"))
    )
    team = Team.objects.create(name="Web", slug="web")
    now = timezone.now()
    hour = timedelta(hours=1)
    quiet = Gateway_.objects.get(slug="tokaify")
    Gateway_.objects.filter(pk=quiet.pk).update(updated_at=now - 10 * hour)
    moved = Gateway_.objects.get(slug="tokenbay")
    Gateway_.objects.filter(pk=moved.pk).update(updated_at=now - 3 * hour)  # moved, then the key rotated

    def key(n, gateway, *, changed, rotated=None):
        return GatewayKey_.objects.create(
            team=team,
            gateway=gateway,
            label=f"k{n}",
            masked="sk-…",
            fingerprint=f"f{n}",
            created_at=now - 5 * hour,
            config_changed_at=changed,
            rotated_at=rotated,
        ).pk

    never_rotated = key(1, quiet, changed=now - 4 * hour)
    changed_after_rotation = key(2, quiet, changed=now - 1 * hour, rotated=now - 2 * hour)
    rotated_last = key(3, quiet, changed=now - 2 * hour, rotated=now - 2 * hour)
    rotated_after_a_move = key(4, moved, changed=now - 2 * hour, rotated=now - 2 * hour)

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    migrated = executor.loader.project_state(AFTER).apps.get_model("gateways", "GatewayKey")
    stamps = dict(migrated.objects.values_list("pk", "settings_changed_at"))
    assert stamps[never_rotated] == now - 4 * hour  # its last change was of settings
    assert stamps[changed_after_rotation] == now - 1 * hour
    assert stamps[rotated_last] == now - 5 * hour  # nothing known since its creation: a rotation alone
    assert stamps[rotated_after_a_move] == now - 3 * hour  # its gateway changed before the rotation


# --- The Windows installer keeps the extra-env record ---------------------------------------------------

EXTRA = {"DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "8192"}


def _setup(key: GatewayKey, platform: str) -> live.LiveSetup:
    key = GatewayKey.objects.select_related("gateway").get(pk=key.pk)
    return live.LiveSetup(
        portal_name="Acme portal",
        key_url="http://127.0.0.1:9/api/v1/device/key",  # nothing listens: the installer's check only warns
        device_name="work laptop",
        platform=platform,
        config=live.live_config(key.gateway, key),
        token="pkf_0123456789ab_TOKENVALUE",
    )


def _unquote_powershell(text: str) -> str:
    assert re.fullmatch(r"'(?:[^']|'')*'", text), text  # printable ASCII: one single-quoted string
    return text[1:-1].replace("''", "'")


def what_the_ps1_writes(script: str) -> tuple[dict[str, str], list[str]]:
    """The env and the extra-env record the Windows installer puts into settings.json, read from its text."""
    block = re.search(r"^\$newEnv = \[ordered\]@\{\n(.*?)\n\}$", script, re.S | re.M).group(1)
    env = {}
    for line in block.splitlines():
        name, value = re.fullmatch(r"  ('[A-Z0-9_]+') = (.*)", line).groups()
        env[_unquote_powershell(name)] = _unquote_powershell(value)
    names = re.search(r"^\$extra = @\((.*)\)$", script, re.M).group(1)
    return env, [_unquote_powershell(name) for name in names.split(", ") if name]


def run_sh_installer(script: str, home: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    tools = tmp_path / "bin"
    if not tools.exists():
        tools.mkdir()
        for tool in ["sh", "cat", "chmod", "mv", "mkdir", "date", "sed", "tr", "rm"]:
            (tools / tool).symlink_to(shutil.which(tool))
        (tools / "python3").symlink_to(os.path.realpath(sys.executable))
    env = {"HOME": str(home), "PATH": str(tools), "LC_ALL": "C.UTF-8"}
    return subprocess.run(["sh"], input=script, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.shell
@pytest.mark.django_db
def test_the_windows_installer_writes_the_same_record_and_env_as_the_sh_one(staff, tokenbay, tokenbay_key, tmp_path):
    update_gateway(gateway=tokenbay, changes={"extra_env": EXTRA}, actor=staff)
    home = tmp_path / "home"
    home.mkdir()
    result = run_sh_installer(live.render_device_install_sh(_setup(tokenbay_key, "linux")), home, tmp_path)
    assert result.returncode == 0, result.stderr
    written = json.loads((home / ".claude" / "settings.json").read_text())
    assert written[EXTRA_ENV_RECORD] == sorted(EXTRA)

    env, record = what_the_ps1_writes(live.render_device_install_ps1(_setup(tokenbay_key, "windows")))
    assert record == written[EXTRA_ENV_RECORD]
    assert env == written["env"]

    # Staff take one setting out: both installers record only what is left.
    update_gateway(gateway=tokenbay, changes={"extra_env": {"DISABLE_AUTOUPDATER": "1"}}, actor=staff)
    result = run_sh_installer(live.render_device_install_sh(_setup(tokenbay_key, "linux")), home, tmp_path)
    assert "removed CLAUDE_CODE_MAX_OUTPUT_TOKENS, which this set-up no longer sets" in result.stdout
    written = json.loads((home / ".claude" / "settings.json").read_text())
    env, record = what_the_ps1_writes(live.render_device_install_ps1(_setup(tokenbay_key, "windows")))
    assert record == written[EXTRA_ENV_RECORD] == ["DISABLE_AUTOUPDATER"]
    assert env == written["env"]

    # And none: the record leaves settings.json, and the Windows installer records an empty list.
    update_gateway(gateway=tokenbay, changes={"extra_env": {}}, actor=staff)
    result = run_sh_installer(live.render_device_install_sh(_setup(tokenbay_key, "linux")), home, tmp_path)
    assert EXTRA_ENV_RECORD not in json.loads((home / ".claude" / "settings.json").read_text())
    assert what_the_ps1_writes(live.render_device_install_ps1(_setup(tokenbay_key, "windows")))[1] == []


# What the Windows installer does with the record, and whether it happens before settings.json is saved (or,
# like the sh merge's sentences, after).
WINDOWS_TAKES_BACK = [
    ("a record that is not a list of names is ignored", f"$doc.{EXTRA_ENV_RECORD} -is [System.Array]", True),
    ("only text names in the record count", f"@($doc.{EXTRA_ENV_RECORD} | Where-Object {{ $_ -is [string] }})", True),
    (
        "a recorded name the new set-up sets, or the portal manages, stays",
        "if ($recorded -cnotcontains $name -or $newEnv.Contains($name) -or $managed -ccontains $name) { continue }",
        True,
    ),
    (
        "the betas flag the troubleshooting asks for stays",
        "if (@('CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS') -ccontains",
        True,
    ),
    (
        "a recorded name no longer set leaves env",
        "$envBlock.PSObject.Properties.Remove($name)\n  $takenBack += $name",
        True,
    ),
    ("the record is replaced", f"Set-Property $doc '{EXTRA_ENV_RECORD}' $extra", True),
    ("or removed when nothing is extra", f"$doc.PSObject.Properties.Remove('{EXTRA_ENV_RECORD}')", True),
    ("each name taken back is said", 'Write-Host "removed $name, which this set-up no longer sets"', False),
    ("a value still in the Windows environment is named", "$name is still set in your Windows environment", False),
]


@pytest.mark.parametrize(
    ("why", "fragment", "before_save"), WINDOWS_TAKES_BACK, ids=[w for w, *_ in WINDOWS_TAKES_BACK]
)
def test_the_windows_installer_takes_back_what_an_earlier_one_recorded(why, fragment, before_save):
    from tests.gateways.test_live_scripts import WINDOWS_SETUP

    script = live.render_device_install_ps1(WINDOWS_SETUP)
    assert fragment in script, why
    assert (script.index(fragment) < script.index("Save-Json $settings $doc")) is before_save
    # The recorded names are read before the new env is written over them.
    assert script.index("$recorded = @()") < script.index("foreach ($name in $newEnv.Keys)")
