"""People's identities change at the identity provider while the portal keeps running: a new address, a departure,
more groups than a token holds. The portal follows, and none of it brings a leaver back into a team."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory

from gateways import offboarding
from portal.account_forms import PortalPasswordResetForm
from portal.errors import RuleError
from portal.invitations import create_invitation
from portal.models import Action, AuditEvent, Invitation, Membership, Role
from portal.oidc import SSOError, invitation_not_joined, sign_in_from_claims
from portal.services import remove_member
from tests.conftest import make_user
from tests.portal.sso_answers import deliver, signed_in, sso_sign_in, start

pytestmark = pytest.mark.django_db
ISSUER = "https://idp.example.com"
# Microsoft Entra ID's group overage: no groups claim, a pointer to Microsoft Graph instead.
OVERAGE = {"_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "https://graph.example/x"}}}


@pytest.fixture(autouse=True)
def _sso(settings):
    settings.OIDC_ISSUER = ISSUER


@pytest.fixture
def groups_on_web(web):
    web.sso_member_group, web.sso_admin_group = "eng", "eng-leads"
    web.save()
    return web


def sign_in(sub="idp-bob", **claims):
    request = RequestFactory().get("/oidc/callback/")
    request.session = SessionStore()
    return sign_in_from_claims(request, {"sub": sub, "email_verified": True, **claims})


def withdrawn(email: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=Action.INVITATION_WITHDRAWN, target=email).order_by("id"))


# --- A new address at the provider ----------------------------------------------------------------------------


def test_a_new_verified_address_at_the_provider_becomes_the_accounts_address(bob):
    """Renamed at the provider, bob keeps no hold on bob@, which the provider may hand to a new hire: a password
    reset for bob@ no longer mails bob's account's link there."""
    assert sign_in(email="bob@example.com") == bob  # linked at the first SSO sign-in
    assert sign_in(email="robert@example.com") == bob  # found by subject; the provider vouches for robert@

    bob.refresh_from_db()
    assert bob.email == "robert@example.com"
    assert list(PortalPasswordResetForm().get_users("bob@example.com")) == []
    event = AuditEvent.objects.get(action=Action.ACCOUNT_UPDATED, target="bob")
    assert event.actor_username == "bob"
    assert event.details == {
        "via": "sso",
        "changed": {"email": {"from": "bob@example.com", "to": "robert@example.com"}},
    }


def test_adopting_a_new_address_withdraws_the_invitations_to_the_old_one(bob, charlie, data_team):
    """charlie invites bob@ to data as admin; the provider renames bob to robert@ before he used it, and later hands
    bob@ to a new hire, who must not become an admin of data with the invitation meant for bob."""
    assert sign_in(email="bob@example.com") == bob
    invitation, _ = create_invitation(team=data_team, email="bob@example.com", role=Role.ADMIN, actor=charlie)
    assert sign_in(email="robert@example.com") == bob  # adopted: bob's account is robert@ now

    invitation.refresh_from_db()
    assert invitation.state == "withdrawn"
    [row] = withdrawn("bob@example.com")
    assert (row.team_slug, row.actor_username, row.details["via"]) == ("data", "bob", "sso")
    assert row.details["reason"] == (
        "bob's account moved to the address robert@example.com the identity provider gives it"
    )
    with pytest.raises(SSOError, match="no invitation for it"):
        sign_in(sub="idp-new-hire", email="bob@example.com")
    assert not Membership.objects.filter(team=data_team).exclude(user=charlie).exists()


def test_an_address_another_account_has_is_not_adopted_and_the_sign_in_goes_on(bob, caplog):
    robert = make_user("robert")  # robert@example.com, a password account here
    sign_in(email="bob@example.com")
    assert sign_in(email="robert@example.com") == bob
    assert sign_in(email="robert@example.com") == bob  # a second sign-in: not recorded again

    bob.refresh_from_db()
    robert.refresh_from_db()
    assert (bob.email, robert.email) == ("bob@example.com", "robert@example.com")
    [kept] = AuditEvent.objects.filter(action=Action.ACCOUNT_UPDATED, target="bob")
    assert (kept.details["email"], kept.details["provider_email"]) == ("bob@example.com", "robert@example.com")
    assert "another account here (robert) uses it" in kept.details["kept"]
    assert "not adopted" in caplog.text


def test_an_address_mail_cannot_reach_is_not_adopted(bob):
    sign_in(email="bob@example.com")
    assert sign_in(email="zoë@example.com") == bob
    bob.refresh_from_db()
    assert bob.email == "bob@example.com"
    [kept] = AuditEvent.objects.filter(action=Action.ACCOUNT_UPDATED, target="bob")
    assert "mail cannot reach it" in kept.details["kept"]


def test_an_address_the_provider_does_not_vouch_for_is_not_adopted(settings, bob):
    settings.OIDC_REQUIRE_EMAIL_VERIFIED = False  # Entra ID may send no email_verified
    sign_in(email="bob@example.com")
    sign_in(email="robert@example.com", email_verified=None)
    bob.refresh_from_db()
    assert bob.email == "bob@example.com"
    assert not AuditEvent.objects.filter(action=Action.ACCOUNT_UPDATED).exists()


# --- Leaving: no invitation to an address the person is or becomes known by brings them back ---------------------


def test_an_invitation_to_an_address_the_provider_gave_a_member_is_refused(settings, alice, bob, web):
    settings.OIDC_REQUIRE_EMAIL_VERIFIED = False
    sign_in(email="bob@example.com")
    sign_in(email="robert@example.com", email_verified=None)  # the provider's address, not adopted
    with pytest.raises(RuleError, match="already belongs to a member of Web"):
        create_invitation(team=web, email="Robert@Example.com", role=Role.ADMIN, actor=alice)


def test_leaving_withdraws_invitations_to_the_address_the_provider_gave(settings, alice, bob, charlie, data_team):
    settings.OIDC_REQUIRE_EMAIL_VERIFIED = False
    sign_in(email="bob@example.com")
    sign_in(email="robert@example.com", email_verified=None)  # the provider's address, not adopted
    invitation, _ = create_invitation(team=data_team, email="robert@example.com", role=Role.ADMIN, actor=charlie)
    Membership.objects.create(team=data_team, user=bob, role=Role.MEMBER)  # made without using it up
    remove_member(membership=Membership.objects.get(team=data_team, user=bob), actor=charlie)

    invitation.refresh_from_db()
    assert invitation.state == "withdrawn"
    [left] = withdrawn("robert@example.com")
    assert left.details["reason"] == "bob left the team"


def test_an_invitation_sent_before_a_member_left_does_not_bring_them_back_at_sso(alice, bob, web):
    """alice invites robert@ (bob's new address at the provider, which the portal does not know yet), then removes
    bob. His next SSO sign-in, with robert@, neither brings him back nor leaves the invitation standing."""
    sign_in(email="bob@example.com")
    invitation, _ = create_invitation(team=web, email="robert@example.com", role=Role.ADMIN, actor=alice)
    remove_member(membership=Membership.objects.get(team=web, user=bob), actor=alice)
    assert Invitation.objects.get(pk=invitation.pk).state == "pending"  # robert@ was nobody's address then

    assert sign_in(email="robert@example.com") == bob
    assert not Membership.objects.filter(team=web, user=bob).exists(), "bob is back in web, as admin"
    invitation.refresh_from_db()
    assert invitation.state == "withdrawn"
    [refused] = withdrawn("robert@example.com")
    assert refused.actor_username == "bob" and refused.details["via"] == "sso"
    assert "bob left the team after it was sent" in refused.details["reason"]


def test_an_sso_sign_in_from_the_invitations_page_says_why_it_did_not_join(alice, bob, web):
    sign_in(email="bob@example.com")
    _, raw = create_invitation(team=web, email="robert@example.com", role=Role.ADMIN, actor=alice)
    remove_member(membership=Membership.objects.get(team=web, user=bob), actor=alice)
    request = RequestFactory().get("/oidc/callback/")
    request.session = SessionStore()
    claims = {"sub": "idp-bob", "email": "robert@example.com", "email_verified": True}
    assert sign_in_from_claims(request, claims, invitation_token=raw) == bob
    assert not Membership.objects.filter(team=web, user=bob).exists()
    assert invitation_not_joined(raw, bob) == (
        "This invitation to Web was sent before you left the team, so it does not bring you back. Ask one of the "
        "team's admins to invite you again."
    )


def test_an_invitation_sent_after_leaving_still_brings_them_back(alice, bob, web):
    remove_member(membership=Membership.objects.get(team=web, user=bob), actor=alice)
    create_invitation(team=web, email="robert@example.com", role=Role.MEMBER, actor=alice)
    sign_in(email="bob@example.com")
    sign_in(email="robert@example.com")
    assert Membership.objects.get(team=web, user=bob).role == Role.MEMBER


# --- Staff offboard an account: its pending invitations go too ----------------------------------------------------


def test_offboarding_an_account_withdraws_its_pending_invitations(staff, bob, charlie, data_team):
    sign_in(email="bob@example.com")
    create_invitation(team=data_team, email="bob@example.com", role=Role.ADMIN, actor=charlie)  # not yet accepted
    offboarding.offboard(offboarding.for_account(bob), actor=staff)

    assert not Invitation.objects.pending().filter(email="bob@example.com").exists()
    [row] = withdrawn("bob@example.com")
    assert (row.team_slug, row.actor_username) == ("data", "staff")
    assert row.details["via"] == "account.offboarded" and row.details["reason"] == "bob's account was offboarded"


def test_a_new_hire_with_the_leavers_address_does_not_inherit_the_leavers_invitations(staff, bob, charlie, data_team):
    """Staff give the offboarded account another address so the new hire holding bob@ can sign in: the invitation
    charlie sent the leaver does not make the new hire an admin of data."""
    sign_in(email="bob@example.com")
    create_invitation(team=data_team, email="bob@example.com", role=Role.ADMIN, actor=charlie)
    offboarding.offboard(offboarding.for_account(bob), actor=staff)
    get_user_model().objects.filter(pk=bob.pk).update(email="bob.left@example.com")  # staff, in the admin

    with pytest.raises(SSOError, match="no invitation for it"):
        sign_in(sub="idp-new-hire", email="bob@example.com")
    assert not Membership.objects.filter(team=data_team).exclude(user=charlie).exists()


# --- An offboarded account's SSO attempt names the account -------------------------------------------------------


def test_an_offboarded_accounts_sso_attempt_is_recorded_against_the_account(client, provider, staff, bob):
    assert sso_sign_in(client, provider, sub="bob-sub", email="bob@example.com").status_code == 302
    client.logout()
    offboarding.offboard(offboarding.for_account(bob), actor=staff)
    response = sso_sign_in(client, provider, sub="bob-sub", email="bob@example.com")
    assert response.status_code == 403 and signed_in(client) is None
    assert "This account is deactivated" in response.content.decode()
    refused = AuditEvent.objects.get(action=Action.SIGN_IN_FAILED)
    assert (refused.target, "deactivated" in refused.details["reason"]) == ("bob", True)


def test_a_deactivated_account_found_by_its_address_is_not_called_yours(bob):
    bob.is_active = False
    bob.save()
    with pytest.raises(SSOError) as refused:
        sign_in(sub="idp-someone", email="bob@example.com")
    assert str(refused.value).startswith("An account here with this address is deactivated")
    assert refused.value.target == "bob"


# --- Entra ID's group overage -------------------------------------------------------------------------------------


def test_a_groups_overage_answer_is_refused_when_teams_follow_groups(groups_on_web, alice, bob):
    sign_in(email="bob@example.com", groups=["eng-leads"])
    assert Membership.objects.get(team=groups_on_web, user=bob).role == Role.ADMIN

    with pytest.raises(SSOError) as refused:
        sign_in(email="bob@example.com", **OVERAGE)  # taken out of eng-leads, in 200+ other groups
    sentence = str(refused.value)
    assert sentence.startswith("The identity provider did not send your groups: you are in too many of them")
    assert "Groups assigned to the application" in sentence
    assert (refused.value.status, refused.value.target) == (403, "bob")


def test_a_groups_overage_answer_makes_no_account(groups_on_web, alice):
    create_invitation(team=groups_on_web, email="erin@example.com", role=Role.MEMBER, actor=alice)
    with pytest.raises(SSOError, match="did not send your groups") as refused:
        sign_in(sub="idp-erin", email="erin@example.com", **OVERAGE)
    assert refused.value.target == ""
    assert not get_user_model().objects.filter(email="erin@example.com").exists()


def test_a_groups_overage_answer_signs_in_when_no_team_follows_groups(web, bob):
    assert sign_in(email="bob@example.com", **OVERAGE) == bob


def test_an_overage_refusal_is_recorded_against_the_account(client, provider, groups_on_web, bob):
    sso_sign_in(client, provider, sub="bob-sub", email="bob@example.com")
    client.logout()
    url = start(client)
    response = deliver(client, url, provider.answer(url, sub="bob-sub", email="bob@example.com", **OVERAGE))
    assert response.status_code == 403 and "did not send your groups" in response.content.decode()
    refused = AuditEvent.objects.get(action=Action.SIGN_IN_FAILED)
    assert refused.target == "bob" and "group overage" in refused.details["reason"]
