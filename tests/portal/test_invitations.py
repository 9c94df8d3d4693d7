"""Invitations: made by a team admin (API and page), mailed through a real SMTP server, opened once."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from portal.models import AuditEvent, Invitation, Membership
from tests.smtp_server import body, link_in

pytestmark = pytest.mark.django_db
URL = "/api/v1/teams/web/invitations/"


def path_of(url: str) -> str:
    return urlsplit(url).path


def create_account_through(client, link: str, username: str, password: str = "a-long-fresh-password-42"):
    opened = client.get(path_of(link))
    assert opened.status_code == 302 and opened["Location"] == "/invitations/accept/"
    page = client.get("/invitations/accept/")
    assert page.status_code == 200
    return client.post(
        "/invitations/accept/",
        {"action": "create", "username": username, "password1": password, "password2": password},
    )


def test_an_invitation_is_mailed_and_its_link_makes_an_account_and_a_member(api, alice, smtp, client):
    response = api(alice).post(URL, {"email": "Erin@Example.COM", "role": "auditor"}, format="json")
    assert response.status_code == 201
    created = response.json()
    assert created["email"] == "Erin@example.com"
    assert created["role"] == "auditor" and created["id"] and created["emailed"] is True
    expires = parse_datetime(created["expires_at"])
    assert timedelta(days=6, hours=23) < expires - timezone.now() <= timedelta(days=7)

    [message] = smtp.to("Erin@example.com")
    assert "Web" in message["Subject"]
    assert link_in(message) == created["accept_url"]
    assert "alice invites you" in body(message)

    # The link is shown once: the list and the database never hold it.
    listing = api(alice).get(URL).json()
    assert listing["next"] is None
    assert [i["email"] for i in listing["results"]] == ["Erin@example.com"]
    assert "accept_url" not in listing["results"][0]
    token = path_of(created["accept_url"]).split("/")[2]
    stored = Invitation.objects.get()
    assert token not in str(stored.__dict__) and stored.digest

    joined = create_account_through(client, created["accept_url"], "erin")
    assert joined.status_code == 302 and joined["Location"] == "/teams/web/"
    erin = get_user_model().objects.get(username="erin")
    assert erin.email == "Erin@example.com" and erin.check_password("a-long-fresh-password-42")
    assert Membership.objects.get(team__slug="web", user=erin).role == "auditor"
    assert client.get("/teams/web/").status_code == 200  # signed in as erin
    actions = set(AuditEvent.objects.filter(team_slug="web").values_list("action", flat=True))
    assert {"invitation.created", "invitation.accepted"} <= actions
    assert AuditEvent.objects.filter(action="account.created", target="erin", details__via="invitation").exists()

    again = client.get(path_of(created["accept_url"]))
    assert again.status_code == 410
    assert "already used" in again.content.decode()
    assert api(alice).get(URL).json()["results"] == []


def test_the_team_page_invites_shows_the_link_once_and_mails_it(client, alice, smtp):
    client.force_login(alice)
    team_page = client.get("/teams/web/").content.decode()
    assert "Invite by e-mail" in team_page
    response = client.post("/teams/web/invitations/", {"email": "frank@example.com", "role": "member"}, follow=True)
    page = response.content.decode()
    assert response.redirect_chain == [("/teams/web/invitations/", 302)]  # a reload asks again with GET
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0") or "no-cache" in response["Cache-Control"]
    [message] = smtp.to("frank@example.com")
    link = link_in(message)
    assert f"data-invitation-link>{link}<" in page
    assert "It was e-mailed to frank@example.com" in page
    reloaded = client.get("/teams/web/invitations/").content.decode()  # the link is shown once
    assert "frank@example.com" in reloaded and link not in reloaded
    assert "already has a pending invitation" not in reloaded
    assert Invitation.objects.filter(email="frank@example.com").count() == 1


def test_without_mail_the_page_and_api_still_give_the_link(api, alice, settings, mailoutbox):
    settings.EMAIL_CONFIGURED = False
    response = api(alice).post(URL, {"email": "gina@example.com"}, format="json")
    assert response.status_code == 201
    assert response.json()["emailed"] is False
    assert response.json()["accept_url"].startswith("http://testserver/invitations/inv_")
    assert response.json()["role"] == "member"


def test_withdrawn_and_expired_links_get_a_sentence(api, alice, client):
    withdrawn = api(alice).post(URL, {"email": "hal@example.com"}, format="json").json()
    assert api(alice).delete(f"{URL}{withdrawn['id']}/").status_code == 204
    response = client.get(path_of(withdrawn["accept_url"]))
    assert response.status_code == 410
    assert "withdrawn by the team" in response.content.decode()
    again = api(alice).delete(f"{URL}{withdrawn['id']}/")
    assert again.status_code == 404 and "withdrawn already" in again.json()["detail"]  # done: a retry takes it so
    assert AuditEvent.objects.filter(action="invitation.withdrawn", target="hal@example.com").count() == 1

    expiring = api(alice).post(URL, {"email": "ivy@example.com"}, format="json").json()
    with time_machine.travel(timezone.now() + timedelta(days=7, minutes=1)):
        response = client.get(path_of(expiring["accept_url"]))
        assert response.status_code == 410
        assert "has expired" in response.content.decode()
        assert api(alice).get(URL).json()["results"] == []  # no longer pending

    forged = client.get("/invitations/inv_000000000000_" + "A" * 43 + "/")
    assert forged.status_code == 404
    assert "not valid" in forged.content.decode()


@pytest.mark.parametrize("lapse", ["demoted", "removed", "deactivated"])
def test_an_invitation_lapses_when_its_maker_is_no_longer_an_admin(api, alice, bob, client, lapse, web):
    """It grants what its maker could: an admin invitation must not outlive the admin who made it."""
    made = api(alice).post(URL, {"email": "kim@example.com", "role": "admin"}, format="json").json()
    opened_before = client.get(path_of(made["accept_url"]))  # the page was open while the maker lost admin
    assert opened_before.status_code == 302
    Membership.objects.filter(team=web, user=bob).update(role="admin")  # so alice is not the last admin
    if lapse == "demoted":
        Membership.objects.filter(team=web, user=alice).update(role="member")
    elif lapse == "removed":
        Membership.objects.filter(team=web, user=alice).delete()
    else:
        get_user_model().objects.filter(pk=alice.pk).update(is_active=False)
    sentence = "This invitation was made by someone who is no longer an admin of Web, so it cannot be used."
    response = client.post(
        "/invitations/accept/",
        {
            "action": "create",
            "username": "kim",
            "password1": "a-long-fresh-password-42",
            "password2": "a-long-fresh-password-42",
        },
    )
    assert response.status_code == 410 and sentence in response.content.decode()
    assert client.get(path_of(made["accept_url"])).status_code == 410
    assert not get_user_model().objects.filter(username="kim").exists()  # no account, so no membership either


def test_an_invitation_does_not_make_a_second_account_with_an_address_in_use(api, alice, charlie, client):
    charlie.email = "charlie@example.com"
    charlie.save(update_fields=["email"])
    made = api(alice).post(URL, {"email": "Charlie@example.com"}, format="json").json()
    response = create_account_through(client, made["accept_url"], "charlie-two")
    assert response.status_code == 200
    assert (
        "An account with the address Charlie@example.com exists already. Sign in with it" in response.content.decode()
    )
    assert not get_user_model().objects.filter(username="charlie-two").exists()


def test_a_link_opened_in_one_browser_is_used_once_even_if_two_accept(api, alice, client, django_user_model):
    link = api(alice).post(URL, {"email": "jo@example.com"}, format="json").json()["accept_url"]
    client.get(path_of(link))
    invitation = Invitation.objects.get()
    Invitation.objects.filter(pk=invitation.pk).update(accepted_at=timezone.now())  # another tab won the race
    response = client.post(
        "/invitations/accept/",
        {"action": "create", "username": "jo", "password1": "x-Y-z-123456", "password2": "x-Y-z-123456"},
    )
    assert response.status_code == 410
    assert not django_user_model.objects.filter(username="jo").exists()  # nothing half-made


def test_a_signed_in_user_joins_with_their_account(api, alice, charlie, client):
    link = api(alice).post(URL, {"email": "charlie@example.com", "role": "member"}, format="json").json()["accept_url"]
    client.force_login(charlie)
    client.get(path_of(link))
    page = client.get("/invitations/accept/").content.decode()
    assert "Join as charlie" in page and "Create your account" not in page
    response = client.post("/invitations/accept/", {"action": "join"})
    assert response.status_code == 302
    assert Membership.objects.get(team__slug="web", user=charlie).role == "member"


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"email": "not-an-address"}, "email"),
        ({"email": "k@example.com", "role": "owner"}, "role"),
        ({"email": "bob@example.com"}, "already belongs to a member"),
    ],
)
def test_bad_invitations_are_a_400_with_a_sentence(api, alice, bob, body, fragment):
    response = api(alice).post(URL, body, format="json")
    assert response.status_code == 400
    assert fragment in response.json()["detail"]
    assert not Invitation.objects.exists()


def test_a_second_pending_invitation_for_the_same_address_is_refused(api, alice):
    assert api(alice).post(URL, {"email": "lee@example.com"}, format="json").status_code == 201
    response = api(alice).post(URL, {"email": "LEE@example.com"}, format="json")
    assert response.status_code == 400
    assert "already has a pending invitation" in response.json()["detail"]


def test_the_account_form_applies_the_password_rules(api, alice, client):
    link = api(alice).post(URL, {"email": "max@example.com"}, format="json").json()["accept_url"]
    response = create_account_through(client, link, "max", password="password")
    assert response.status_code == 200
    assert "too common" in response.content.decode()
    assert not get_user_model().objects.filter(username="max").exists()
    assert Invitation.objects.get().state == "pending"


def test_the_team_page_names_its_sso_groups_for_admins_only(client, alice, bob):
    client.force_login(alice)
    response = client.post("/teams/web/sso-groups/", {"sso_member_group": "eng", "sso_admin_group": "eng-leads"})
    assert response.status_code == 302
    page = client.get("/teams/web/").content.decode()
    assert 'value="eng-leads"' in page
    assert AuditEvent.objects.get(action="team.updated").details["sso_member_group"] == {"from": "", "to": "eng"}
    same = client.post("/teams/web/sso-groups/", {"sso_member_group": "x", "sso_admin_group": "x"}, follow=True)
    assert "Name different groups" in same.content.decode()
    client.force_login(bob)
    assert client.post("/teams/web/sso-groups/", {"sso_member_group": "all"}).status_code == 403
    assert "Invite by e-mail" not in client.get("/teams/web/").content.decode()


def test_adding_an_unknown_user_points_to_invitations(client, alice):
    client.force_login(alice)
    page = client.post("/teams/web/members/", {"username": "nobody", "role": "member"}, follow=True).content.decode()
    assert "no active user called" in page and "Invite them by e-mail" in page
