"""Slugs and user names are parts of page addresses: "new" is the create page's, and a browser drops "." and ".."."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from gateways.models import Gateway
from portal.errors import RuleError
from portal.invitations import create_account, unique_username
from portal.models import AuditEvent, Team
from tests.admin_forms import form_data
from tests.portal.test_invitations import create_account_through

pytestmark = pytest.mark.django_db
RESERVED = "is the address of the page that creates one"


def test_a_team_slug_new_is_refused_on_the_api_and_the_page(api, staff, client):
    answer = api(staff).post("/api/v1/teams/", {"name": "New hires", "slug": "new"}, format="json")
    assert answer.status_code == 400, answer.json()
    assert answer.json()["field"] == "slug" and RESERVED in answer.json()["detail"]
    client.force_login(staff)
    page = client.post("/teams/new/", {"name": "New hires", "slug": "new"})
    assert page.status_code == 400 and RESERVED in page.content.decode()  # the form again, with the sentence
    assert not Team.objects.filter(slug="new").exists()


def test_a_gateway_slug_new_is_refused_on_the_api_and_in_the_admin(api, staff, root_client):
    body = {"name": "Newco", "slug": "new", "base_url": "https://gw.example.com"}
    answer = api(staff).post("/api/v1/gateways/", body, format="json")
    assert answer.status_code == 400, answer.json()
    assert answer.json()["field"] == "slug" and RESERVED in answer.json()["detail"]
    data = form_data(root_client.get("/admin/gateways/gateway/add/"))
    data.update(slug="new", name="Newco", base_url="https://gw.example.com", probe_prompt="ping")
    page = root_client.post("/admin/gateways/gateway/add/", data)
    assert page.status_code == 200 and "slug" in page.context["adminform"].form.errors
    assert not Gateway.objects.filter(slug="new").exists()


@pytest.mark.parametrize("username", [".", ".."])
def test_an_invitation_cannot_make_an_account_named_only_with_dots(api, alice, client, username):
    created = api(alice).post("/api/v1/teams/web/invitations/", {"email": "erin@example.com"}, format="json")
    answer = create_account_through(client, created.json()["accept_url"], username)
    assert answer.status_code == 200
    assert "only dots" in " ".join(answer.context["form"].errors["username"])
    assert not get_user_model().objects.filter(username=username).exists()
    assert not AuditEvent.objects.filter(action="account.created").exists()


def test_the_account_service_refuses_a_name_of_dots_with_its_field(db):
    with pytest.raises(RuleError, match="only dots") as refused:
        create_account(username="..", email="", password=None, via="sso")
    assert refused.value.field == "username"


def test_sso_makes_a_usable_name_from_a_wanted_name_of_dots(db):
    assert unique_username("..") == "user"
    assert unique_username("a..") == "a.."  # a name with a letter is an address's ordinary part


@pytest.mark.parametrize("path", ["/admin/auth/user/add/", "change"])
def test_the_admin_refuses_a_user_name_of_dots(root_client, bob, path):
    if path == "change":
        path = f"/admin/auth/user/{bob.pk}/change/"
        data = form_data(root_client.get(path))
        data["username"] = ".."
    else:
        data = {"username": "..", "password1": "a-long-fresh-password-42", "password2": "a-long-fresh-password-42"}
        data["usable_password"] = "true"
    page = root_client.post(path, data)
    assert page.status_code == 200, page.status_code
    assert "only dots" in " ".join(page.context["adminform"].form.errors["username"])
    assert not get_user_model().objects.filter(username="..").exists()
