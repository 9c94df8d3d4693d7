"""One refusal type (portal.errors.RuleError), converted once per edge: API 400, form error."""

from __future__ import annotations

import pytest

import gateways.connections
import gateways.rules
import gateways.services
import portal.audit
import portal.errors
import portal.services

pytestmark = pytest.mark.django_db


def test_rules_and_services_share_one_refusal_type():
    assert gateways.rules.RuleError is portal.errors.RuleError
    for module in (portal.services, gateways.services, portal.audit, gateways.connections):
        assert not hasattr(module, "ServiceError") and not hasattr(module, "FilterError")
        assert not hasattr(module, "AuditFilterError")


def test_a_service_refusal_is_a_400_naming_the_field(api, alice):
    response = api(alice).post("/api/v1/teams/web/members/", {"username": "nobody", "role": "member"}, format="json")
    assert response.status_code == 400
    sentence = "There is no active user called 'nobody'. Invite them by e-mail instead (team page, Invitations)."
    assert response.json() == {"detail": sentence, "field": "username", "errors": {"username": [sentence]}}


def test_a_filter_refusal_is_a_400_naming_the_parameter(api, staff):
    client = api(staff)
    response = client.get("/api/v1/connections/?state=lost")
    assert response.status_code == 400
    assert response.json()["field"] == "state" and "state must be one of" in response.json()["detail"]
    response = client.get("/api/v1/audit-events/?since=yesterday")
    assert response.status_code == 400
    assert response.json()["field"] == "since"


def test_a_refusal_without_a_field_is_a_400_with_only_the_sentence(api, alice, tokaify_key):
    client = api(alice)
    client.delete(f"/api/v1/keys/{tokaify_key.id}/")
    response = client.post(f"/api/v1/keys/{tokaify_key.id}/assignments/", {"username": "alice"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"detail": "This key is revoked and cannot be assigned."}


def test_a_page_shows_the_refusal_next_to_its_field(client, staff, web):
    client.force_login(staff)
    response = client.post("/teams/new/", {"name": "Again", "slug": "web"})
    assert response.status_code == 400
    assert response.context["form"].errors["slug"] == [
        "A team with the slug 'web' already exists. Choose another slug."
    ]


def test_an_unknown_address_is_a_json_404_under_the_api_and_a_page_elsewhere(api, client, bob):
    response = api(bob).get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response.json() == {
        "detail": "There is nothing at /api/v1/nothing-here/. The API is described at /api/v1/schema/."
    }
    client.force_login(bob)
    page = client.get("/nothing-here/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


def test_a_server_error_is_a_json_sentence_under_the_api(rf):
    from django.utils.module_loading import import_string

    from config.urls import handler500

    response = import_string(handler500)(rf.get("/api/v1/teams/"))
    assert response.status_code == 500
    assert b"failed on its side" in response.content and response["Content-Type"] == "application/json"


def test_a_retried_member_removal_is_a_404_with_a_sentence(api, alice, bob):
    """A retrying client sends the DELETE again after its answer was lost: 404, which it can take for "done"."""
    client = api(alice)
    assert client.delete("/api/v1/teams/web/members/bob/").status_code == 204
    again = client.delete("/api/v1/teams/web/members/bob/")
    assert again.status_code == 404
    assert again.json() == {"detail": "bob is not a member of web: removed already, or never added."}


def test_a_retried_delete_of_what_is_gone_names_no_model(api, alice, bob_assignment):
    """get_object_or_404's "No Assignment matches the given query." named a model, not what was sent."""
    client = api(alice)
    assert client.delete(f"/api/v1/assignments/{bob_assignment.pk}/").status_code == 204
    again = client.delete(f"/api/v1/assignments/{bob_assignment.pk}/")
    assert again.status_code == 404
    assert again.json() == {
        "detail": "Nothing with that id or name is here: removed already, never made, or not yours to see."
    }


def test_the_refusal_of_a_retried_create_names_what_exists(api, alice, bob, web, tokenbay):
    """The first answer, with its id, was lost: the retry's refusal names the id to carry on with."""
    client = api(alice)
    body = {"gateway": "tokenbay", "label": "CI", "secret": "sk-tokenbay-retried-0123456789abcdef"}
    key = client.post("/api/v1/teams/web/keys/", body, format="json").json()
    assert f"(id {key['id']})" in client.post("/api/v1/teams/web/keys/", body, format="json").json()["detail"]

    url = f"/api/v1/keys/{key['id']}/assignments/"
    assignment = client.post(url, {"username": "bob"}, format="json").json()
    assert f"(assignment {assignment['id']})" in client.post(url, {"username": "bob"}, format="json").json()["detail"]

    invited = client.post("/api/v1/teams/web/invitations/", {"email": "kim@example.com"}, format="json").json()
    again = client.post("/api/v1/teams/web/invitations/", {"email": "kim@example.com"}, format="json").json()
    assert f"(id {invited['id']})" in again["detail"]


def test_a_member_removal_refusal_quotes_a_long_name_cut(api, alice):
    """The 404 quotes the address's user name as every refusal quotes what was sent: cut past ECHOED_AT_MOST."""
    name = "x" * 3000
    response = api(alice).delete(f"/api/v1/teams/web/members/{name}/")
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert name not in detail and "x" * portal.errors.ECHOED_AT_MOST + "…" in detail and len(detail) < 200, detail
