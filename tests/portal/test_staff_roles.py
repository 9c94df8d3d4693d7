"""README, Roles: staff "act as admin in every team", also where they hold a plainer membership (member or
auditor, say to be given a key): the lists show them every team's keys, so they may act on them too."""

from __future__ import annotations

import pytest

from portal.models import Membership, Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_member(staff, web):
    Membership.objects.create(team=web, user=staff, role=Role.MEMBER)
    return staff


def test_staff_in_a_team_as_member_still_acts_as_admin_through_the_api(api, staff_member, tokenbay_key, alice):
    client = api(staff_member)
    # Visible: staff see every key.
    assert client.get(f"/api/v1/keys/{tokenbay_key.id}/").status_code == 200
    # ...so the team's key list, the key's change and a member's addition must be allowed as well.
    listing = client.get("/api/v1/teams/web/keys/")
    assert listing.status_code == 200, listing.json()
    patched = client.patch(f"/api/v1/keys/{tokenbay_key.id}/", {"label": "Renamed by staff"}, format="json")
    assert patched.status_code == 200, patched.json()
    team = client.get("/api/v1/teams/web/").json()
    assert team["your_role"] == Role.ADMIN


def test_staff_in_a_team_as_member_sees_the_keys_on_the_team_page(client, staff_member, tokenbay_key):
    client.force_login(staff_member)
    # The key page opens (staff see every key)...
    assert client.get(f"/keys/{tokenbay_key.id}/").status_code == 200
    # ...and the team page must list it, and the admin's forms.
    page = client.get("/teams/web/").content.decode()
    assert tokenbay_key.label in page
    assert client.post(f"/keys/{tokenbay_key.id}/toggle/").status_code == 302
