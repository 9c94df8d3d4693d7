"""Staff and team roles are checked one way, with the same sentence in the pages and the API."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("page", "api_path", "sentence"),
    [
        ("/gateways/new/", "/api/v1/gateways/", "Only staff can change the gateway catalogue."),
        ("/teams/new/", "/api/v1/teams/", "Only staff can create teams."),
    ],
)
def test_staff_only_writes_are_refused_alike_in_pages_and_api(client, api, alice, page, api_path, sentence):
    client.force_login(alice)  # a team admin, not staff
    response = client.post(page, {"name": "x", "slug": "x"})
    assert response.status_code == 403
    answer = api(alice).post(api_path, {"name": "x", "slug": "x", "base_url": "https://x.example"}, format="json")
    assert answer.status_code == 403
    assert answer.json() == {"detail": sentence}


def test_staff_reads_what_they_may_not_write_refused_to_others(api, bob):
    assert api(bob).get("/api/v1/gateways/").status_code == 200
    assert api(bob).get("/api/v1/teams/").status_code == 200


def test_an_assignee_cannot_remove_their_own_assignment(api, bob, bob_assignment):
    response = api(bob).delete(f"/api/v1/assignments/{bob_assignment.id}/")
    assert response.status_code == 403
    assert response.json() == {"detail": "Only the team's admins can remove an assignment."}


def test_your_role_is_read_from_the_prefetched_members(api, dave, data_team, django_assert_num_queries):
    from portal.models import Membership, Role

    Membership.objects.create(team=data_team, user=dave, role=Role.MEMBER)
    client = api(dave)
    client.get("/api/v1/teams/")  # the first call also records the token's last use
    with django_assert_num_queries(3):  # token, teams, their members: no query per team
        body = client.get("/api/v1/teams/").json()["results"]
    assert [(t["slug"], t["your_role"]) for t in body] == [("data", "member"), ("web", "auditor")]
