"""Every figure the portal shows agrees with the list it summarises: dashboard, team page, connections, API."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from gateways.devices import create_device, fetch_key, install_device
from gateways.models import Assignment, GatewayKey, ProbeResult
from gateways.services import assign_key, revoke_key, rotate_key_secret, set_key_enabled, store_key
from portal.models import Membership, Role
from tests.conftest import make_user
from tests.gateways.test_dashboard import count_in, section

pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)


def key(team, gateway, label, actor, **fields) -> GatewayKey:
    secret = f"sk-count-{label.replace(' ', '-')}-0123456789"
    stored = store_key(team=team, gateway=gateway, label=label, secret=secret, actor=actor)
    if fields:
        GatewayKey.objects.filter(pk=stored.pk).update(**fields)
    return GatewayKey.objects.get(pk=stored.pk)


def csv_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def api_rows(client, url: str) -> list[dict]:
    rows = []
    while url:
        body = client.get(url).json()
        rows.extend(body["results"])
        url = body["next"]
    return rows


def live_device(assignment: Assignment, name: str) -> str:
    """A device installed for the assignment that has fetched the key once; returns its token."""
    _, code = create_device(assignment=assignment, name=name, platform="linux", actor=assignment.user)
    _, token = install_device(code=code, request=None, render=lambda device, token: token)
    fetch_key(raw_token=token, request=None)
    return token


# --- Assignments never downloaded -----------------------------------------------------------------


def test_dashboard_never_downloaded_total_matches_the_list_it_links_to(client, alice, bob, web, tokenbay):
    for n in range(21):
        assign_key(key=key(web, tokenbay, f"usable {n}", alice), username="bob", actor=alice)
    revoked = key(web, tokenbay, "revoked one", alice)
    assign_key(key=revoked, username="bob", actor=alice)
    revoke_key(key=revoked, actor=alice)
    disabled = key(web, tokenbay, "disabled one", alice)
    assign_key(key=disabled, username="bob", actor=alice)
    set_key_enabled(key=disabled, enabled=False, actor=alice)

    client.force_login(alice)
    html = client.get("/dashboard/").content.decode()
    link = re.search(r'href="(/connections/\?state=never_downloaded)"', section(html, "never_downloaded"))
    assert link, "the section links to all of them"
    listed = csv_rows(client.get(link.group(1) + "&export=csv"))
    # A key that no longer works has nothing to download: neither the count nor the list reminds its holder.
    assert count_in(html, "never_downloaded") == 21
    assert sorted(r["key_label"] for r in listed) == sorted(f"usable {n}" for n in range(21))


# --- Rotations not yet rolled out ---------------------------------------------------------------------


def test_a_holder_who_never_downloaded_is_not_pending_a_rollout(client, alice, bob, web, tokenbay):
    rotated = key(web, tokenbay, "rotated", alice)
    assign_key(key=rotated, username="bob", actor=alice)  # never downloaded: holds no secret at all
    rotate_key_secret(key=rotated, secret="sk-count-rotated-new-0123456789", actor=alice)

    client.force_login(alice)
    html = client.get("/dashboard/").content.decode()
    stale = csv_rows(client.get("/connections/?state=stale&export=csv"))
    key_page = client.get(f"/keys/{rotated.id}/").content.decode()
    assert "bob" in section(html, "never_downloaded")  # where he is counted
    assert stale == [] and "static copy" not in key_page
    assert count_in(html, "rollouts") == 0, section(html, "rollouts")


def test_a_static_copy_from_before_the_rotation_is_pending_though_a_live_device_is_current(
    client, alice, bob, web, tokenbay
):
    rotated = key(web, tokenbay, "rotated", alice)
    assignment = assign_key(key=rotated, username="bob", actor=alice)
    client.force_login(bob)
    assert client.get(f"/setup/{assignment.id}/bash").status_code == 200  # a static copy
    token = live_device(assignment, "bob laptop")
    rotate_key_secret(key=rotated, secret="sk-count-rotated-new-0123456789", actor=alice)
    fetch_key(raw_token=token, request=None)  # the live device now has the new secret

    client.force_login(alice)
    key_page = client.get(f"/keys/{rotated.id}/").content.decode()
    stale = csv_rows(client.get("/connections/?state=stale&export=csv"))
    html = client.get("/dashboard/").content.decode()
    assert "1 developer holds a static copy and must download again" in key_page
    assert [r["user"] for r in stale] == ["bob"]
    assert count_in(html, "rollouts") == 1
    assert "1 of 1" in section(html, "rollouts")

    client.force_login(bob)
    assert client.get(f"/setup/{assignment.id}/bash").status_code == 200  # downloads again: done
    client.force_login(alice)
    assert count_in(client.get("/dashboard/").content.decode(), "rollouts") == 0
    assert csv_rows(client.get("/connections/?state=stale&export=csv")) == []


# --- Failing keys -------------------------------------------------------------------------------------


def test_failing_keys_agree_between_dashboard_team_page_and_connections(client, api, alice, bob, web, tokenbay):
    probed = timezone.now() + timedelta(seconds=5)  # after the keys were stored
    failed = {"last_probe_verdict": "auth_failed", "last_probe_at": probed}
    usable = key(web, tokenbay, "failing usable", alice, **failed)
    key(web, tokenbay, "failing disabled", alice, is_enabled=False, **failed)
    key(web, tokenbay, "failing expired", alice, expires_at=probed - DAY, **failed)
    revoked = key(web, tokenbay, "failing revoked", alice, **failed)
    for k in GatewayKey.objects.all():
        assign_key(key=k, username="bob", actor=alice)
    revoke_key(key=revoked, actor=alice)

    client.force_login(alice)
    html = client.get("/dashboard/").content.decode()
    team = client.get("/teams/web/").content.decode()
    on_team_page = re.search(r'<section class="card" aria-label="Failing keys">.*?</section>', team, re.S).group(0)
    listed = csv_rows(client.get("/connections/?state=failing&export=csv"))
    from_api = api_rows(api(alice), "/api/v1/connections/?state=failing")
    # A disabled, expired or revoked key is not "failing": its state says more.
    assert count_in(html, "failing") == 1 and "failing usable" in section(html, "failing")
    assert on_team_page.count("<li>") == 1 and "failing usable" in on_team_page
    assert [r["key_label"] for r in listed] == [r["key_label"] for r in from_api] == ["failing usable"]
    assert list(GatewayKey.objects.failing()) == [usable]
    assert [k.label for k in GatewayKey.objects.all() if k.is_failing] == ["failing usable"]


def test_probing_a_disabled_key_does_not_make_it_fail_once_enabled_again(client, api, alice, web, tokenbay):
    now = timezone.now()
    k = key(
        web,
        tokenbay,
        "paused",
        alice,
        last_probe_verdict="ok",
        last_probe_at=now - timedelta(minutes=30),
        config_changed_at=now - timedelta(hours=1),
    )
    set_key_enabled(key=k, enabled=False, actor=alice)
    client.force_login(alice)
    page = client.post(f"/keys/{k.id}/probe/", HTTP_ACCEPT="application/json").json()
    from_api = api(alice).post(f"/api/v1/keys/{k.id}/probes/")
    assert page["verdict"] == from_api.json()["verdict"] == "refused"
    assert page["hint"] == "The key is disabled; the portal does not probe it, and its latest verdict stands."
    assert ProbeResult.objects.filter(key=k, verdict="refused").count() == 2  # in the key's history
    held = GatewayKey.objects.get(pk=k.pk)
    assert (held.last_probe_verdict, held.last_probe_at) == ("ok", k.last_probe_at)

    set_key_enabled(key=held, enabled=True, actor=alice)
    html = client.get("/dashboard/").content.decode()
    assert count_in(html, "failing") == 0, section(html, "failing")


# --- Connections rows show the verdict that counts -----------------------------------------------------


def test_a_row_shows_no_verdict_once_a_rotation_made_the_probe_stale(client, api, alice, bob, web, tokenbay):
    now = timezone.now()
    k = key(
        web,
        tokenbay,
        "was failing",
        alice,
        last_probe_verdict="auth_failed",
        last_probe_at=now - timedelta(minutes=30),
        config_changed_at=now - timedelta(hours=1),
    )
    assign_key(key=k, username="bob", actor=alice)
    rotate_key_secret(key=GatewayKey.objects.get(pk=k.pk), secret="sk-count-fixed-secret-0123456789", actor=alice)
    client.force_login(alice)
    rows = csv_rows(client.get("/connections/?export=csv"))
    page = client.get("/connections/").content.decode()
    api_row = api_rows(api(alice), "/api/v1/connections/")[0]
    assert csv_rows(client.get("/connections/?state=failing&export=csv")) == []
    assert "Failing keys" not in client.get("/teams/web/").content.decode()
    assert [r["latest_verdict"] for r in rows] == [""]  # as the key page shows it (current_probe_verdict)
    assert api_row["latest_verdict"] == ""
    assert 'data-verdict="auth_failed"' not in page
    # The key API keeps the raw last verdict, beside config_changed_at that says it no longer counts.
    assert api(alice).get(f"/api/v1/keys/{k.id}/").json()["last_probe_verdict"] == "auth_failed"


def test_sorting_by_verdict_sorts_by_the_verdict_the_rows_show(client, alice, bob, web, tokenbay):
    now = timezone.now()
    key(web, tokenbay, "probed ok", alice, last_probe_verdict="ok", last_probe_at=now + DAY)
    key(
        web,
        tokenbay,
        "stale timeout",
        alice,
        last_probe_verdict="timeout",
        last_probe_at=now - DAY,
        config_changed_at=now,
    )
    for k in GatewayKey.objects.all():
        assign_key(key=k, username="bob", actor=alice)
    client.force_login(alice)
    rows = csv_rows(client.get("/connections/?sort=verdict&export=csv"))
    assert [(r["key_label"], r["latest_verdict"]) for r in rows] == [("stale timeout", ""), ("probed ok", "ok")]
    rows = csv_rows(client.get("/connections/?sort=-verdict&export=csv"))
    assert [r["key_label"] for r in rows] == ["probed ok", "stale timeout"]


# --- Expired keys ---------------------------------------------------------------------------------------


def test_expired_filter_lists_only_expired_keys(client, alice, bob, web, tokenbay):
    past = timezone.now() - DAY
    expired = key(web, tokenbay, "expired", alice, expires_at=past)
    revoked = key(web, tokenbay, "revoked", alice, expires_at=past)
    disabled = key(web, tokenbay, "disabled", alice, expires_at=past)
    for k in (expired, revoked, disabled):
        assign_key(key=k, username="bob", actor=alice)
    revoke_key(key=revoked, actor=alice)
    set_key_enabled(key=disabled, enabled=False, actor=alice)
    client.force_login(alice)
    listed = csv_rows(client.get("/connections/?state=expired&export=csv"))
    assert [(r["key_label"], r["key_state"]) for r in listed] == [("expired", "expired")]


# --- The page, its CSV and the API list the same rows ---------------------------------------------------


def build_world(web, data_team, tokenbay, tokaify, alice, charlie, dave) -> None:
    """Keys in every state across two teams, assignments in every condition, devices live and not."""
    now = timezone.now()
    erin = make_user("erin")
    Membership.objects.create(team=data_team, user=erin, role=Role.MEMBER)
    Membership.objects.create(team=data_team, user=dave, role=Role.MEMBER)  # dave: auditor of web, member of data
    frank = make_user("frank")
    Membership.objects.create(team=web, user=frank, role=Role.MEMBER)
    keys = {
        "active": key(web, tokenbay, "active", alice),
        "disabled": key(web, tokenbay, "disabled", alice),
        "expired": key(web, tokaify, "expired", alice, expires_at=now - DAY),
        "soon": key(web, tokaify, "soon", alice, expires_at=now + 3 * DAY),
        "revoked": key(web, tokenbay, "revoked", alice),
        "rotated": key(web, tokenbay, "rotated", alice),
        "failing": key(web, tokaify, "failing", alice, last_probe_verdict="auth_failed", last_probe_at=now + DAY),
        "data1": key(data_team, tokenbay, "data one", charlie),
        "data2": key(data_team, tokaify, "data two", charlie, last_probe_verdict="timeout", last_probe_at=now + DAY),
    }
    made = []
    for k in keys.values():
        holders = ["erin", "dave"] if k.team == data_team else ["bob", "frank", "alice"]
        for holder in holders:
            made.append(assign_key(key=k, username=holder, actor=alice if k.team == web else charlie))
    for i, assignment in enumerate(made):  # downloads: some old, some recent, some never
        if i % 3 < 2:
            downloaded = now - (40 * DAY if i % 3 == 0 else DAY)
            Assignment.objects.filter(pk=assignment.pk).update(last_download_at=downloaded, last_download_format="bash")
    for assignment in made[1::4]:
        if assignment.key.state == "active":
            live_device(Assignment.objects.get(pk=assignment.pk), f"dev {assignment.pk}")
    rotate_key_secret(key=keys["rotated"], secret="sk-count-rotated-new-0123456789", actor=alice)
    set_key_enabled(key=keys["disabled"], enabled=False, actor=alice)
    revoke_key(key=keys["revoked"], actor=alice)


@pytest.mark.parametrize("state", ["", "never_downloaded", "stale", "failing", "expired"])
def test_connections_page_csv_and_api_list_the_same_rows_for_every_role(
    client, api, web, data_team, tokenbay, tokaify, alice, bob, charlie, dave, staff, state
):
    build_world(web, data_team, tokenbay, tokaify, alice, charlie, dave)
    for user in (alice, bob, charlie, dave, staff):
        client.force_login(user)
        page = client.get(f"/connections/?state={state}").content.decode()
        page_rows = len(re.findall(r"data-live-devices=", page))
        csv_ids = sorted(int(r["assignment"]) for r in csv_rows(client.get(f"/connections/?state={state}&export=csv")))
        api_client = api(user)
        api_ids = sorted(r["assignment"] for r in api_rows(api_client, f"/api/v1/connections/?state={state}"))
        api_csv = sorted(
            int(r["assignment"]) for r in csv_rows(api_client.get(f"/api/v1/connections/?state={state}&export=csv"))
        )
        assert page_rows == len(csv_ids) == len(api_ids), (user.username, page_rows, csv_ids, api_ids)
        assert csv_ids == api_ids == api_csv
