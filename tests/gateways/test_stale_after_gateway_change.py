"""A gateway or key settings change after a set-up was installed or downloaded: the portal says so.

A live device's helper only fetches the key (README, Live keys): after a base URL change its settings.json still
sends Claude Code to the old address, so the device must run the install command again. A downloaded config
holds the old settings, so its holder must download again. A rotation alone needs neither for a device.
"""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest
from django.test import Client

from gateways import devices, services
from gateways.models import Device, Gateway
from gateways.services import assign_key, rotate_key_secret, store_key, update_gateway
from portal.models import AccessToken, Membership, Team
from tests.gateway_emulator import GatewayRules, running_emulator

SECRET = "sk-live-0123456789abcdef"
NEW_SECRET = "sk-live-fedcba9876543210"


def _install(client: httpx.Client, config_id: int, name: str, home, env) -> None:
    made = client.post(f"/api/v1/me/configs/{config_id}/devices/", json={"name": name, "platform": "linux"})
    assert made.status_code == 201, made.text
    run = subprocess.run(
        ["sh", "-c", made.json()["install_command"]], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_device_installed_before_a_base_url_change_must_run_the_installer_again(
    live_server, django_user_model, tmp_path
):
    alice = django_user_model.objects.create_user("alice", password="x")
    bob = django_user_model.objects.create_user("bob", password="x")
    team = Team.objects.create(name="Web", slug="web")
    Membership.objects.create(team=team, user=alice, role="admin")
    Membership.objects.create(team=team, user=bob, role="member")
    staff = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    as_bob = httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {AccessToken.issue(bob)[1]}"})
    as_alice = httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {AccessToken.issue(alice)[1]}"}
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    helper = ["sh", str(home / ".claude" / "portal-key-helper.sh")]

    with (
        running_emulator(GatewayRules(auth_scheme="bearer", keys={SECRET, NEW_SECRET})) as old,
        running_emulator(GatewayRules(auth_scheme="bearer", keys={SECRET, NEW_SECRET})) as new,
    ):
        update_gateway(gateway=Gateway.objects.get(slug="tokenbay"), changes={"base_url": old.base_url}, actor=staff)
        key = store_key(
            team=team, gateway=Gateway.objects.get(slug="tokenbay"), label="laptop", secret=SECRET, actor=alice
        )
        assign_key(key=key, username="bob", actor=alice)
        [config] = as_bob.get("/api/v1/me/configs/").json()["results"]
        _install(as_bob, config["id"], "laptop", home, env)

        # A rotation reaches the device by itself: it stays up to date.
        key = rotate_key_secret(key=key, secret=NEW_SECRET, actor=alice)
        assert subprocess.run(helper, env=env, capture_output=True, text=True, timeout=30).stdout.strip() == NEW_SECRET
        [device] = as_bob.get("/api/v1/devices/").json()["results"]
        assert (device["has_current_secret"], device["needs_reinstall"]) == (True, False)
        assert as_alice.get("/api/v1/connections/", params={"state": "stale"}).json()["results"] == []
        key.refresh_from_db()
        assert devices.rollout(key) == {"live": 1, "current": 1, "reinstall": 0, "static": 0, "static_stale": 0}

        # Staff move TokenBay: the helper still fetches the key, but settings.json points at the old address.
        update_gateway(gateway=Gateway.objects.get(slug="tokenbay"), changes={"base_url": new.base_url}, actor=staff)
        fetched = subprocess.run(helper, env=env, capture_output=True, text=True, timeout=30)
        assert fetched.returncode == 0 and fetched.stdout.strip() == NEW_SECRET
        settings = json.loads((home / ".claude" / "settings.json").read_text())
        assert settings["env"]["ANTHROPIC_BASE_URL"] == old.base_url

        [device] = as_bob.get("/api/v1/devices/").json()["results"]
        assert device["state"] == "live" and device["has_current_secret"] is True  # it does fetch the present secret
        assert device["needs_reinstall"] is True
        [row] = as_alice.get("/api/v1/connections/", params={"state": "stale", "team": "web"}).json()["results"]
        assert (row["user"], row["live_devices"], row["live_devices_current"]) == ("bob", 1, 0)
        key.refresh_from_db()
        assert devices.rollout(key) == {"live": 1, "current": 0, "reinstall": 1, "static": 0, "static_stale": 0}
        assert [d.pk for d in Device.objects.live().needing_reinstall()] == [device["id"]]
        page = Client()
        page.force_login(bob)
        assert "run the install command again" in page.get("/devices/").content.decode()
        page.force_login(alice)
        assert "must run the install command again" in page.get(f"/keys/{key.id}/").content.decode()

        # Running the install command again (a new device) writes the new address: that one is current.
        _install(as_bob, config["id"], "laptop again", home, env)
        settings = json.loads((home / ".claude" / "settings.json").read_text())
        assert settings["env"]["ANTHROPIC_BASE_URL"] == new.base_url
        assert subprocess.run(helper, env=env, capture_output=True, text=True, timeout=30).stdout.strip() == NEW_SECRET
        listed = {d["name"]: d["needs_reinstall"] for d in as_bob.get("/api/v1/devices/").json()["results"]}
        assert listed == {"laptop": True, "laptop again": False}
        old_one = next(d for d in as_bob.get("/api/v1/devices/").json()["results"] if d["name"] == "laptop")
        assert as_bob.delete(f"/api/v1/devices/{old_one['id']}/").status_code == 204
        assert as_alice.get("/api/v1/connections/", params={"state": "stale"}).json()["results"] == []


@pytest.mark.django_db
def test_my_setup_tells_the_holder_their_download_predates_a_gateway_change(api, staff, bob, bob_assignment):
    as_bob = api(bob)
    assert as_bob.get(f"/api/v1/me/configs/{bob_assignment.id}/bash").status_code == 200
    [config] = as_bob.get("/api/v1/me/configs/").json()["results"]
    assert config["notice"] is None

    services.update_gateway(
        gateway=Gateway.objects.get(slug="tokenbay"), changes={"base_url": "https://eu.tokenbay.com"}, actor=staff
    )
    [row] = api(staff).get("/api/v1/connections/", params={"state": "stale"}).json()["results"]
    assert row["user"] == "bob"

    page = Client()
    page.force_login(bob)
    [notice] = page.get("/setup/").context["notices"]
    assert notice["kind"] == "changed"
    assert "Download it again" in notice["sentence"] and "run the install command again" in notice["sentence"]
    [config] = as_bob.get("/api/v1/me/configs/").json()["results"]
    assert config["notice"] == {"kind": "changed", "sentence": notice["sentence"]}

    # Downloading again clears it.
    assert as_bob.get(f"/api/v1/me/configs/{bob_assignment.id}/bash").status_code == 200
    assert page.get("/setup/").context["notices"] == []
    assert as_bob.get("/api/v1/me/configs/").json()["results"][0]["notice"] is None


@pytest.mark.django_db
def test_a_rotation_after_the_download_keeps_its_own_notice(api, alice, bob, bob_assignment):
    assert api(bob).get(f"/api/v1/me/configs/{bob_assignment.id}/bash").status_code == 200
    rotate_key_secret(key=bob_assignment.key, secret="sk-tb-rotated-0123456789abcdef", actor=alice)
    page = Client()
    page.force_login(bob)
    assert [n["kind"] for n in page.get("/setup/").context["notices"]] == ["rotated"]
    assert api(bob).get("/api/v1/me/configs/").json()["results"][0]["notice"]["kind"] == "rotated"
