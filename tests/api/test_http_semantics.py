"""HTTP as a generic client sees the API: exports asked for by their media type, a request the portal
cannot read, and a wrong method at the docs page, each answered in the API's JSON with a sentence."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.test import Client

from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


# --- An export asked for by the media type the schema gives it ----------------------------------------


@pytest.mark.parametrize("accept", ["text/csv", "text/csv; charset=utf-8", "text/*", "text/csv, application/json"])
def test_the_audit_csv_export_is_served_to_a_client_that_accepts_csv(alice, bob_assignment, accept):
    response = api_client_for(alice).get("/api/v1/audit-events/?export=csv", HTTP_ACCEPT=accept)
    assert response.status_code == 200, body(response)[:200]
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body(response).decode())))
    assert "assignment.created" in {row["action"] for row in rows}


def test_the_audit_jsonl_export_is_served_to_a_client_that_accepts_ndjson(alice, bob_assignment):
    response = api_client_for(alice).get("/api/v1/audit-events/?export=jsonl", HTTP_ACCEPT="application/x-ndjson")
    assert response.status_code == 200, body(response)[:200]
    assert response["Content-Type"].startswith("application/x-ndjson")
    actions = {json.loads(line)["action"] for line in body(response).decode().splitlines()}
    assert "assignment.created" in actions


def test_the_connections_csv_export_is_served_to_a_client_that_accepts_csv(alice, bob_assignment):
    response = api_client_for(alice).get("/api/v1/connections/?export=csv", HTTP_ACCEPT="text/csv")
    assert response.status_code == 200, body(response)[:200]
    assert response["Content-Type"].startswith("text/csv")
    assert [row["user"] for row in csv.DictReader(io.StringIO(body(response).decode()))] == ["bob"]


@pytest.mark.parametrize(
    "path, accept",
    [
        ("/api/v1/audit-events/", "text/csv"),  # no export asked for: the list is JSON
        ("/api/v1/audit-events/?export=csv", "application/x-ndjson"),  # the other export's type
        ("/api/v1/audit-events/?export=jsonl", "text/csv"),
        ("/api/v1/audit-events/?export=csv", "image/png"),
        ("/api/v1/connections/?export=csv", "application/x-ndjson"),
        ("/api/v1/connections/", "text/csv"),
    ],
)
def test_an_accept_that_fits_neither_json_nor_the_export_is_refused_with_a_sentence(
    alice, bob_assignment, path, accept
):
    response = api_client_for(alice).get(path, HTTP_ACCEPT=accept)
    assert response.status_code == 406
    assert response["Content-Type"].startswith("application/json")
    detail = response.json()["detail"]
    assert "Accept" in detail and "application/json" in detail


def test_an_export_refused_for_its_filters_is_a_json_sentence_even_to_a_csv_client(alice, bob_assignment):
    response = api_client_for(alice).get("/api/v1/connections/?export=csv&state=lost", HTTP_ACCEPT="text/csv")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["field"] == "state" and "state must be one of" in response.json()["detail"]


def test_a_configuration_download_is_still_served_whatever_the_client_accepts(bob, bob_assignment):
    response = api_client_for(bob).get(
        f"/api/v1/me/configs/{bob_assignment.id}/install.sh", HTTP_ACCEPT="text/x-shellscript"
    )
    assert response.status_code == 200 and response["Content-Type"].startswith("text/x-shellscript")


# --- A request the portal cannot read: too many parameters ------------------------------------------------


def _too_many(settings) -> str:
    return "&".join(f"team=web{i}" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))


# DEBUG on (the default, what `make run` serves) too: Django's own error page read the parameters again and
# answered a 500.
@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("door", ["token", "session"])
@pytest.mark.parametrize("path", ["/api/v1/audit-events/", "/api/v1/connections/", "/api/v1/teams/"])
def test_too_many_query_parameters_on_the_api_get_a_json_sentence(settings, alice, door, path, debug):
    settings.DEBUG = debug
    if door == "token":
        client = api_client_for(alice, raise_request_exception=False)
    else:
        client = Client(raise_request_exception=False)
        client.force_login(alice)
    response = client.get(f"{path}?{_too_many(settings)}")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json"), response.content[:120]
    detail = response.json()["detail"]
    assert "too many parameters" in detail and str(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS) in detail


@pytest.mark.parametrize("debug", [False, True])
def test_too_many_query_parameters_on_a_page_get_the_usual_page(settings, alice, debug):
    settings.DEBUG = debug
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    response = client.get(f"/connections/?{_too_many(settings)}")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


# --- A wrong method at /api/v1/docs/ -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["put", "post", "delete", "patch"])
def test_a_wrong_method_at_the_api_docs_is_refused_in_the_api_envelope(settings, alice, method):
    settings.DEBUG = False
    response = getattr(api_client_for(alice, raise_request_exception=False), method)("/api/v1/docs/", {}, format="json")
    assert response.status_code == 405 and "GET" in response["Allow"]
    assert response["Content-Type"].startswith("application/json"), (response["Content-Type"], response.content[:80])
    assert method.upper() in response.json()["detail"]


def test_a_wrong_method_at_the_api_docs_with_a_session_is_refused_in_json_and_get_still_shows_the_page(alice):
    client = Client()
    client.force_login(alice)
    refused = client.post("/api/v1/docs/")
    assert refused.status_code == 405 and refused.json()["detail"]
    page = client.get("/api/v1/docs/")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")


def test_a_dead_token_at_the_api_docs_gets_the_apis_json_refusal(db):
    response = Client(HTTP_AUTHORIZATION="Bearer pat_not-a-token").get("/api/v1/docs/")
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json") and response.json()["detail"]
