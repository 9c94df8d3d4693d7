"""With PORTAL_URL set, every mailed link is at the portal's public address, as alert mails are, whatever host
name the request that caused the mail came in by (an internal one a script uses, say); without it, the request's."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from alerts.delivery import deliver_due
from portal.mail import wait_for_mails_after_response
from portal.models import Membership, Role, UnconfirmedEmail
from tests.conftest import make_user
from tests.smtp_server import link_in

pytestmark = pytest.mark.django_db

INTERNAL = "portal.internal:8000"
PUBLIC = "https://portal.example.com"


@pytest.fixture
def internal_host(settings):
    settings.PORTAL_URL = PUBLIC
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "portal.internal", "testserver"]


def test_an_invitation_made_through_the_api_at_an_internal_address_mails_the_public_link(
    api, alice, smtp, internal_host
):
    response = api(alice).post(
        "/api/v1/teams/web/invitations/", {"email": "frank@example.com"}, format="json", HTTP_HOST=INTERNAL
    )
    assert response.status_code == 201 and response.json()["emailed"] is True
    [message] = smtp.to("frank@example.com")
    assert link_in(message).startswith(f"{PUBLIC}/invitations/inv_"), link_in(message)
    assert response.json()["accept_url"] == link_in(message)


def test_an_invitation_made_on_the_page_at_an_internal_address_mails_and_shows_the_public_link(
    client, alice, smtp, internal_host
):
    client.force_login(alice)
    response = client.post(
        "/teams/web/invitations/", {"email": "frank@example.com", "role": "member"}, HTTP_HOST=INTERNAL, follow=True
    )
    [message] = smtp.to("frank@example.com")
    link = link_in(message)
    assert link.startswith(f"{PUBLIC}/invitations/inv_") and link in response.content.decode()
    assert client.__class__().get(urlsplit(link).path).status_code == 302  # the path opens the invitation


def test_the_self_assignment_notice_links_to_the_public_team_page(
    api, alice, tokaify_key, smtp, internal_host, django_capture_on_commit_callbacks
):
    Membership.objects.create(team=tokaify_key.team, user=make_user("erin"), role=Role.ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        response = api(alice).post(
            f"/api/v1/keys/{tokaify_key.id}/assignments/", {"username": "alice"}, format="json", HTTP_HOST=INTERNAL
        )
    assert response.status_code == 201
    deliver_due()  # the notice goes through the alerts queue, as manage.py notify sends it
    [message] = smtp.to("erin@example.com")
    assert link_in(message) == f"{PUBLIC}/teams/web/", link_in(message)


def test_the_confirmation_mail_links_to_the_public_address(client, bob, smtp, internal_host):
    UnconfirmedEmail.objects.create(user=bob, email=bob.email)
    client.force_login(bob)
    assert client.post("/account/confirm-email/", HTTP_HOST=INTERNAL).status_code == 302
    [message] = smtp.to("bob@example.com")
    link = link_in(message)
    assert link.startswith(f"{PUBLIC}/account/confirm-email/"), link
    assert client.post(urlsplit(link).path).status_code == 302
    assert not UnconfirmedEmail.objects.filter(user=bob).exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the reset mail goes in a thread of its own
@pytest.mark.parametrize("portal_url", [PUBLIC, "http://portal.example.com:8080"])
def test_the_password_reset_mail_links_to_the_public_address(client, bob, smtp, internal_host, settings, portal_url):
    settings.PORTAL_URL = portal_url
    assert client.post("/password_reset/", {"email": "bob@example.com"}, HTTP_HOST=INTERNAL).status_code == 302
    wait_for_mails_after_response()
    [message] = smtp.to("bob@example.com")
    link = link_in(message)
    assert link.startswith(f"{portal_url}/reset/"), link
    assert client.get(urlsplit(link).path, follow=True).context["validlink"]


def test_without_portal_url_links_use_the_address_the_request_came_in_by(api, alice, smtp, settings):
    settings.PORTAL_URL = ""
    response = api(alice).post("/api/v1/teams/web/invitations/", {"email": "frank@example.com"}, format="json")
    [message] = smtp.to("frank@example.com")
    assert link_in(message).startswith("http://testserver/invitations/inv_")
    assert response.json()["accept_url"] == link_in(message)
