"""portal announces, gateways reacts: a member who leaves a team loses that team's keys."""

from __future__ import annotations

import pytest

from gateways.models import Assignment
from portal.models import Action, AuditEvent

pytestmark = pytest.mark.django_db


def test_removing_a_member_takes_back_their_keys_and_says_which(api, alice, bob, bob_assignment, tokenbay_key):
    response = api(alice).delete("/api/v1/teams/web/members/bob/")
    assert response.status_code == 204
    assert not Assignment.objects.filter(user=bob).exists()
    event = AuditEvent.objects.filter(action=Action.MEMBER_REMOVED).get()
    assert event.target == "bob"
    assert event.details == {
        "assignments_removed": [tokenbay_key.short_fingerprint],
        "keys_taken_back": [tokenbay_key.label],
    }


def test_a_refused_removal_keeps_the_assignments(api, alice, bob_assignment):
    # alice is the team's last admin: her removal is refused, and nothing she held is taken back.
    from gateways.services import assign_key

    assign_key(key=bob_assignment.key, username="alice", actor=alice)
    response = api(alice).delete("/api/v1/teams/web/members/alice/")
    assert response.status_code == 400
    assert Assignment.objects.filter(user__username="alice").exists()
