"""Live keys through the API: devices, their one-time install link, and the key endpoint their helper calls."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from config import api_urls
from gateways.devices import remove_device
from gateways.models import Device
from gateways.services import (
    assign_key,
    remove_assignment,
    revoke_key,
    rotate_key_secret,
    set_key_enabled,
    update_key_settings,
)
from portal.models import AccessToken, AuditEvent
from tests.conftest import TOKENBAY_SECRET

pytestmark = pytest.mark.django_db

KEY_URL = "/api/v1/device/key"
NEW_SECRET = "sk-tokenbay-rotated-0123456789abcdef"


def make_device(api, user, assignment, platform: str = "linux", name: str = "work laptop") -> dict:
    response = api(user).post(
        f"/api/v1/me/configs/{assignment.id}/devices/", {"name": name, "platform": platform}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def path_of(url: str) -> str:
    return urlsplit(url).path


def install(client, device: dict) -> str:
    """Use the install link like `curl | sh` does; return the device token the installer carries."""
    response = client.get(path_of(device["install_url"]))
    assert response.status_code == 200, response.content
    return re.search(r"(pkf_[0-9a-f]+_[\w-]+)", response.content.decode()).group(1)


def fetch(client, token: str, **headers):
    return client.get(KEY_URL, HTTP_AUTHORIZATION=f"Bearer {token}", **headers)


@pytest.fixture
def live_bob(api, client, bob, bob_assignment):
    """bob's device, installed: (device row, device token)."""
    made = make_device(api, bob, bob_assignment)
    token = install(client, made)
    return Device.objects.get(pk=made["id"]), token


def test_a_developer_makes_a_device_and_gets_a_one_time_install_command(api, bob, bob_assignment):
    before = timezone.now()
    for platform, command in (
        ("linux", "curl -fsSL -H 'Accept: text/x-shellscript' '{}' | sh"),
        ("macos", "curl -fsSL -H 'Accept: text/x-shellscript' '{}' | sh"),
        ("windows", "irm '{}' | iex"),
    ):
        response = api(bob).post(
            f"/api/v1/me/configs/{bob_assignment.id}/devices/", {"name": "pc", "platform": platform}, format="json"
        )
        assert response.status_code == 201
        body = response.json()
        assert set(body) == {"id", "name", "platform", "install_url", "install_command", "expires_at"}
        assert body["install_url"].startswith("http://testserver/api/v1/device/install/")
        assert body["install_command"] == command.format(body["install_url"])
        expires = Device.objects.get(pk=body["id"]).install_expires_at
        assert timedelta(minutes=14) < expires - before <= timedelta(minutes=15, seconds=5)
        assert response["Cache-Control"] == "no-store"
    assert AuditEvent.objects.filter(action="device.created", actor_username="bob").count() == 3


@pytest.mark.parametrize(
    ("payload", "field", "sentence"),
    [
        ({"name": " ", "platform": "linux"}, "name", "Name the device"),
        ({"name": "pc\nx", "platform": "linux"}, "name", "one line"),
        ({"name": "pc", "platform": "beos"}, "platform", "linux"),
        ({"name": "pc"}, "platform", "required"),
    ],
)
def test_a_device_needs_a_name_and_a_known_system(api, bob, bob_assignment, payload, field, sentence):
    response = api(bob).post(f"/api/v1/me/configs/{bob_assignment.id}/devices/", payload, format="json")
    assert response.status_code == 400
    assert sentence in response.json()["detail"]
    assert not Device.objects.exists()


def test_devices_are_made_only_for_ones_own_usable_configuration(api, alice, bob, dave, bob_assignment):
    assert (
        api(dave)
        .post(f"/api/v1/me/configs/{bob_assignment.id}/devices/", {"name": "x", "platform": "linux"}, format="json")
        .status_code
        == 404
    )
    revoke_key(key=bob_assignment.key, actor=alice)
    response = api(bob).post(
        f"/api/v1/me/configs/{bob_assignment.id}/devices/", {"name": "x", "platform": "linux"}, format="json"
    )
    assert response.status_code == 410  # as the download of the same configuration answers
    assert "revoked" in response.json()["detail"]
    assert not Device.objects.exists()


def test_the_install_link_answers_once_and_mints_the_token(api, client, bob, bob_assignment):
    made = make_device(api, bob, bob_assignment)
    first = client.get(path_of(made["install_url"]))
    assert first.status_code == 200
    assert first["Content-Type"] == "text/x-shellscript; charset=utf-8"
    assert first["Cache-Control"] == "no-store"
    assert TOKENBAY_SECRET not in first.content.decode()
    device = Device.objects.get(pk=made["id"])
    minted = device.token_lookup_id
    assert minted and device.installed_at and minted in first.content.decode()

    second = client.get(path_of(made["install_url"]))
    assert second.status_code == 410
    assert second.content.decode().startswith("This install link was already used on ")
    device.refresh_from_db()
    assert device.token_lookup_id == minted  # nothing new was minted
    assert AuditEvent.objects.filter(action="device.installed").count() == 1


def test_an_expired_link_mints_nothing(api, client, bob, bob_assignment):
    made = make_device(api, bob, bob_assignment)
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        response = client.get(path_of(made["install_url"]))
    assert response.status_code == 410
    assert "This install link expired at" in response.content.decode()
    assert Device.objects.get(pk=made["id"]).token_lookup_id is None


def test_a_link_for_a_removed_assignment_mints_nothing(api, client, alice, bob, bob_assignment, settings):
    settings.PORTAL_NAME = "Acme portal"
    made = make_device(api, bob, bob_assignment)
    remove_assignment(assignment=bob_assignment, actor=alice)
    response = client.get(path_of(made["install_url"]))
    assert response.status_code == 403
    assert response.content.decode() == (
        "The key 'Bob laptop' is no longer assigned to you in Acme portal; ask your team admin, then run the "
        "install command again from My set-up.\n"
    )
    assert Device.objects.get(pk=made["id"]).token_lookup_id is None


def test_a_made_up_or_altered_link_is_a_404(api, client, bob, bob_assignment):
    made = make_device(api, bob, bob_assignment)
    assert client.get("/api/v1/device/install/0123456789ab_nothing").status_code == 404
    altered = client.get(path_of(made["install_url"])[:-2] + "xx")
    assert altered.status_code == 404
    assert "not one the portal made" in altered.content.decode()
    assert Device.objects.get(pk=made["id"]).token_lookup_id is None


SH_ACCEPT = {"HTTP_ACCEPT": "text/x-shellscript"}  # what the documented `curl … | sh` sends


@pytest.mark.parametrize(
    ("accept", "who"),
    [
        ({}, "no Accept (PowerShell's irm)"),
        ({"HTTP_ACCEPT": "*/*"}, "plain curl"),
        ({"HTTP_ACCEPT": "text/html,application/xhtml+xml,*/*;q=0.8"}, "a browser"),
    ],
)
def test_a_refused_install_link_keeps_its_status_for_anyone_not_asking_for_a_script(
    api, client, bob, bob_assignment, accept, who
):
    """irm shows a 4xx body as its error and iex runs nothing; a script's `exit 1` would close the window."""
    made = make_device(api, bob, bob_assignment, platform="windows")
    install(client, made)
    again = client.get(path_of(made["install_url"]), **accept)
    assert again.status_code == 410, who
    assert again.content.decode().startswith("This install link was already used on ")
    assert "exit" not in again.content.decode() and again["Content-Type"] == "text/plain; charset=utf-8"
    assert "Accept" in again["Vary"]


def test_a_refused_install_link_answers_the_sh_command_a_script_that_says_why_and_fails(
    api, client, bob, bob_assignment
):
    made = make_device(api, bob, bob_assignment)
    install(client, made)
    again = client.get(path_of(made["install_url"]), **SH_ACCEPT)
    assert again.status_code == 200  # curl -f passes it on to sh
    assert again["Content-Type"] == "text/x-shellscript; charset=utf-8"
    assert again["Cache-Control"] == "no-store" and "Accept" in again["Vary"]
    script = again.content.decode()
    assert script.startswith("printf '%s\\n' 'This install link was already used on ")
    assert script.endswith("' >&2\nexit 1\n")
    for cut in ("/api/v1/device/install/0123456789ab_nothing", "/api/v1/device/install/"):
        unknown = client.get(cut, **SH_ACCEPT)
        assert unknown.status_code == 200 and "not one the portal made" in unknown.content.decode(), cut


def test_a_windows_device_gets_the_powershell_installer(api, client, bob, bob_assignment):
    made = make_device(api, bob, bob_assignment, platform="windows")
    response = client.get(path_of(made["install_url"]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    text = response.content.decode()
    assert "Invoke-RestMethod" in text and "apiKeyHelper" in text
    assert TOKENBAY_SECRET not in text


def test_the_key_endpoint_gives_the_plaintext_to_the_device_and_nobody_else(client, live_bob, api, bob):
    _, token = live_bob
    response = fetch(client, token)
    assert response.status_code == 200
    assert response.content.decode() == TOKENBAY_SECRET
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Cache-Control"] == "no-store"

    assert client.get(KEY_URL).status_code == 401
    assert fetch(client, token[:-3] + "abc").status_code == 401
    _, api_token = AccessToken.issue(bob)
    refused = fetch(client, api_token)
    assert refused.status_code == 401
    assert "personal access token" in refused.content.decode()
    client.force_login(bob)  # a browser session is not a device either
    assert client.get(KEY_URL).status_code == 401


PARAMETERS = {
    "slug": "web",
    "username": "bob",
    "format_name": "bash",
    "code": "x",
    "channel_id": "00000000-0000-4000-8000-000000000001",
}


def every_api_call():
    for pattern in api_urls.urlpatterns:
        route = str(pattern.pattern)
        if route.startswith("device/"):
            continue  # the device's own doors
        path = "/api/v1/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: PARAMETERS.get(m.group(1), "1"), route)
        for method in ("get", "post", "patch", "delete"):
            yield method, path


def test_a_device_token_can_do_nothing_but_fetch_its_key(live_bob, tokenbay_key):
    _, token = live_bob
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    answers = {
        (method, path): getattr(client, method)(path.replace("/keys/1/", f"/keys/{tokenbay_key.id}/"))
        for method, path in every_api_call()
    }
    assert len(answers) > 40
    wrong = {call: r.status_code for call, r in answers.items() if r.status_code not in (401, 403)}
    assert not wrong, wrong
    assert "device token" in answers[("get", "/api/v1/me/configs/")].json()["detail"]
    assert fetch(client, token).status_code == 200


REFUSED = {
    "revoked": "The key 'Bob laptop' was revoked in Acme portal; ask your team admin for a new key.",
    "disabled": "The key 'Bob laptop' is disabled in Acme portal by your team admin; Claude Code works again once it is enabled.",
    "unassigned": "The key 'Bob laptop' is no longer assigned to you in Acme portal; ask your team admin, then run the install command again from My set-up.",
}


@pytest.mark.parametrize("why", [*REFUSED, "expired", "removed"])
def test_a_refused_fetch_says_why_in_the_portals_words(client, live_bob, alice, bob_assignment, settings, why):
    settings.PORTAL_NAME = "Acme portal"
    device, token = live_bob
    key = bob_assignment.key
    if why == "revoked":
        revoke_key(key=key, actor=alice)
    elif why == "disabled":
        set_key_enabled(key=key, enabled=False, actor=alice)
    elif why == "unassigned":
        remove_assignment(assignment=bob_assignment, actor=alice)
    elif why == "expired":
        expires_at = timezone.now() + timedelta(hours=1)  # near midnight, that is tomorrow
        update_key_settings(key=key, changes={"expires_at": expires_at}, actor=alice)
    else:
        remove_device(device=device, actor=alice)
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        response = fetch(client, token)
    today = f"{timezone.localtime(expires_at).date() if why == 'expired' else timezone.localdate()}"
    expected = (
        REFUSED.get(why)
        or {
            "expired": f"The key 'Bob laptop' expired on {today} in Acme portal; ask your team admin to renew it.",
            "removed": f"This device was removed from Acme portal by alice on {today}; run the install command again from My set-up.",
        }[why]
    )
    assert response.status_code == 403
    assert response.content.decode() == expected + "\n"
    assert TOKENBAY_SECRET not in response.content.decode()
    refused = AuditEvent.objects.get(action="device.fetch_refused")
    assert refused.details["reason"] == why and refused.actor_username == "bob"


def test_a_refusal_is_audited_once_a_day_per_reason(client, live_bob, alice, bob_assignment):
    _, token = live_bob
    set_key_enabled(key=bob_assignment.key, enabled=False, actor=alice)
    for _ in range(5):
        assert fetch(client, token).status_code == 403
    assert AuditEvent.objects.filter(action="device.fetch_refused").count() == 1
    with time_machine.travel(timezone.now() + timedelta(days=1)):
        fetch(client, token)
    refused = AuditEvent.objects.filter(action="device.fetch_refused")
    assert refused.count() == 2
    # Each row names the key's team and gateway, read for it (the fetch's own read leaves them out).
    key = bob_assignment.key
    assert {(e.team_id, e.team_slug, e.gateway_slug) for e in refused} == {(key.team_id, "web", "tokenbay")}


def writes(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if not q["sql"].lstrip().upper().startswith("SELECT")]


def test_a_fetch_that_changes_nothing_writes_nothing(client, live_bob):
    device, token = live_bob
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        assert fetch(client, token).status_code == 200  # the first fetch: written and audited
    with time_machine.travel(now + timedelta(seconds=30), tick=False), CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert fetch(client, token).status_code == 200
    assert writes(queries) == []
    device.refresh_from_db()
    assert device.last_seen_at == now

    with time_machine.travel(now + timedelta(seconds=61), tick=False), CaptureQueriesContext(connection) as queries:
        fetch(client, token, HTTP_USER_AGENT="portal-key-helper/1 claude-cli/2.1.330")
    assert len([sql for sql in writes(queries) if sql.upper().startswith("UPDATE")]) == 1
    assert not [sql for sql in writes(queries) if "INSERT" in sql.upper()]  # no audit row for a plain refresh
    device.refresh_from_db()
    assert device.last_seen_at == now + timedelta(seconds=61)
    assert device.claude_version == "2.1.330" and device.last_seen_ip == "127.0.0.1"


def test_the_trail_gets_the_first_fetch_each_rotation_and_one_row_a_day(client, live_bob, alice, tokenbay_key):
    _, token = live_bob
    now = timezone.now().replace(hour=9)

    def fetched(moment) -> str:
        with time_machine.travel(moment, tick=False):
            response = fetch(client, token)
        assert response.status_code == 200
        return response.content.decode()

    def reasons() -> list[str]:
        return [e.details["reason"] for e in AuditEvent.objects.filter(action="device.key_fetched").order_by("id")]

    for minute in range(0, 300, 5):  # five hours of a helper re-run every five minutes
        fetched(now + timedelta(minutes=minute))
    assert reasons() == ["first"]
    with time_machine.travel(now + timedelta(hours=6), tick=False):
        rotate_key_secret(key=tokenbay_key, secret=NEW_SECRET, actor=alice)
    assert fetched(now + timedelta(hours=6, minutes=1)) == NEW_SECRET
    fetched(now + timedelta(hours=6, minutes=2))
    assert reasons() == ["first", "rotated"]
    for minute in range(0, 60, 5):
        fetched(now + timedelta(days=1, minutes=minute))
    assert reasons() == ["first", "rotated", "daily"]
    events = AuditEvent.objects.filter(action__startswith="device.")
    assert all(TOKENBAY_SECRET not in str(e.details) and NEW_SECRET not in str(e.details) for e in events)
    assert all(e.team_slug == "web" and e.gateway_slug == "tokenbay" for e in events)


def test_devices_list_own_and_the_teams_for_its_overseers(
    api, client, alice, bob, dave, charlie, bob_assignment, tokaify_key
):
    make_device(api, bob, bob_assignment, name="bob laptop")
    mine = assign_key(key=tokaify_key, username="alice", actor=alice)
    make_device(api, alice, mine, name="alice desktop")

    def names(user, query=""):
        response = api(user).get(f"/api/v1/devices/{query}")
        assert response.status_code == 200, response.content
        assert set(response.json()) == {"results", "next"}
        return sorted(d["name"] for d in response.json()["results"])

    assert names(bob) == ["bob laptop"]
    assert names(alice) == ["alice desktop"]
    assert names(alice, "?team=web") == names(dave, "?team=web") == ["alice desktop", "bob laptop"]
    assert names(charlie) == []
    assert api(bob).get("/api/v1/devices/?team=web").status_code == 403
    assert api(charlie).get("/api/v1/devices/?team=web").status_code == 404
    row = api(bob).get("/api/v1/devices/").json()["results"][0]
    assert {"id", "name", "platform", "assignment", "gateway", "last_seen", "revoked_at"} <= set(row)
    assert row["gateway"] == "tokenbay" and row["last_seen"] is None and row["assignment"] == bob_assignment.id


def test_the_owner_or_a_team_admin_removes_a_device_at_once(api, client, alice, bob, dave, charlie, live_bob):
    device, token = live_bob
    assert api(charlie).delete(f"/api/v1/devices/{device.id}/").status_code == 404
    assert api(dave).delete(f"/api/v1/devices/{device.id}/").status_code == 403
    assert fetch(client, token).status_code == 200
    assert api(alice).delete(f"/api/v1/devices/{device.id}/").status_code == 204
    refused = fetch(client, token)
    assert refused.status_code == 403
    assert "removed from the portal by alice" in refused.content.decode()
    assert AuditEvent.objects.filter(action="device.removed", actor_username="alice").count() == 1

    other = make_device(api, bob, device.assignment, name="second")
    assert api(bob).delete(f"/api/v1/devices/{other['id']}/").status_code == 204
    assert Device.objects.get(pk=other["id"]).revoked_by_username == "bob"


def test_removing_a_member_from_the_team_refuses_their_devices(api, client, alice, live_bob):
    _, token = live_bob
    assert api(alice).delete("/api/v1/teams/web/members/bob/").status_code == 204
    response = fetch(client, token)
    assert response.status_code == 403
    assert "no longer assigned to you" in response.content.decode()


def test_create_url_sits_beside_the_downloads_without_shadowing_them(api, bob, bob_assignment):
    assert reverse("api-config-devices", args=[bob_assignment.id]) == f"/api/v1/me/configs/{bob_assignment.id}/devices/"
    assert api(bob).get(f"/api/v1/me/configs/{bob_assignment.id}/bash").status_code == 200


def test_a_fetch_that_changes_nothing_costs_one_query(client, live_bob, django_assert_num_queries):
    _, token = live_bob
    fetch(client, token)  # the first fetch writes
    with django_assert_num_queries(1):
        assert fetch(client, token).content.decode() == TOKENBAY_SECRET


def test_a_fetch_minutes_after_the_last_costs_one_read_and_one_update(client, live_bob, django_assert_num_queries):
    """As a helper asks, every few minutes: the stamp is due, and is written in the same one statement each time."""
    device, token = live_bob
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        fetch(client, token)  # the first fetch: written and audited
    for minutes in (3, 6):
        with time_machine.travel(now + timedelta(minutes=minutes), tick=False), django_assert_num_queries(2) as queries:
            assert fetch(client, token).content.decode() == TOKENBAY_SECRET
        assert queries.captured_queries[1]["sql"].startswith("UPDATE")
        device.refresh_from_db()
        assert device.last_seen_at == now + timedelta(minutes=minutes)


def test_the_early_answered_key_fetch_keeps_the_host_check_and_the_https_redirect(client, live_bob, settings):
    """DeviceKeyMiddleware answers before the page machinery, yet ALLOWED_HOSTS and the HTTPS redirect hold."""
    _, token = live_bob
    assert reverse("api-device-key") == "/api/v1/device/key"  # the path the middleware answers
    response = fetch(client, token)
    assert response.status_code == 200 and not response.cookies
    assert "Cookie" not in response.get("Vary", "")
    assert fetch(client, token, HTTP_HOST="evil.example").status_code == 400
    settings.SECURE_SSL_REDIRECT = True
    redirected = fetch(Client(), token)  # a new handler: SecurityMiddleware reads the setting when it starts
    assert redirected.status_code == 301 and redirected["Location"].startswith("https://")


def test_a_retried_install_link_request_leaves_one_link_waiting(api, client, bob, bob_assignment):
    """The answer to the first POST was lost: the retry's link is the one that works, and one device is listed."""
    lost = make_device(api, bob, bob_assignment)
    kept = make_device(api, bob, bob_assignment)
    waiting = Device.objects.filter(assignment=bob_assignment, revoked_at__isnull=True)
    assert list(waiting.values_list("pk", flat=True)) == [kept["id"]]
    refused = client.get(path_of(lost["install_url"]))
    assert refused.status_code == 410 and "replaced" in refused.content.decode()
    install(client, kept)
    [replaced] = AuditEvent.objects.filter(action="device.removed")
    assert replaced.details["device"] == lost["id"]
    assert replaced.details["reason"] == "replaced by a new install link of the same name before it was used"
    # An installed device is never replaced: a second laptop of the same name is a device of its own.
    make_device(api, bob, bob_assignment)
    assert Device.objects.filter(assignment=bob_assignment, revoked_at__isnull=True).count() == 2
