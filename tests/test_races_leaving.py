"""Races of someone leaving, on PostgreSQL: two offboardings at once, and an install link made during a removal.

As in tests/test_races.py, the first writer is the real service in a transaction held open for a moment,
the second the real API or service in this thread, with its own connection. SQLite runs one writer at a
time, so there these races cannot happen and the tests skip.
"""

from __future__ import annotations

import time

import pytest

from gateways import offboarding
from gateways.api import views as api_views
from gateways.devices import create_device
from gateways.models import Assignment, Device
from gateways.services import remove_assignment
from portal import services as portal_services
from portal.models import AccessToken, Action, AuditEvent, Membership, Role
from tests.test_races import HOLD, ON_POSTGRESQL, held

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not ON_POSTGRESQL, reason="races need PostgreSQL; SQLite runs one writer at a time"),
]

UNASSIGNED = (
    "The key 'Bob laptop' is no longer assigned to you in the portal; ask your team admin, "
    "then run the install command again from My set-up."
)


def test_two_teams_offboarding_the_same_person_at_once_take_the_tokens(alice, bob, charlie, web, data_team):
    Membership.objects.create(team=data_team, user=bob, role=Role.MEMBER)
    token, _ = AccessToken.issue(bob, name="laptop")
    web_plan = offboarding.for_member(web, bob)
    data_plan = offboarding.for_member(data_team, bob)
    first, box = held(lambda: offboarding.offboard(web_plan, actor=alice))
    second = offboarding.offboard(data_plan, actor=charlie)
    first.join()
    assert "error" not in box, box
    assert not Membership.objects.filter(user=bob).exists()
    assert not AccessToken.objects.get(pk=token.pk).is_live, "bob is in no team any more, yet his token still works"
    assert (box["result"]["tokens_revoked"], second["tokens_revoked"]) == ([], [token.lookup_id])


def test_an_install_link_asked_for_while_the_member_is_removed_gets_the_sentence(
    api, alice, bob, bob_assignment, monkeypatch
):
    bobs = Membership.objects.get(team__slug="web", user=bob)
    read = api_views.my_assignment
    removal: list = []

    def read_then_removal_starts(user, assignment_id):
        found = read(user, assignment_id)  # the request read bob's assignment, then alice's removal begins
        removal.append(held(lambda: portal_services.remove_member(membership=bobs, actor=alice)))
        return found

    monkeypatch.setattr(api_views, "my_assignment", read_then_removal_starts)
    response = api(bob, raise_request_exception=False).post(
        f"/api/v1/me/configs/{bob_assignment.pk}/devices/", {"name": "laptop", "platform": "linux"}, format="json"
    )
    [(first, box)] = removal
    first.join()
    assert "error" not in box, box
    assert response.status_code == 404, (response.status_code, response.content[:300])  # as its download now
    assert response.json()["detail"] == UNASSIGNED
    assert not Device.objects.exists()


@pytest.mark.parametrize(
    "removal",
    [
        lambda assignment, admin: portal_services.remove_member(
            membership=Membership.objects.get(team__slug="web", user=assignment.user), actor=admin
        ),
        lambda assignment, admin: remove_assignment(assignment=assignment, actor=admin),
    ],
    ids=["member removed", "key unassigned"],
)
def test_a_removal_while_an_install_link_is_made_takes_the_new_device_too(alice, bob, bob_assignment, removal):
    first, box = held(lambda: create_device(assignment=bob_assignment, name="laptop", platform="linux", actor=bob))
    started = time.monotonic()
    removal(Assignment.objects.select_related("key", "user").get(pk=bob_assignment.pk), alice)
    waited = time.monotonic() - started
    first.join()
    assert "error" not in box, box
    assert waited > HOLD / 2, "the removal did not wait for the device being made"
    assert not Assignment.objects.filter(user=bob).exists()
    device = Device.objects.get(user=bob)
    assert (device.assignment_id, device.state) == (None, "unassigned")


def test_a_member_removed_while_their_key_is_unassigned_leaves_one_assignment_removed_row(alice, bob, bob_assignment):
    first, box = held(lambda: remove_assignment(assignment=bob_assignment, actor=alice))
    details = portal_services.remove_member(membership=Membership.objects.get(team__slug="web", user=bob), actor=alice)
    first.join()
    assert "error" not in box, box
    assert AuditEvent.objects.filter(action=Action.ASSIGNMENT_REMOVED).count() == 1
    assert details.get("assignments_removed") == []


def test_an_offboarding_while_the_key_is_unassigned_leaves_one_assignment_removed_row(web, alice, bob, bob_assignment):
    plan = offboarding.for_member(web, bob)
    first, box = held(lambda: remove_assignment(assignment=bob_assignment, actor=alice))
    consequences = offboarding.offboard(plan, actor=alice)
    first.join()
    assert "error" not in box, box
    assert AuditEvent.objects.filter(action=Action.ASSIGNMENT_REMOVED).count() == 1
    assert consequences["assignments_removed"] == []
