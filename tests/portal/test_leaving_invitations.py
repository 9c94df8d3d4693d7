"""Someone who left a team does not get back in through an invitation: one made pointless by their joining,
or one that lapsed with its maker's admin role."""

from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory
from django.urls import reverse

from portal import invitations, renames, services
from portal.errors import RuleError
from portal.models import AuditEvent, Invitation, Membership, Role
from portal.oidc import SSOError, sign_in_from_claims
from tests.admin_forms import rename_in_the_admin
from tests.conftest import make_user

pytestmark = pytest.mark.django_db
ISSUER = "https://idp.example.com"
URL = "/api/v1/teams/web/invitations/"


@pytest.fixture(autouse=True)
def _sso(settings):
    settings.OIDC_ISSUER = ISSUER


def sso_sign_in(email: str, sub: str, **claims):
    request = RequestFactory().get("/oidc/callback/")
    request.session = SessionStore()
    return sign_in_from_claims(request, {"sub": sub, "email": email, "email_verified": True, **claims})


def withdrawals(email: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="invitation.withdrawn", target=email).order_by("id"))


def lapse(invitation_maker, team, successor) -> None:
    """The maker hands the team to `successor` and leaves it: their invitations lapse."""
    services.add_member(team=team, username=successor.username, role=Role.ADMIN, actor=invitation_maker)
    services.remove_member(membership=Membership.objects.get(team=team, user=invitation_maker), actor=successor)


# --- Joining uses up the team's other invitations for the address; leaving withdraws them --------------------


def test_a_removed_member_is_not_readmitted_by_an_invitation_from_before(client, alice, web):
    """Invited as admin, added by hand (the mail was slow), removed: neither SSO nor the old link brings her back."""
    erin = make_user("erin")
    _, raw = invitations.create_invitation(team=web, email="erin@example.com", role=Role.ADMIN, actor=alice)
    services.add_member(team=web, username="erin", role=Role.MEMBER, actor=alice)
    [used_up] = withdrawals("erin@example.com")
    assert used_up.actor_username == "alice" and "erin was added to the team" in used_up.details["reason"]
    services.remove_member(membership=Membership.objects.get(team=web, user=erin), actor=alice)

    assert sso_sign_in("erin@example.com", "idp-erin") == erin
    assert not Membership.objects.filter(team=web, user=erin).exists(), "removed, yet back in the team"
    client.force_login(erin)
    page = client.get(reverse("invitation-open", args=[raw]))
    assert page.status_code == 410 and "withdrawn" in page.content.decode()
    assert not Membership.objects.filter(team=web, user=erin).exists()


def test_leaving_withdraws_an_invitation_left_standing_from_before(client, alice, bob, web):
    """A membership from before this rule, with the team's invitation for the address still pending: leaving ends it."""
    invitation, _ = invitations.create_invitation(team=web, email="erin@example.com", role=Role.ADMIN, actor=alice)
    erin = make_user("erin")
    Membership.objects.create(team=web, user=erin, role=Role.MEMBER)  # made before joining used invitations up
    client.force_login(alice)
    assert client.post("/teams/web/members/erin/offboard/").status_code == 302

    invitation.refresh_from_db()
    assert invitation.state == "withdrawn"
    [left] = withdrawals("erin@example.com")
    assert "erin left the team" in left.details["reason"] and left.details["invitation"] == invitation.pk
    assert sso_sign_in("erin@example.com", "idp-erin") == erin
    assert not Membership.objects.filter(team=web, user=erin).exists()


def test_an_sso_group_join_withdraws_the_invitation_for_the_address(alice, web):
    """Erin's account joins by its groups claim; the team's invitation for her address is pointless from then on."""
    web.sso_member_group = "eng"
    web.save()
    erin = make_user("erin")
    invitation, _ = invitations.create_invitation(team=web, email="erin@example.com", role=Role.ADMIN, actor=alice)
    alice.is_active = False  # the invitation lapses, so this sign-in does not accept it: the groups decide alone
    alice.save()

    assert sso_sign_in("erin@example.com", "idp-erin", groups=["eng"]) == erin
    assert Membership.objects.get(team=web, user=erin).role == Role.MEMBER
    invitation.refresh_from_db()
    assert invitation.state == "withdrawn"
    [joined] = withdrawals("erin@example.com")
    assert joined.details["via"] == "sso" and "groups" in joined.details["reason"]

    alice.is_active = True  # her maker is back as admin: the link stays withdrawn all the same
    alice.save()
    assert sso_sign_in("erin@example.com", "idp-erin", groups=[]) == erin
    assert not Membership.objects.filter(team=web, user=erin).exists()
    assert sso_sign_in("erin@example.com", "idp-erin") == erin
    assert not Membership.objects.filter(team=web, user=erin).exists()


def test_accepting_an_invitation_uses_up_the_team_s_other_one_for_the_account_s_address(client, alice, web):
    """Erin joins with her account through a link sent to another of her addresses."""
    erin = make_user("erin")
    first, _ = invitations.create_invitation(team=web, email="erin@example.com", role=Role.ADMIN, actor=alice)
    _, raw = invitations.create_invitation(team=web, email="erin@home.example", role=Role.MEMBER, actor=alice)
    client.force_login(erin)
    assert client.get(reverse("invitation-open", args=[raw])).status_code == 302
    assert client.post("/invitations/accept/", {"action": "join"}).status_code == 302
    assert Membership.objects.get(team=web, user=erin).role == Role.MEMBER

    first.refresh_from_db()
    assert first.state == "withdrawn"
    [used_up] = withdrawals("erin@example.com")
    assert "joined the team with another invitation" in used_up.details["reason"]


# --- A lapsed invitation is not pending ------------------------------------------------------------------


def test_a_lapsed_invitation_does_not_make_an_account_at_an_sso_sign_in(alice, bob, web):
    invitation, _ = invitations.create_invitation(team=web, email="erin@example.com", role=Role.MEMBER, actor=alice)
    lapse(alice, web, bob)
    assert invitation.refusal() is not None  # the invitation page says it lapsed

    with pytest.raises(SSOError, match="no invitation for it"):
        sso_sign_in("erin@example.com", "idp-erin")
    assert not get_user_model().objects.filter(email__iexact="erin@example.com").exists()


def test_a_lapsed_invitation_does_not_block_the_next_admin_from_inviting_again(api, alice, bob, web):
    old, _ = invitations.create_invitation(team=web, email="erin@example.com", role=Role.MEMBER, actor=alice)
    lapse(alice, web, bob)

    answer = api(bob).post(URL, {"email": "erin@example.com", "role": "member"}, format="json")
    assert answer.status_code == 201, answer.json()
    assert Invitation.objects.get(pk=answer.json()["id"]).refusal() is None
    # The lapsed one is withdrawn by the new one: were alice made admin again, it would not come back to life.
    old.refresh_from_db()
    assert old.state == "withdrawn"
    [replaced] = withdrawals("erin@example.com")
    assert replaced.actor_username == "bob" and "replaced" in replaced.details["reason"]


def test_a_lapsed_invitation_is_not_listed_as_pending(api, client, alice, bob, web):
    invitations.create_invitation(team=web, email="erin@example.com", role=Role.MEMBER, actor=alice)
    services.add_member(team=web, username="bob", role=Role.ADMIN, actor=alice)
    invitations.create_invitation(team=web, email="gina@example.com", role=Role.MEMBER, actor=bob)
    services.add_member(team=web, username="alice", role=Role.MEMBER, actor=bob)  # alice is no admin any more

    listed = [i["email"] for i in api(bob).get(URL).json()["results"]]
    assert listed == ["gina@example.com"]
    client.force_login(bob)
    page = client.get("/teams/web/invitations/").content.decode()
    assert "gina@example.com" in page and "erin@example.com" not in page
    assert "1 pending invitation." in client.get("/teams/web/").content.decode()


@pytest.mark.parametrize(
    "change, usable",
    [
        ("nothing", True),
        ("maker demoted to member", False),
        ("maker removed", False),
        ("maker deactivated", False),
        ("maker deleted", False),
        ("maker is staff outside the team", True),
        ("maker made staff after leaving", True),
    ],
)
def test_the_lists_and_the_link_agree_on_which_invitations_work(alice, bob, web, change, usable):
    """One rule: what the lists and SSO count as pending is what the link's page accepts."""
    maker = make_user("sam", staff=True) if "staff outside" in change else alice
    invitation, _ = invitations.create_invitation(team=web, email="erin@example.com", role=Role.MEMBER, actor=maker)
    services.add_member(team=web, username="bob", role=Role.ADMIN, actor=alice)
    alices = Membership.objects.get(team=web, user=alice)
    if change == "maker demoted to member":
        services.add_member(team=web, username="alice", role=Role.MEMBER, actor=bob)
    elif change in {"maker removed", "maker made staff after leaving"}:
        services.remove_member(membership=alices, actor=bob)
        if change == "maker made staff after leaving":
            get_user_model().objects.filter(pk=alice.pk).update(is_staff=True)
    elif change == "maker deactivated":
        get_user_model().objects.filter(pk=alice.pk).update(is_active=False)
    elif change == "maker deleted":
        alice.delete()

    invitation = Invitation.objects.select_related("team", "created_by").get(pk=invitation.pk)
    assert (invitation.refusal() is None) is usable
    assert Invitation.objects.usable().filter(pk=invitation.pk).exists() is usable


# --- The API's one-time link --------------------------------------------------------------------------


def test_the_api_answer_with_the_one_time_link_is_not_kept_by_caches(api, alice):
    answer = api(alice).post(URL, {"email": "erin@example.com", "role": "member"}, format="json")
    assert answer.status_code == 201 and answer.json()["accept_url"]
    assert "no-store" in answer["Cache-Control"]


def test_an_old_link_to_a_new_address_does_not_bring_a_removed_member_back_through_the_join_page(
    client, alice, bob, web
):
    """alice invites bob at his other address, then removes him: the link, opened with his password account, is
    refused with a sentence (SSO refuses it the same way, tests/portal/test_sso_identity_changes.py)."""
    _, raw = invitations.create_invitation(team=web, email="robert@home.example", role=Role.ADMIN, actor=alice)
    services.remove_member(membership=Membership.objects.get(team=web, user=bob), actor=alice)
    client.force_login(bob)
    client.get(reverse("invitation-open", args=[raw]))
    response = client.post("/invitations/accept/", {"action": "join"})
    assert response.status_code == 409
    assert "was sent before you left the team, so it does not bring you back" in response.content.decode()
    assert not Membership.objects.filter(team=web, user=bob).exists()


def test_a_join_that_loses_the_invitation_to_another_tab_is_told_so(client, alice, web):
    """The link is used in another tab (or by someone else) between the page's check and its claim: a sentence,
    not an error page."""
    erin, frank = make_user("erin"), make_user("frank")
    _, raw = invitations.create_invitation(team=web, email="erin@example.com", role=Role.MEMBER, actor=alice)
    client.force_login(erin)
    client.get(reverse("invitation-open", args=[raw]))
    assert "Join as erin" in client.get("/invitations/accept/").content.decode()
    real_claim = invitations.claim

    def frank_claims_it_first(invitation, user):
        assert real_claim(invitation, frank)
        return real_claim(invitation, user)

    with mock.patch.object(invitations, "claim", frank_claims_it_first):
        response = client.post("/invitations/accept/", {"action": "join"})
    assert response.status_code == 409
    assert "This invitation was already used." in response.content.decode()
    assert not Membership.objects.filter(team=web, user=erin).exists()


# --- A rename in the admin site: the account's leave rows name it as it was called then -------------------------


def test_a_renamed_leaver_is_not_brought_back_by_an_invitation_from_before(root_client, alice, bob, web):
    """alice invites robert@ (bob's new address at the provider, not yet known here) and removes bob; staff then
    rename his account to robert in the admin site. His next SSO sign-in, with robert@, does not bring him back."""
    sso_sign_in("bob@example.com", "idp-bob")
    invitation, _ = invitations.create_invitation(team=web, email="robert@example.com", role=Role.ADMIN, actor=alice)
    services.remove_member(membership=Membership.objects.get(team=web, user=bob), actor=alice)
    rename_in_the_admin(root_client, bob, "robert")
    rename_in_the_admin(root_client, bob, "rob")  # and once more: every earlier name counts

    assert sso_sign_in("robert@example.com", "idp-bob") == bob
    assert not Membership.objects.filter(team=web, user=bob).exists(), "the leaver is back in web, as admin"
    invitation.refresh_from_db()
    assert invitation.state == "withdrawn"


def test_a_renamed_leaver_cannot_join_with_an_invitation_from_before(root_client, alice, bob, web):
    invitation, _ = invitations.create_invitation(team=web, email="robert@example.com", role=Role.ADMIN, actor=alice)
    services.remove_member(membership=Membership.objects.get(team=web, user=bob), actor=alice)
    rename_in_the_admin(root_client, bob, "robert")
    with pytest.raises(RuleError, match="was sent before you left the team"):
        invitations.accept_invitation(invitation=invitation, user=bob)
    assert not Membership.objects.filter(team=web, user=bob).exists()


def test_a_name_another_account_had_before_lends_it_no_leave_rows(root_client, alice, bob, dave, web):
    """dave leaves web and is renamed david; then bob, who never left, is renamed dave: the invitation from before
    dave left still brings bob in."""
    invitation, _ = invitations.create_invitation(team=web, email="bobby@example.com", role=Role.ADMIN, actor=alice)
    services.remove_member(membership=Membership.objects.get(team=web, user=dave), actor=alice)
    rename_in_the_admin(root_client, dave, "david")
    rename_in_the_admin(root_client, bob, "dave")

    assert [name for name, _, _ in renames.names_held(dave)] == ["david", "dave"]
    assert [name for name, _, _ in renames.names_held(bob)] == ["dave", "bob"]
    assert invitations.left_since_invited(invitation, dave) is not None
    assert invitations.left_since_invited(invitation, bob) is None


def test_reading_an_accounts_history_takes_a_fixed_number_of_queries(
    root_client, alice, bob, web, django_assert_max_num_queries
):
    invitation, _ = invitations.create_invitation(team=web, email="robert@example.com", role=Role.ADMIN, actor=alice)
    services.remove_member(membership=Membership.objects.get(team=web, user=bob), actor=alice)
    for name in ("b1", "b2", "b3", "b4", "b5"):
        rename_in_the_admin(root_client, bob, name)
    with django_assert_max_num_queries(4):
        assert invitations.left_since_invited(invitation, bob) is not None
