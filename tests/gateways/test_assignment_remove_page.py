"""POST /assignments/{id}/remove/ answers as DELETE /api/v1/assignments/{id}/ does: 404 for an assignment the caller
cannot see, 403 with the API's sentence for one they see but may not remove (their own, or their team's as auditor)."""

from __future__ import annotations

import pytest

from gateways.models import Assignment

pytestmark = pytest.mark.django_db

ADMINS_ONLY = "Only the team&#x27;s admins can remove an assignment."


def test_a_member_removing_their_own_assignment_is_told_only_admins_can(client, api, bob, bob_assignment):
    assert api(bob).delete(f"/api/v1/assignments/{bob_assignment.id}/").status_code == 403
    client.force_login(bob)
    response = client.post(f"/assignments/{bob_assignment.id}/remove/")
    assert response.status_code == 403
    assert ADMINS_ONLY in response.content.decode()
    assert Assignment.objects.filter(pk=bob_assignment.pk).exists()


def test_an_auditor_of_the_team_is_told_only_admins_can(client, dave, bob_assignment):
    client.force_login(dave)
    response = client.post(f"/assignments/{bob_assignment.id}/remove/")
    assert response.status_code == 403
    assert ADMINS_ONLY in response.content.decode()
    assert Assignment.objects.filter(pk=bob_assignment.pk).exists()


def test_an_outsider_gets_404_on_the_page_as_on_the_api(client, api, charlie, bob_assignment):
    assert api(charlie).delete(f"/api/v1/assignments/{bob_assignment.id}/").status_code == 404
    client.force_login(charlie)
    assert client.post(f"/assignments/{bob_assignment.id}/remove/").status_code == 404
    assert client.post("/assignments/999999/remove/").status_code == 404
    assert Assignment.objects.filter(pk=bob_assignment.pk).exists()


def test_the_teams_admin_removes_it(client, alice, bob_assignment, tokenbay_key):
    client.force_login(alice)
    response = client.post(f"/assignments/{bob_assignment.id}/remove/")
    assert response.status_code == 302 and response["Location"] == f"/keys/{tokenbay_key.id}/"
    assert not Assignment.objects.filter(pk=bob_assignment.pk).exists()
