"""The pages of live keys: Install on a new device (My set-up), My devices, the key page's rollout, Connections."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from gateways.devices import create_device, fetch_key, install_device
from gateways.models import Device
from gateways.services import assign_key, record_config_fetch, rotate_key_secret

pytestmark = pytest.mark.django_db

NEW_SECRET = "sk-tokenbay-rotated-0123456789abcdef"


def live_device(assignment, name: str) -> tuple[Device, str]:
    """A device installed and fetching, as its installer and helper would leave it."""
    device, code = create_device(assignment=assignment, name=name, platform="linux", actor=assignment.user)
    device, token = install_device(code=code, request=None, render=lambda d, t: t)
    fetch_key(raw_token=token, request=None)
    return device, token


def test_setup_offers_the_live_install_first_and_keeps_the_static_snippets(client, bob, bob_assignment):
    client.force_login(bob)
    page = client.get("/setup/", HTTP_USER_AGENT="Mozilla/5.0 (Windows NT 10.0; Win64; x64)").content.decode()
    live, static = page.index("Install on a new device"), page.index("Without the portal (static key)")
    assert live < static < page.index("export ANTHROPIC_AUTH_TOKEN")
    assert f'action="/setup/{bob_assignment.id}/devices/"' in page
    assert '<option value="windows" selected>' in page


def test_making_a_device_shows_its_command_once(client, bob, bob_assignment):
    client.force_login(bob)
    response = client.post(
        f"/setup/{bob_assignment.id}/devices/", {"name": "work laptop", "platform": "macos"}, follow=True
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    text = response.content.decode()
    command = re.search(
        r"curl -fsSL -H &#x27;Accept: text/x-shellscript&#x27; &#x27;(http://testserver/api/v1/device/install/[\w-]+)&#x27; \| sh",
        text,
    )
    assert command, text
    device = Device.objects.get(name="work laptop")
    assert device.user == bob and device.platform == "macos" and device.installed_at is None
    assert client.get(command.group(1).removeprefix("http://testserver")).status_code == 200


def test_a_device_form_error_is_a_sentence_on_my_setup(client, bob, bob_assignment, dave):
    client.force_login(bob)
    response = client.post(f"/setup/{bob_assignment.id}/devices/", {"name": "", "platform": "linux"}, follow=True)
    assert "This field is required" in response.content.decode()
    assert not Device.objects.exists()
    client.force_login(dave)
    assert client.post(f"/setup/{bob_assignment.id}/devices/", {"name": "x", "platform": "linux"}).status_code == 404


def test_my_devices_lists_ones_own_and_removes_at_once(client, bob, dave, alice, bob_assignment, tokaify_key):
    mine, _ = live_device(bob_assignment, "bob laptop")
    theirs, _ = live_device(assign_key(key=tokaify_key, username="dave", actor=alice), "dave desktop")
    client.force_login(bob)
    page = client.get("/devices/").content.decode()
    assert "bob laptop" in page and "dave desktop" not in page
    assert f'action="/devices/{mine.id}/remove/"' in page
    assert client.post(f"/devices/{theirs.id}/remove/").status_code == 404
    response = client.post(f"/devices/{mine.id}/remove/", {"next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == "/devices/"
    mine.refresh_from_db()
    assert mine.revoked_at and mine.revoked_by == bob
    assert "removed by bob" in client.get("/devices/").content.decode()


def test_an_auditor_sees_devices_on_the_key_page_but_cannot_remove_them(client, dave, alice, bob_assignment):
    device, _ = live_device(bob_assignment, "bob laptop")
    client.force_login(dave)
    page = client.get(f"/keys/{bob_assignment.key_id}/").content.decode()
    assert "bob laptop" in page and f"/devices/{device.id}/remove/" not in page
    assert client.post(f"/devices/{device.id}/remove/").status_code == 403
    client.force_login(alice)
    assert f"/devices/{device.id}/remove/" in client.get(f"/keys/{bob_assignment.key_id}/").content.decode()
    assert client.post(f"/devices/{device.id}/remove/", {"next": f"/keys/{bob_assignment.key_id}/"}).status_code == 302
    assert Device.objects.get(pk=device.pk).revoked_by == alice


def test_the_key_page_shows_the_rotation_rollout(client, alice, bob, dave, bob_assignment, tokenbay_key):
    _, first_token = live_device(bob_assignment, "bob laptop")
    live_device(bob_assignment, "bob desktop")
    daves = assign_key(key=tokenbay_key, username="dave", actor=alice)
    record_config_fetch(assignment=daves, format_name="bash")  # dave holds a static copy
    rotate_key_secret(key=tokenbay_key, secret=NEW_SECRET, actor=alice)
    assert fetch_key(raw_token=first_token, request=None) == NEW_SECRET  # one device picked it up

    client.force_login(alice)
    page = client.get(f"/keys/{tokenbay_key.id}/").content.decode()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page))
    assert "1 of 2 live devices has the new secret; 1 developer holds a static copy and must download again." in text
    assert re.search(r"bob laptop.*?fetched", text) and re.search(r"bob desktop.*?not yet", text)


def test_connections_show_each_developers_live_devices(client, alice, bob_assignment, api):
    device, _ = live_device(bob_assignment, "bob laptop")
    client.force_login(alice)
    page = client.get("/connections/").content.decode()
    assert 'data-live-devices="1"' in page and "bob laptop" in page and "new secret" in page
    row = api(alice).get("/api/v1/connections/").json()["results"][0]
    assert (row["live_devices"], row["live_devices_current"]) == (1, 1)
    Device.objects.filter(pk=device.pk).update(revoked_at=timezone.now())
    row = api(alice).get("/api/v1/connections/").json()["results"][0]
    assert (row["live_devices"], row["live_devices_current"]) == (0, 0)


def test_the_admin_shows_devices_without_their_token_or_install_code(client, bob_assignment, django_user_model):
    device, token = live_device(bob_assignment, "bob laptop")
    device.refresh_from_db()
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pass-root")
    client.force_login(root)
    pages = [client.get("/admin/gateways/device/"), client.get(f"/admin/gateways/device/{device.id}/change/")]
    for page in pages:
        assert page.status_code == 200
        text = page.content.decode()
        assert "bob laptop" in text
        for secret in (token, device.token_digest, device.install_digest, device.token_lookup_id):
            assert secret not in text
