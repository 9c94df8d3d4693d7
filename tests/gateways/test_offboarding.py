"""Offboarding (team admins and staff) and the staff user list."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from gateways.models import Assignment
from portal.models import AccessToken, AuditEvent, Membership, Role
from portal.two_factor import start_enrolment
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def token_for(user) -> str:
    _, raw = AccessToken.issue(user, name="laptop")
    return raw


def api_status(raw: str, url: str = "/api/v1/me/configs/") -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client.get(url).status_code


def downloaded(assignment, raw: str) -> None:
    """Bob fetches his bash snippet: from then on the key's secret is on his machine."""
    assert api_status(raw, f"/api/v1/me/configs/{assignment.id}/bash") == 200


def test_staff_offboarding_leaves_no_token_no_assignment_and_one_event(client, staff, bob, bob_assignment, tokaify_key):
    raw = token_for(bob)
    downloaded(bob_assignment, raw)
    Assignment.objects.create(key=tokaify_key, user=bob)  # assigned, never downloaded: no static copy
    bob_browser = client.__class__()
    bob_browser.force_login(bob)

    client.force_login(staff)
    plan = client.get("/users/bob/offboard/").content.decode()
    assert "The account is deactivated" in plan and "Bob laptop" in plan and "Rotate now" in plan
    assert get_user_model().objects.get(username="bob").is_active  # looking changes nothing

    before = AuditEvent.objects.order_by("-id").first().id
    done = client.post("/users/bob/offboard/", follow=True)
    page = done.content.decode()
    assert done.status_code == 200 and "Offboarded bob" in page
    assert f'href="/keys/{bob_assignment.key_id}/rotate/"' in page
    assert f'data-static-copy="{tokaify_key.id}"' not in page

    bob.refresh_from_db()
    assert not bob.is_active
    assert api_status(raw) == 401
    assert not Assignment.objects.filter(user=bob).exists()
    assert not Membership.objects.filter(user=bob).exists()
    assert bob_browser.get("/setup/").status_code == 302  # the open session ended

    [event] = AuditEvent.objects.filter(id__gt=before, action="account.offboarded")  # every consequence
    [left] = AuditEvent.objects.filter(id__gt=before, action="member.removed")  # in the team's own trail
    assert (left.team_slug, left.target, left.details["via"]) == ("web", "bob", "account.offboarded")
    assert sorted(left.details["assignments_removed"]) == sorted(
        f"web/{k.short_fingerprint}" for k in (bob_assignment.key, tokaify_key)
    )
    assert (event.action, event.target, event.actor_username) == ("account.offboarded", "bob", "staff")
    token = AccessToken.objects.get(user=bob)
    assert event.details["deactivated"] is True
    assert event.details["tokens_revoked"] == [token.lookup_id]
    assert event.details["teams_left"] == ["web"]
    assert sorted(event.details["assignments_removed"]) == sorted(
        f"web/{k.short_fingerprint}" for k in (bob_assignment.key, tokaify_key)
    )
    assert [c["key"] for c in event.details["static_copies"]] == [bob_assignment.key.short_fingerprint]


def test_a_team_admin_offboards_a_member_from_the_team(client, alice, bob, bob_assignment):
    raw = token_for(bob)
    downloaded(bob_assignment, raw)
    client.force_login(alice)
    assert 'href="/teams/web/members/bob/offboard/"' in client.get("/teams/web/").content.decode()
    page = client.post("/teams/web/members/bob/offboard/", follow=True).content.decode()
    assert "Offboarded bob from Web" in page and "Rotate now" in page
    assert not Membership.objects.filter(user=bob).exists()
    assert not Assignment.objects.filter(user=bob).exists()
    assert api_status(raw) == 401  # no team left to him, so his tokens go too
    assert get_user_model().objects.get(username="bob").is_active  # the account itself is staff's to close
    event = AuditEvent.objects.get(action="member.offboarded")
    assert event.team_slug == "web" and event.details["deactivated"] is False
    assert event.details["tokens_revoked"] and event.details["static_copies"]


def test_a_member_of_another_team_keeps_account_tokens(client, alice, bob, bob_assignment, data_team):
    Membership.objects.create(team=data_team, user=bob, role=Role.MEMBER)
    raw = token_for(bob)
    client.force_login(alice)
    page = client.post("/teams/web/members/bob/offboard/", follow=True).content.decode()
    assert "kept: bob is in another team" in page
    assert not Assignment.objects.filter(user=bob).exists()
    assert api_status(raw) == 200
    assert AuditEvent.objects.get(action="member.offboarded").details["tokens_revoked"] == []


def test_offboarding_is_for_admins_and_staff_only(client, bob, dave, charlie, alice):
    for user, url, status in [
        (bob, "/teams/web/members/dave/offboard/", 403),
        (dave, "/teams/web/members/bob/offboard/", 403),
        (charlie, "/teams/web/members/bob/offboard/", 404),
        (alice, "/users/bob/offboard/", 403),
    ]:
        client.force_login(user)
        assert client.post(url).status_code == status, (user, url)
    assert Membership.objects.filter(user=bob).exists() and Membership.objects.filter(user=dave).exists()
    assert not AuditEvent.objects.filter(action__endswith="offboarded").exists()


def test_nobody_offboards_themselves_and_the_last_admin_stays(client, alice, staff):
    client.force_login(alice)
    page = client.post("/teams/web/members/alice/offboard/", follow=True).content.decode()
    assert "cannot offboard yourself" in page
    client.force_login(staff)
    client.post("/teams/web/members/alice/offboard/")
    assert Membership.objects.filter(user=alice).exists()  # the team's last admin
    assert not AuditEvent.objects.filter(action="member.offboarded").exists()


def test_staff_user_list_searches_filters_and_shows_teams_sign_in_and_2fa(client, staff, alice, bob):
    gone = make_user("zed")
    gone.is_active = False
    gone.save()
    start_enrolment(alice).__class__.objects.filter(user=alice).update(confirmed=True)
    client.force_login(staff)
    page = client.get("/users/").content.decode()
    assert 'data-user="alice"' in page and 'data-user="bob"' in page and 'data-user="zed"' not in page
    alice_row = page.split('data-user="alice"')[1].split("</tr>")[0]
    assert "web</a> (admin)" in alice_row and '<span class="badge good">on</span>' in alice_row
    bob_row = page.split('data-user="bob"')[1].split("</tr>")[0]
    assert "never" in bob_row and "off" in bob_row
    staff_row = page.split('data-user="staff"')[1].split("</tr>")[0]
    assert "never" not in staff_row  # force_login records the sign-in

    searched = client.get("/users/?q=ALI").content.decode()
    assert 'data-user="alice"' in searched and 'data-user="bob"' not in searched
    inactive = client.get("/users/?state=inactive").content.decode()
    assert 'data-user="zed"' in inactive and 'data-user="alice"' not in inactive
    odd = client.get("/users/?state=weird&page=%C2%B2")
    assert odd.status_code == 200 and "state must be one of" in odd.content.decode()


def test_only_staff_see_the_user_list(client, alice):
    client.force_login(alice)
    assert client.get("/users/").status_code == 403
    assert "/users/" not in client.get("/teams/").content.decode().split("<main>")[0]


def test_staff_offboarding_a_teams_last_admin_says_which_teams_have_none(client, staff, alice, bob, data_team, charlie):
    Membership.objects.create(team=data_team, user=alice, role=Role.ADMIN)  # data keeps charlie as its admin
    client.force_login(staff)
    plan = client.get("/users/alice/offboard/").content.decode()
    assert "alice is the last admin of these teams, which will have none" in plan
    assert 'href="/teams/web/"' in plan.split("data-leaderless", 1)[1].split("</p>", 1)[0]
    assert 'href="/teams/data/"' not in plan.split("data-leaderless", 1)[1].split("</p>", 1)[0]

    page = client.post("/users/alice/offboard/", follow=True).content.decode()
    assert "These teams have no admin now" in page
    event = AuditEvent.objects.get(action="account.offboarded", target="alice")
    assert event.details["teams_without_admin"] == ["web"]


def test_a_team_with_another_admin_is_not_named_as_left_without_one(client, staff, alice, bob):
    Membership.objects.filter(user=bob, team__slug="web").update(role=Role.ADMIN)
    client.force_login(staff)
    assert "data-leaderless" not in client.get("/users/alice/offboard/").content.decode()
    client.post("/users/alice/offboard/")
    assert AuditEvent.objects.get(action="account.offboarded").details["teams_without_admin"] == []


def test_each_team_an_offboarded_account_leaves_reads_it_in_its_own_trail(api, staff, alice, bob, dave, web):
    """Staff offboard web's only admin and a member: web's auditor, and ?team=web, find both."""

    def leaving(client, **query) -> set[str]:
        rows = client.get("/api/v1/audit-events/", query).json()["results"]
        return {row["target"] for row in rows if row["action"] == "member.removed"}

    client = Client()
    client.force_login(staff)
    client.post("/users/alice/offboard/")
    client.post("/users/bob/offboard/")
    assert leaving(api(dave)) == {"alice", "bob"}
    assert leaving(api(staff), team="web") == {"alice", "bob"}
    alice_left = AuditEvent.objects.get(action="member.removed", target="alice")
    assert alice_left.details["left_without_admin"] is True and alice_left.details["role"] == "admin"


def _leave(way_out: str, *, web, user, alice, staff) -> None:
    """Take `user` out of web one of the ways a member leaves a team."""
    from gateways.offboarding import for_account, for_member, offboard
    from portal.oidc import sync_memberships
    from portal.services import remove_member

    if way_out == "removed":
        remove_member(membership=Membership.objects.get(team=web, user=user), actor=alice)
    elif way_out == "team_offboarded":
        offboard(for_member(web, user), actor=alice)
    elif way_out == "account_offboarded":
        offboard(for_account(user), actor=staff)
    else:  # SSO groups: no longer in web's group at their sign-in
        sync_memberships(None, user, set())


@pytest.mark.parametrize("way_out", ["removed", "team_offboarded", "account_offboarded", "sso_groups"])
def test_a_leavers_assignment_removed_row_names_their_static_copy_as_an_unassignments_does(
    staff, alice, bob, web, tokenbay_key, tokaify_key, way_out
):
    """The key's trail names the copy a holder left with, whether the key was taken back from them alone or with
    everything else when they left; and copies_out still counts each person once."""
    from gateways.devices import copies_out
    from gateways.services import assign_key, deliver_config, remove_assignment

    web.sso_member_group = "web-devs"
    web.save()
    erin = make_user("erin")
    Membership.objects.create(team=web, user=erin, role=Role.MEMBER, via_sso=True)  # joined through web-devs
    for user in (bob, erin):
        deliver_config(assignment=assign_key(key=tokenbay_key, username=user.username, actor=alice), format_name="bash")
    assign_key(key=tokaify_key, username="erin", actor=alice)  # assigned, never downloaded: no copy

    remove_assignment(assignment=Assignment.objects.get(key=tokenbay_key, user=bob), actor=alice)
    _leave(way_out, web=web, user=erin, alice=alice, staff=staff)

    copy = {"id": str(tokenbay_key.pk), "team": "web", "key": tokenbay_key.short_fingerprint, "label": "Bob laptop"}
    removed = {
        (row.details["user"], row.details["key_id"]): row.details
        for row in AuditEvent.objects.filter(action="assignment.removed")
    }
    assert removed[("bob", str(tokenbay_key.pk))]["static_copies"] == [copy]  # an unassignment's row
    assert removed[("erin", str(tokenbay_key.pk))]["static_copies"] == [copy]
    assert "static_copies" not in removed[("erin", str(tokaify_key.pk))]
    # Erin's copy is named by her leaving row and by the key's row: one developer, as is bob.
    assert copies_out(tokenbay_key) == 2
    assert copies_out(tokaify_key) == 0


def test_an_offboardings_static_copies_name_each_key_by_its_id(staff, bob, bob_assignment):
    """A rotation changes the fingerprint the offboarding row names the key by; its id stays."""
    from gateways.offboarding import for_account, offboard
    from gateways.services import deliver_config

    deliver_config(assignment=bob_assignment, format_name="bash")
    key = bob_assignment.key
    consequences = offboard(for_account(bob), actor=staff)
    expected = {
        "id": str(key.pk),
        "team": "web",
        "key": key.short_fingerprint,
        "label": key.label,
        "masked": key.masked,
    }
    assert consequences["static_copies"] == [expected]
    assert AuditEvent.objects.get(action="account.offboarded").details["static_copies"] == [expected]
