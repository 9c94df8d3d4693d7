"""The dashboard (what needs a team admin's attention) and the notices on a developer's My set-up."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from gateways.devices import create_device, fetch_key, install_device
from gateways.models import Assignment, GatewayKey
from gateways.services import assign_key, rotate_key_secret, set_key_enabled, store_key, update_key_settings
from portal.models import Membership, Role

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def section(html: str, slug: str) -> str:
    """The HTML of one dashboard section."""
    match = re.search(rf'<section[^>]*data-section="{slug}".*?</section>', html, re.S)
    assert match, f"no {slug} section"
    return match.group(0)


def count_in(html: str, slug: str) -> int:
    return int(re.search(r"data-count>(\d+)<", section(html, slug)).group(1))


def key(team, gateway, label: str, actor, **fields) -> GatewayKey:
    stored = store_key(
        team=team, gateway=gateway, label=label, secret=f"sk-dash-{label.replace(' ', '-')}-0123456789", actor=actor
    )
    if "last_probe_at" in fields:  # a probe of this secret: no earlier than the secret was stored
        fields.setdefault("config_changed_at", min(fields["last_probe_at"], stored.config_changed_at))
    if fields:
        GatewayKey.objects.filter(pk=stored.pk).update(**fields)
    return GatewayKey.objects.get(pk=stored.pk)


def test_each_section_lists_what_needs_attention_and_links_to_the_key(client, alice, bob, web, tokenbay, tokaify):
    now = timezone.now()
    failing = key(web, tokenbay, "failing one", alice, last_probe_verdict="auth_failed", last_probe_at=now)
    key(web, tokenbay, "passing one", alice, last_probe_verdict="ok", last_probe_at=now)
    expiring = key(web, tokenbay, "expiring one", alice, expires_at=now + 5 * DAY)
    key(web, tokenbay, "later one", alice, expires_at=now + 60 * DAY)
    unused = key(web, tokaify, "unused one", alice, created_at=now - 40 * DAY)
    used = key(web, tokaify, "used one", alice, created_at=now - 40 * DAY)
    Assignment.objects.filter(pk=assign_key(key=used, username="bob", actor=alice).pk).update(
        last_download_at=now - DAY
    )
    rotated = key(web, tokaify, "rotated one", alice)
    holder = assign_key(key=rotated, username="alice", actor=alice)
    Assignment.objects.filter(pk=holder.pk).update(last_download_at=now - DAY)
    rotate_key_secret(key=rotated, secret="sk-dash-rotated-new-0123456789", actor=alice)

    client.force_login(alice)
    assert client.get("/")["Location"] == "/dashboard/"
    html = client.get("/dashboard/").content.decode()
    assert f'href="/keys/{failing.id}/">failing one' in section(html, "failing")
    assert "passing one" not in section(html, "failing")
    assert f'href="/keys/{expiring.id}/">expiring one' in section(html, "expiring")
    assert "later one" not in section(html, "expiring")
    assert f'href="/keys/{unused.id}/">unused one' in section(html, "unused")
    assert "used one" not in section(html, "unused").replace("unused one", "")
    never = section(html, "never_downloaded")
    assert "rotated one" not in never and count_in(html, "never_downloaded") == 0  # every holder downloaded
    rollout = section(html, "rollouts")
    assert f'href="/keys/{rotated.id}/">rotated one' in rollout and "1 of 1" in rollout

    # The holder downloads again: the rollout is complete.
    Assignment.objects.filter(pk=holder.pk).update(last_download_at=timezone.now() + timedelta(seconds=1))
    assert count_in(client.get("/dashboard/").content.decode(), "rollouts") == 0


def test_never_downloaded_assignments_until_the_first_download(client, alice, bob, bob_assignment):
    client.force_login(alice)
    assert "bob" in section(client.get("/dashboard/").content.decode(), "never_downloaded")
    client.force_login(bob)
    client.get(f"/setup/{bob_assignment.id}/bash")
    client.force_login(alice)
    assert count_in(client.get("/dashboard/").content.decode(), "never_downloaded") == 0


def test_a_holder_whose_device_fetches_live_is_neither_never_downloaded_nor_behind_a_rotation(
    client, alice, bob, bob_assignment, tokenbay_key
):
    _, code = create_device(assignment=bob_assignment, name="bob laptop", platform="linux", actor=bob)
    _, token = install_device(code=code, request=None, render=lambda device, token: token)
    client.force_login(alice)
    html = client.get("/dashboard/").content.decode()
    assert "bob" in section(html, "never_downloaded")  # installed, but its helper has not asked for the key yet

    fetch_key(raw_token=token, request=None)
    html = client.get("/dashboard/").content.decode()
    assert count_in(html, "never_downloaded") == 0

    rotate_key_secret(key=tokenbay_key, secret="sk-tokenbay-rotated-0123456789", actor=alice)
    html = client.get("/dashboard/").content.decode()
    assert "Bob laptop" in section(html, "rollouts")  # the device still holds the old secret
    fetch_key(raw_token=token, request=None)
    html = client.get("/dashboard/").content.decode()
    assert count_in(html, "rollouts") == 0


def test_the_dashboard_shows_only_the_teams_one_administers(client, alice, charlie, staff, web, data_team, tokenbay):
    now = timezone.now()
    key(web, tokenbay, "web failing", alice, last_probe_verdict="timeout", last_probe_at=now)
    key(data_team, tokenbay, "data failing", charlie, last_probe_verdict="timeout", last_probe_at=now)
    client.force_login(charlie)
    html = client.get("/dashboard/").content.decode()
    assert "data failing" in html and "web failing" not in html
    client.force_login(staff)
    html = client.get("/dashboard/").content.decode()
    assert "data failing" in html and "web failing" in html


def test_members_and_auditors_keep_my_set_up_as_home(client, bob, dave):
    for user in (bob, dave):
        client.force_login(user)
        assert client.get("/")["Location"] == "/setup/"
        response = client.get("/dashboard/")
        assert response.status_code == 403 and "for team admins and staff" in response.content.decode()


def populate(team, gateway, admin, holder, count: int, start: int) -> None:
    """`count` rows in every section of the dashboard."""
    now = timezone.now()
    for n in range(start, start + count):
        key(team, gateway, f"failing {n}", admin, last_probe_verdict="auth_failed", last_probe_at=now)
        key(team, gateway, f"expiring {n}", admin, expires_at=now + 3 * DAY)
        key(team, gateway, f"unused {n}", admin, created_at=now - 90 * DAY)
        never = key(team, gateway, f"never {n}", admin)
        assign_key(key=never, username=holder.username, actor=admin)
        rotated = key(team, gateway, f"rotated {n}", admin)
        assignment = assign_key(key=rotated, username=admin.username, actor=admin)
        Assignment.objects.filter(pk=assignment.pk).update(last_download_at=now - DAY)
        rotate_key_secret(key=rotated, secret=f"sk-dash-rotated-anew-{n}-0123456789", actor=admin)


def test_the_dashboard_costs_the_same_queries_at_any_size(
    client, alice, bob, web, tokenbay, django_assert_max_num_queries
):
    client.force_login(alice)
    populate(web, tokenbay, alice, bob, 1, 0)
    with django_assert_max_num_queries(14):
        html = client.get("/dashboard/").content.decode()
    assert count_in(html, "failing") == 1
    populate(web, tokenbay, alice, bob, 30, 1)
    with django_assert_max_num_queries(14):  # the same bound, thirty times the rows
        html = client.get("/dashboard/").content.decode()
    assert count_in(html, "failing") == 31 and count_in(html, "rollouts") == 31
    assert "11 more" in section(html, "failing")  # 20 rows shown, the rest counted


# --- My set-up: what a developer must know about the keys they hold -------------------------------


def notices(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-notice="(\w+)"[^>]*>(.*?)</p>', html, re.S))


def test_a_holder_sees_a_rotation_after_their_download_with_a_link_to_download_again(
    client, alice, bob, bob_assignment, tokenbay_key
):
    client.force_login(bob)
    client.get(f"/setup/{bob_assignment.id}/zsh")
    assert notices(client.get("/setup/").content.decode()) == {}
    rotate_key_secret(key=tokenbay_key, secret="sk-tokenbay-rotated-0123456789", actor=alice)
    shown = notices(client.get("/setup/").content.decode())
    assert "was rotated on" in shown["rotated"] and "after your last download" in shown["rotated"]
    assert f'href="/setup/{bob_assignment.id}/zsh"' in shown["rotated"]
    client.get(f"/setup/{bob_assignment.id}/zsh")
    assert "rotated" not in notices(client.get("/setup/").content.decode())


def test_a_holder_sees_a_disabled_a_revoked_and_an_expiring_key(client, alice, bob, web, tokenbay, tokaify):
    disabled = store_key(team=web, gateway=tokenbay, label="Off", secret="sk-off-0123456789abcdef", actor=alice)
    expiring = store_key(team=web, gateway=tokaify, label="Soon", secret="sk-soon-0123456789abcdef", actor=alice)
    for k in (disabled, expiring):
        assign_key(key=k, username="bob", actor=alice)
    set_key_enabled(key=disabled, enabled=False, actor=alice)
    update_key_settings(key=expiring, changes={"expires_at": timezone.now() + 3 * DAY}, actor=alice)
    client.force_login(bob)
    html = client.get("/setup/").content.decode()
    shown = notices(html)
    assert "Off is disabled by your team admin" in shown["disabled"]
    assert "Soon expires on" in shown["expiring"]
    assert 'data-notice="disabled" role="alert"' in html


def test_nothing_is_shown_for_a_key_that_is_fine(client, bob, bob_assignment):
    client.force_login(bob)
    assert notices(client.get("/setup/").content.decode()) == {}


def test_team_admin_role_counts_in_every_team(client, bob, data_team):
    Membership.objects.create(team=data_team, user=bob, role=Role.ADMIN)
    client.force_login(bob)
    assert client.get("/")["Location"] == "/dashboard/"
