"""Leaving a team, renames and a new SSO address, each kept to its scope: the team left, the name while it was
held, every team's invitations to the old address; and what still waits in the audit queue counts already."""

from __future__ import annotations

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, RequestFactory

from gateways import devices
from gateways.services import assign_key
from portal import audit, audit_chain, invitations, renames, services
from portal.models import Action, AuditEvent, Invitation, Membership, PendingAuditEvent, Role, Team
from portal.oidc import sign_in_from_claims
from tests.admin_forms import rename_in_the_admin
from tests.conftest import make_user

pytestmark = pytest.mark.django_db
ISSUER = "https://idp.example.com"


@pytest.fixture(autouse=True)
def _sso(settings):
    settings.OIDC_ISSUER = ISSUER


def sso(sub: str, email: str):
    request = RequestFactory().get("/oidc/callback/")
    request.session = SessionStore()
    return sign_in_from_claims(request, {"sub": sub, "email": email, "email_verified": True})


# --- portal.invitations.left_since_invited ---------------------------------------------------------------------


def test_leaving_another_team_does_not_void_an_invitation_to_this_one(alice, charlie, web, data_team):
    """erin is invited to web; before she opens the mail she is removed from data. The web invitation still works."""
    erin = make_user("erin")
    services.add_member(team=data_team, username="erin", role=Role.MEMBER, actor=charlie)
    invitation, _ = invitations.create_invitation(team=web, email="erin@example.com", role=Role.MEMBER, actor=alice)
    services.remove_member(membership=Membership.objects.get(team=data_team, user=erin), actor=charlie)
    invitations.accept_invitation(invitation=invitation, user=erin)
    assert Membership.objects.filter(team=web, user=erin).exists()


def test_the_name_an_account_gave_up_lends_it_no_later_leave_rows(root_client, alice, dave, web):
    """erin is invited to web (at an address not yet hers here) and renamed erin2 in the admin; dave is then renamed
    erin and removed from web. That removal is the other account's: erin2 still joins with her invitation."""
    erin = make_user("erin")
    invitation, _ = invitations.create_invitation(team=web, email="erin.b@example.com", role=Role.MEMBER, actor=alice)
    rename_in_the_admin(root_client, erin, "erin2")
    rename_in_the_admin(root_client, dave, "erin")
    services.remove_member(membership=Membership.objects.get(team=web, user=dave), actor=alice)
    assert invitations.left_since_invited(invitation, erin) is None
    invitations.accept_invitation(invitation=invitation, user=erin)
    assert Membership.objects.filter(team=web, user=erin).exists()


def test_a_member_offboarded_by_the_team_is_not_brought_back_by_an_invitation_from_before(client, alice, bob, web):
    """As tests/portal/test_leaving_invitations.py's removal case, but through the team's Offboard page
    (member.offboarded): the old link to bob's other address does not bring him back."""
    invitation, _ = invitations.create_invitation(team=web, email="robert@home.example", role=Role.ADMIN, actor=alice)
    client.force_login(alice)
    assert client.post("/teams/web/members/bob/offboard/").status_code == 302
    assert not Membership.objects.filter(team=web, user=bob).exists()
    with pytest.raises(invitations.RuleError, match="was sent before you left the team"):
        invitations.accept_invitation(invitation=invitation, user=bob)
    assert not Membership.objects.filter(team=web, user=bob).exists()


# --- portal.renames.current_name (copies_out) ------------------------------------------------------------------


def download(user, assignment) -> None:
    client = Client()
    client.force_login(user)
    assert client.get(f"/api/v1/me/configs/{assignment.pk}/settings.json").status_code == 200


def test_a_rename_before_a_leave_row_is_not_followed(root_client, alice, bob, charlie, web, tokenbay_key):
    """bob holds a copy and is renamed robert (he stays); charlie then takes the name bob, joins web, downloads and
    is removed. Two people hold a copy: the leaver's row ("bob", after robert's rename) is charlie's, not robert's."""
    download(bob, assign_key(key=tokenbay_key, username="bob", actor=alice))
    rename_in_the_admin(root_client, bob, "robert")
    rename_in_the_admin(root_client, charlie, "bob")
    services.add_member(team=web, username="bob", role=Role.MEMBER, actor=alice)
    download(charlie, assign_key(key=tokenbay_key, username="bob", actor=alice))
    services.remove_member(membership=Membership.objects.get(team=web, user=charlie), actor=alice)
    assert devices.copies_out(tokenbay_key) == 2


# --- portal.oidc.adopt_address ---------------------------------------------------------------------------------


def test_adopting_a_new_address_withdraws_the_old_addresss_invitations_in_every_team(bob, charlie, data_team):
    """charlie invited bob@ to data and to ops; bob's provider moves him to robert@: both invitations end, or
    whoever gets bob@ next joins the one left standing."""
    ops = Team.objects.create(name="Ops", slug="ops")
    Membership.objects.create(team=ops, user=charlie, role=Role.ADMIN)
    assert sso("idp-bob", "bob@example.com") == bob
    to_data, _ = invitations.create_invitation(team=data_team, email="bob@example.com", role=Role.ADMIN, actor=charlie)
    to_ops, _ = invitations.create_invitation(team=ops, email="bob@example.com", role=Role.ADMIN, actor=charlie)
    assert sso("idp-bob", "robert@example.com") == bob
    states = {i.team.slug: i.state for i in Invitation.objects.filter(pk__in=[to_data.pk, to_ops.pk])}
    assert states == {"data": "withdrawn", "ops": "withdrawn"}


def queue(event: AuditEvent) -> PendingAuditEvent:
    """Queue an event exactly as a writer that found the head taken does (tests/test_hot_paths.py's helper)."""
    keyring = audit_chain.get_keyring()
    row = audit._queued(event, audit_chain.canonical_json(audit_chain.content_of(event)), keyring)
    row.save()
    return row


def test_a_removal_still_in_the_queue_already_refuses_an_invitation_from_before(alice, bob, web):
    """bob was removed a moment ago and the removal's audit row waits in the queue: his old link to another
    address must not bring him back in that moment."""
    invitation, _ = invitations.create_invitation(team=web, email="robert@home.example", role=Role.ADMIN, actor=alice)
    Membership.objects.filter(team=web, user=bob).delete()
    queue(audit.new_event(Action.MEMBER_REMOVED, actor=alice, team=web, target="bob", details={}))
    assert AuditEvent.objects.filter(action=Action.MEMBER_REMOVED).count() == 0
    assert invitations.left_since_invited(invitation, bob) is not None


def test_a_rename_still_in_the_queue_is_already_followed(bob):
    """The rename's row waits in the queue: the account's earlier name is known already."""
    bob.username = "robert"
    bob.save()
    queue(
        audit.new_event(
            Action.ACCOUNT_UPDATED,
            actor=bob,
            target="robert",
            details={"via": "admin", "changed": {"username": {"from": "bob", "to": "robert"}}},
        )
    )
    assert [name for name, _, _ in renames.names_held(bob)] == ["robert", "bob"]
