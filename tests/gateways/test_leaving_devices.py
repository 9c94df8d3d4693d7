"""What someone leaving keeps of live keys and tokens: deactivated owners' devices, offboarding twice at once,
and an install link asked for while the assignment is being removed."""

from __future__ import annotations

import re

import pytest

from gateways import offboarding
from gateways.api import views as api_views
from gateways.devices import DeviceRefused, fetch_key, rollout
from gateways.models import Device
from gateways.services import assign_key, rotate_key_secret
from portal import services as portal_services
from portal.models import AccessToken, AuditEvent, Membership, Role
from tests.gateways.test_device_pages import NEW_SECRET, live_device

pytestmark = pytest.mark.django_db


def set_active(user, active: bool) -> None:
    """What ticking or unticking Active on the account's page in the Django admin does."""
    user.is_active = active
    user.save(update_fields=["is_active"])


def test_a_deactivated_owners_device_is_refused_not_live_anywhere(
    client, api, alice, bob, dave, bob_assignment, tokenbay_key
):
    _, bobs_token = live_device(bob_assignment, "bob laptop")
    daves = assign_key(key=tokenbay_key, username="dave", actor=alice)
    _, daves_token = live_device(daves, "dave desktop")
    set_active(bob, False)
    with pytest.raises(DeviceRefused, match="deactivated"):
        fetch_key(raw_token=bobs_token, request=None)

    listed = {
        d["name"]: (d["state"], d["key_state"]) for d in api(alice).get("/api/v1/devices/?team=web").json()["results"]
    }
    assert listed == {"bob laptop": ("refused", "active"), "dave desktop": ("live", "active")}
    rows = {r["user"]: r["live_devices"] for r in api(alice).get("/api/v1/connections/?team=web").json()["results"]}
    assert rows == {"bob": 0, "dave": 1}

    # After a rotation the key page's rollout waits only for devices that can fetch: dave's.
    rotate_key_secret(key=tokenbay_key, secret=NEW_SECRET, actor=alice)
    assert fetch_key(raw_token=daves_token, request=None) == NEW_SECRET
    client.force_login(alice)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", client.get(f"/keys/{tokenbay_key.id}/").content.decode()))
    assert "1 of 1 live device has the new secret" in text
    assert "bob laptop" not in text  # the page lists the devices holding the key live
    assert rollout(tokenbay_key)["live"] == 1

    set_active(bob, True)  # active again: the device fetches, and counts, again
    assert fetch_key(raw_token=bobs_token, request=None) == NEW_SECRET
    listed = {d["name"]: d["state"] for d in api(alice).get("/api/v1/devices/?team=web").json()["results"]}
    assert listed == {"bob laptop": "live", "dave desktop": "live"}
    assert Device.objects.filter(key=tokenbay_key).live().count() == 2


def test_two_teams_offboarding_the_same_person_take_the_tokens_whoever_goes_second(alice, charlie, bob, data_team):
    """README: a team's Offboard takes the access tokens "when no team is left to them"."""
    Membership.objects.create(team=data_team, user=bob, role=Role.MEMBER)
    token, _ = AccessToken.issue(bob, name="laptop")
    # Both admins open Offboard at the same moment: each page builds its plan while bob is in both teams ...
    web_plan = offboarding.for_member(Membership.objects.get(user=bob, team__slug="web").team, bob)
    data_plan = offboarding.for_member(data_team, bob)
    assert web_plan.keeps_tokens and data_plan.keeps_tokens
    # ... then each presses the button.
    first = offboarding.offboard(web_plan, actor=alice)
    second = offboarding.offboard(data_plan, actor=charlie)

    assert not Membership.objects.filter(user=bob).exists()
    assert not AccessToken.objects.get(pk=token.pk).is_live, "bob is in no team any more, yet his token still works"
    assert (first["tokens_revoked"], second["tokens_revoked"]) == ([], [token.lookup_id])
    recorded = AuditEvent.objects.filter(action="member.offboarded", team__slug="data").get()
    assert recorded.details["tokens_revoked"] == [token.lookup_id]


def test_a_team_offboarding_keeps_the_tokens_of_someone_who_joined_another_team_meanwhile(alice, bob, data_team):
    token, _ = AccessToken.issue(bob, name="laptop")
    plan = offboarding.for_member(Membership.objects.get(user=bob, team__slug="web").team, bob)
    assert [t.pk for t in plan.tokens] == [token.pk]  # the page says the token goes: web is bob's only team
    Membership.objects.create(team=data_team, user=bob, role=Role.MEMBER)  # added to data before the button
    result = offboarding.offboard(plan, actor=alice)
    assert result["tokens_revoked"] == []
    assert AccessToken.objects.get(pk=token.pk).is_live


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_install_link_asked_for_while_the_member_is_removed_gets_the_sentence(
    api, alice, bob, bob_assignment, monkeypatch
):
    read = api_views.my_assignment

    def read_then_removed(user, assignment_id):
        found = read(user, assignment_id)  # the request read bob's assignment ...
        # ... and alice's removal of bob commits before it writes the device.
        portal_services.remove_member(membership=Membership.objects.get(team__slug="web", user=bob), actor=alice)
        return found

    monkeypatch.setattr(api_views, "my_assignment", read_then_removed)
    response = api(bob, raise_request_exception=False).post(
        f"/api/v1/me/configs/{bob_assignment.pk}/devices/", {"name": "laptop", "platform": "linux"}, format="json"
    )
    assert response.status_code == 404, (response.status_code, response.content[:300])
    assert response.json()["detail"] == (
        "The key 'Bob laptop' is no longer assigned to you in the portal; ask your team admin, "
        "then run the install command again from My set-up."
    )
    assert not Device.objects.exists()
    assert not AuditEvent.objects.filter(action="device.created").exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_install_page_asked_for_while_the_key_is_unassigned_says_so_on_my_setup(
    client, alice, bob, bob_assignment, monkeypatch
):
    from gateways import views as page_views
    from gateways.services import remove_assignment

    read = page_views.my_assignment

    def read_then_unassigned(user, assignment_id):
        found = read(user, assignment_id)
        remove_assignment(assignment=bob_assignment, actor=alice)
        return found

    monkeypatch.setattr(page_views, "my_assignment", read_then_unassigned)
    client.force_login(bob)
    client.raise_request_exception = False
    response = client.post(f"/setup/{bob_assignment.pk}/devices/", {"name": "laptop", "platform": "linux"}, follow=True)
    assert response.status_code == 200
    assert "is no longer assigned to you in the portal" in response.content.decode()
    assert not Device.objects.exists()
