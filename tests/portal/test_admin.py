"""The Django admin shows teams and memberships; it changes neither, since only the portal's services
take back a leaving member's keys and devices, keep the last admin, and write the audit row."""

from __future__ import annotations

import pytest

from gateways.models import Assignment
from portal.models import AuditEvent, Membership, Team

pytestmark = pytest.mark.django_db


def test_the_admin_shows_a_team_and_its_members(admin_client, web, alice, bob):
    page = admin_client.get(f"/admin/portal/team/{web.pk}/change/")
    assert page.status_code == 200
    [inline] = page.context["inline_admin_formsets"]
    assert not inline.has_add_permission and not inline.has_change_permission and not inline.has_delete_permission
    assert {"alice", "bob"} <= {form.original.user.username for form in inline}
    assert admin_client.get("/admin/portal/membership/").status_code == 200


def test_deleting_a_membership_in_the_admin_is_refused_and_the_member_keeps_nothing_they_should_lose(
    admin_client, web, bob, bob_assignment
):
    membership = Membership.objects.get(team=web, user=bob)
    before = AuditEvent.objects.count()
    assert admin_client.post(f"/admin/portal/membership/{membership.pk}/delete/", {"post": "yes"}).status_code == 403
    data = {
        "name": "Web",
        "slug": "web",
        "memberships-TOTAL_FORMS": "1",
        "memberships-INITIAL_FORMS": "1",
        "memberships-0-id": str(membership.pk),
        "memberships-0-team": str(web.pk),
        "memberships-0-DELETE": "on",
    }
    assert admin_client.post(f"/admin/portal/team/{web.pk}/change/", data).status_code == 403
    assert Membership.objects.filter(pk=membership.pk).exists()
    assert Assignment.objects.filter(pk=bob_assignment.pk).exists()
    assert AuditEvent.objects.count() == before


def test_teams_are_neither_added_nor_deleted_in_the_admin(admin_client, web, alice):
    assert admin_client.post("/admin/portal/team/add/", {"name": "Mobile", "slug": "mobile"}).status_code == 403
    assert admin_client.post(f"/admin/portal/team/{web.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.post("/admin/portal/membership/add/", {"team": web.pk, "role": "admin"}).status_code == 403
    assert list(Team.objects.values_list("slug", flat=True)) == ["web"]
