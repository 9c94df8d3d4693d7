"""The pages' role checks, write by write: a member or an auditor posting an admin's form changes nothing.

The API has its matrix (tests/api/test_isolation_matrix.py); these are the page forms whose check a test
did not pin (found by removing each check in turn): adding or promoting members, assigning and rotating
keys, and the team's invitations. Each write is posted with the data an admin would send.
"""

from __future__ import annotations

import pytest
from django.test import Client

from gateways.models import Assignment, GatewayKey
from portal.invitations import create_invitation
from portal.models import Invitation, Membership, Role
from tests.conftest import confirm_password

pytestmark = pytest.mark.django_db

NEW_SECRET = "sk-tokenbay-rotated-0123456789abcdef"


@pytest.fixture(params=["bob", "dave"])
def lesser(request, bob, dave):
    """A member (bob) or an auditor (dave) of team web, signed in, with the password typed again (sudo)."""
    user = {"bob": bob, "dave": dave}[request.param]
    client = Client()
    client.force_login(user)
    confirm_password(client, user)
    return client, user


def test_no_one_below_admin_adds_or_promotes_a_member(lesser, web):
    client, user = lesser
    before = Membership.objects.get(team=web, user=user).role
    assert client.post("/teams/web/members/", {"username": user.username, "role": "admin"}).status_code == 403
    assert Membership.objects.get(team=web, user=user).role == before


def test_no_one_below_admin_assigns_a_key_to_themself(lesser, tokenbay_key):
    client, user = lesser
    response = client.post(f"/keys/{tokenbay_key.id}/assign/", {"username": user.username})
    assert response.status_code in (403, 404)  # a member does not see the team's keys at all
    assert not Assignment.objects.filter(key=tokenbay_key, user=user).exists()


def test_no_one_below_admin_rotates_a_key(lesser, tokenbay_key):
    client, _ = lesser
    assert client.get(f"/keys/{tokenbay_key.id}/rotate/").status_code in (403, 404)
    assert client.post(f"/keys/{tokenbay_key.id}/rotate/", {"secret": NEW_SECRET}).status_code in (403, 404)
    assert GatewayKey.objects.get(pk=tokenbay_key.pk).fingerprint == tokenbay_key.fingerprint


def test_no_one_below_admin_reads_or_withdraws_the_teams_invitations(lesser, alice, web):
    client, _ = lesser
    invitation, _ = create_invitation(team=web, email="newcomer@example.com", role="member", actor=alice)
    page = client.get("/teams/web/invitations/")
    assert page.status_code == 403
    assert "newcomer@example.com" not in page.content.decode()
    assert client.post(f"/teams/web/invitations/{invitation.pk}/withdraw/").status_code == 403
    assert Invitation.objects.get(pk=invitation.pk).withdrawn_at is None


def test_a_page_form_posted_from_another_site_changes_nothing(alice, bob, tokenbay_key):
    """The admin's session cookie alone, without the page's CSRF token, as a cross-site form would post."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    assert browser.post(f"/keys/{tokenbay_key.id}/toggle/", {"enabled": "0"}).status_code == 403
    assert GatewayKey.objects.get(pk=tokenbay_key.pk).is_enabled
    assert browser.post("/teams/web/members/", {"username": "bob", "role": "admin"}).status_code == 403
    assert Membership.objects.get(team__slug="web", user=bob).role == Role.MEMBER


def test_an_access_token_stops_working_when_staff_deactivate_its_account(api, bob, bob_assignment):
    """Deactivated in the Django admin, not offboarded (which also revokes the tokens)."""
    client = api(bob)
    assert client.get("/api/v1/me/configs/").status_code == 200
    bob.is_active = False
    bob.save(update_fields=["is_active"])
    assert client.get("/api/v1/me/configs/").status_code == 401
    assert client.get(f"/api/v1/me/configs/{bob_assignment.id}/settings.json").status_code == 401
