"""The rules behind a single sign-on: which account the claims belong to, and what the groups claim changes."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory

from gateways.models import Assignment
from portal.models import AuditEvent, ExternalIdentity, Membership, Role
from portal.oidc import SSOError, sign_in_from_claims
from tests.conftest import make_user

pytestmark = pytest.mark.django_db
ISSUER = "https://idp.example.com"


@pytest.fixture(autouse=True)
def _sso(settings, web):
    settings.OIDC_ISSUER = ISSUER
    web.sso_member_group, web.sso_admin_group = "eng", "eng-leads"
    web.save()


def sign_in(**claims):
    request = RequestFactory().get("/oidc/callback/")
    request.session = SessionStore()
    return sign_in_from_claims(request, {"sub": "idp-42", "email_verified": True, **claims})


def test_an_existing_account_is_found_by_verified_email_then_by_subject(bob):
    assert sign_in(email="BOB@example.com") == bob
    assert ExternalIdentity.objects.get(user=bob).subject == "idp-42"
    # Later the address changes at the provider: the subject still finds bob, no second account.
    assert sign_in(email="robert@example.com") == bob
    assert get_user_model().objects.count() == 1  # bob only: no second account


def test_an_unverified_address_is_never_matched(bob):
    with pytest.raises(SSOError, match="did not vouch for your e-mail address"):
        sign_in(email="bob@example.com", email_verified=False)
    assert not ExternalIdentity.objects.exists()


def test_a_display_name_is_never_matched(bob):
    with pytest.raises(SSOError, match="no invitation for it"):
        sign_in(email="other@example.com", name="bob", preferred_username="bob")
    assert not ExternalIdentity.objects.exists()


def test_two_accounts_with_one_address_are_refused(bob):
    make_user("bob2").__class__.objects.filter(username="bob2").update(email="bob@example.com")
    with pytest.raises(SSOError, match="Several accounts"):
        sign_in(email="bob@example.com")


def test_a_deactivated_account_is_refused(bob):
    bob.is_active = False
    bob.save()
    with pytest.raises(SSOError, match="deactivated"):
        sign_in(email="bob@example.com")


def test_group_removal_takes_back_the_teams_keys_but_hand_made_memberships_stay(bob, bob_assignment, data_team):
    Membership.objects.filter(user=bob).update(via_sso=True)
    Membership.objects.create(team=data_team, user=bob, role=Role.AUDITOR)  # added by hand: not the groups' to take
    sign_in(email="bob@example.com", groups=[])
    assert not Membership.objects.filter(user=bob, team__slug="web").exists()
    assert not Assignment.objects.filter(pk=bob_assignment.pk).exists()
    assert Membership.objects.get(user=bob, team=data_team).role == Role.AUDITOR
    removed = AuditEvent.objects.get(action="member.removed", target="bob")
    assert removed.details["assignments_removed"] == [bob_assignment.key.short_fingerprint]


def test_no_groups_claim_at_all_leaves_memberships_alone(bob):
    Membership.objects.filter(user=bob).update(via_sso=True)
    sign_in(email="bob@example.com")
    assert Membership.objects.filter(user=bob, team__slug="web").exists()


def test_groups_take_over_a_hand_made_membership_they_name(bob):
    sign_in(email="bob@example.com", groups=["eng-leads"])
    membership = Membership.objects.get(user=bob, team__slug="web")
    assert (membership.role, membership.via_sso) == (Role.ADMIN, True)
    event = AuditEvent.objects.get(action="member.role_changed", target="bob")
    assert event.details == {"from": "member", "to": "admin", "via": "sso", "groups_claim": "groups"}


def test_an_address_mail_cannot_reach_makes_no_account_and_says_why():
    """zoë@example.com from the provider: an account made with it would have every mail to it sent as an encoded word
    that names no mailbox, and recorded as sent."""
    with pytest.raises(SSOError, match="cannot mail"):
        sign_in(email="zoë@example.com", groups=["eng"])
    assert not get_user_model().objects.filter(email__startswith="zo").exists()


def test_an_account_made_by_groups_keeps_its_address_with_the_domain_in_ascii():
    user = sign_in(email="Zoe@Bücher.de", groups=["eng"])
    assert user.email == "Zoe@xn--bcher-kva.de"


@pytest.mark.parametrize("address", ["dev@intranet", "dev@mail_host.example.com"])
def test_an_ascii_address_djangos_validator_would_refuse_still_makes_an_account(address):
    """The provider vouches for it and mail can carry it: only a local part outside ASCII is refused."""
    assert sign_in(email=address, groups=["eng"]).email == address
