"""Contracts a client of the API relies on: writes sent without the trailing slash, HEAD on a download,
answers that match the served OpenAPI schema, a `format` query parameter, and the install code kept
out of an error page."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from django.test import Client
from rest_framework.test import APIClient

from alerts.services import create_channel
from gateways import devices
from gateways.config.formats import FORMATS
from gateways.devices import create_device
from gateways.models import Assignment, ProbeResult
from gateways.services import assign_key, revoke_key
from portal.invitations import create_invitation
from portal.models import AccessToken, AuditEvent, Role, Team
from tests.api.schema_check import errors, served_schema
from tests.conftest import api_client_for, make_user
from tests.portal.test_redaction import leaks

pytestmark = pytest.mark.django_db


# --- A write sent without its trailing slash --------------------------------------------------------------


def session_client(user) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.mark.parametrize("debug", [True, False], ids=["DEBUG", "production"])
@pytest.mark.parametrize("door", ["token", "session"])
def test_a_write_without_its_trailing_slash_is_a_308_to_the_address_with_it(
    settings, staff, alice, bob, tokenbay_key, debug, door
):
    settings.DEBUG = debug
    writes = [
        ("post", "/api/v1/teams", {"name": "Ops", "slug": "ops"}, "/api/v1/teams/"),
        ("post", "/api/v1", {}, "/api/v1/"),
        ("patch", "/api/v1/teams/web?x=1", {"sso_member_group": "devs"}, "/api/v1/teams/web/?x=1"),
        ("put", "/api/v1/teams/web", {}, "/api/v1/teams/web/"),  # no PUT there: its 405 says so, after the 308
        ("post", "/api/v1/teams/web/members", {"username": "bob", "role": "auditor"}, "/api/v1/teams/web/members/"),
        ("delete", f"/api/v1/keys/{tokenbay_key.id}", None, f"/api/v1/keys/{tokenbay_key.id}/"),
    ]
    client = api_client_for(staff, raise_request_exception=False) if door == "token" else session_client(staff)
    for method, path, body, slashed in writes:
        response = getattr(client, method)(path, body, format="json")
        assert response.status_code == 308, (method, path, response.status_code, response.content[:200])
        assert response["Location"] == slashed
        assert response.json()["detail"] == f"API addresses end with a slash: send this {method.upper()} to {slashed}."
    assert not Team.objects.filter(slug="ops").exists()  # nothing was done at the address without the slash


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("debug", [True, False], ids=["DEBUG", "production"])
def test_a_client_that_follows_redirects_gets_its_write_done_without_the_trailing_slash(live_server, settings, debug):
    settings.DEBUG = debug
    staff = make_user("staff", staff=True)
    _, raw = AccessToken.issue(staff, name="contract tests")
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {raw}"}, follow_redirects=True
    ) as http:
        created = http.post("/api/v1/teams", json={"name": "Ops", "slug": "ops"})
        assert created.status_code == 201, created.text
        assert [r.status_code for r in created.history] == [308]
        changed = http.patch("/api/v1/teams/ops", json={"sso_member_group": "devs"})
        assert changed.status_code == 200 and changed.json()["sso_member_group"] == "devs", changed.text
    assert Team.objects.get(slug="ops").sso_member_group == "devs"


def test_a_device_posted_without_the_trailing_slash_is_sent_to_the_devices_address(bob, bob_assignment):
    client = api_client_for(bob)
    path = f"/api/v1/me/configs/{bob_assignment.id}/devices"
    response = client.post(path, {"name": "pc", "platform": "linux"}, format="json")
    assert response.status_code == 308 and response["Location"] == path + "/"
    assert path + "/" in response.json()["detail"]
    followed = client.post(path, {"name": "pc", "platform": "linux"}, format="json", follow=True)
    assert followed.status_code == 201 and followed.json()["install_url"]


def test_a_get_without_its_trailing_slash_keeps_its_redirect_and_a_download_keeps_its_405(bob, bob_assignment):
    client = api_client_for(bob)
    assert client.get("/api/v1/teams").status_code == 301  # APPEND_SLASH: a GET loses nothing
    refused = client.post(f"/api/v1/me/configs/{bob_assignment.id}/bash", {}, format="json")
    assert refused.status_code == 405 and refused.json()["detail"]  # a download takes no POST, slash or not


# --- HEAD on a download ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/"])
def test_a_head_on_a_download_is_refused_and_counts_as_no_download(api, alice, bob, bob_assignment, suffix):
    events_before = AuditEvent.objects.count()
    response = api(bob).head(f"/api/v1/me/configs/{bob_assignment.id}/bash{suffix}")
    assert response.status_code == 405 and response["Content-Type"].startswith("application/json")
    assert "GET" in response["Allow"] and "HEAD" not in response["Allow"]
    assignment = Assignment.objects.get(pk=bob_assignment.pk)
    assert (assignment.download_count, assignment.last_download_at) == (0, None)
    assert AuditEvent.objects.count() == events_before
    rows = api(alice).get("/api/v1/connections/?state=never_downloaded").json()["results"]
    assert [row["assignment"] for row in rows] == [bob_assignment.id]


def test_a_head_on_the_pages_download_is_refused_too_and_counts_as_no_download(bob, bob_assignment):
    client = Client()
    client.force_login(bob)
    assert client.head(f"/setup/{bob_assignment.id}/bash").status_code == 405
    assert Assignment.objects.get(pk=bob_assignment.pk).download_count == 0
    assert client.get(f"/setup/{bob_assignment.id}/bash").status_code == 200  # the download itself still works
    assert Assignment.objects.get(pk=bob_assignment.pk).download_count == 1


# --- Answers against the served schema ------------------------------------------------------------------


@pytest.fixture
def world(web, staff, alice, bob, dave, tokaify_key, tokenbay_key, bob_assignment):
    """Rows whose answers hold a null: a key without expiry, a scheduled probe, things made by someone since deleted."""
    assign_key(key=tokaify_key, username="bob", actor=alice)
    ProbeResult.objects.create(key=tokenbay_key, gateway=tokenbay_key.gateway, verdict="ok", trigger="schedule")
    device, _ = create_device(assignment=bob_assignment, name="laptop", platform="linux", actor=bob)
    gone = make_user("gone")
    web.memberships.create(user=gone, role=Role.ADMIN)
    create_invitation(team=web, email="erin@example.com", role=Role.MEMBER, actor=gone)
    create_invitation(team=web, email="frank@example.com", role=Role.MEMBER, actor=alice)  # gone's lapses: unlisted
    channel = create_channel(team=web, kind="email", target="ops@example.com", actor=gone)
    gone.delete()
    return {"channel": channel, "key": tokenbay_key, "assignment": bob_assignment, "device": device}


# Every GET of the schema with a JSON answer: who reads it, and the real path.
READS = {
    "/api/v1/": ("alice", "/api/v1/"),
    "/api/v1/audit-events/": ("alice", "/api/v1/audit-events/"),
    "/api/v1/channels/{channel_id}/": ("alice", "/api/v1/channels/{channel}/"),
    "/api/v1/connections/": ("alice", "/api/v1/connections/"),
    "/api/v1/devices/": ("bob", "/api/v1/devices/"),
    "/api/v1/gateways/": ("alice", "/api/v1/gateways/"),
    "/api/v1/gateways/{slug}/": ("alice", "/api/v1/gateways/tokenbay/"),
    "/api/v1/keys/{key_id}/": ("alice", "/api/v1/keys/{key}/"),
    "/api/v1/keys/{key_id}/assignments/": ("alice", "/api/v1/keys/{key}/assignments/"),
    "/api/v1/keys/{key_id}/probes/": ("alice", "/api/v1/keys/{key}/probes/"),
    "/api/v1/me/configs/": ("bob", "/api/v1/me/configs/"),
    "/api/v1/me/configs/{assignment_id}/{format_name}": ("bob", "/api/v1/me/configs/{assignment}/settings.json"),
    "/api/v1/probes/": ("alice", "/api/v1/probes/"),
    "/api/v1/teams/": ("alice", "/api/v1/teams/"),
    "/api/v1/teams/{slug}/": ("alice", "/api/v1/teams/web/"),
    "/api/v1/teams/{slug}/channels/": ("alice", "/api/v1/teams/web/channels/"),
    "/api/v1/teams/{slug}/invitations/": ("alice", "/api/v1/teams/web/invitations/"),
    "/api/v1/teams/{slug}/keys/": ("alice", "/api/v1/teams/web/keys/"),
    "/api/v1/teams/{slug}/members/": ("alice", "/api/v1/teams/web/members/"),
}


def test_every_read_of_the_api_answers_what_the_served_schema_says(api, world, alice, bob):
    users = {"alice": alice, "bob": bob}
    schema = served_schema(api(alice))
    reads = {path for path, ops in schema["paths"].items() if "get" in ops}
    assert reads == set(READS), "a new GET in the schema: say here who reads it and where"
    ids = {name: row.pk for name, row in world.items()}
    found = []
    for who, path in READS.values():
        path = path.format(**ids)
        response = api(users[who]).get(path)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
        if isinstance(body := json.loads(response.content), dict) and "results" in body:
            assert body["results"], f"{path}: an empty list checks nothing"
        found += errors(schema, "GET", path, response)
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("format_name", list(FORMATS))
def test_every_download_format_answers_a_documented_media_type(api, bob, bob_assignment, format_name):
    client = api(bob)
    response = client.get(f"/api/v1/me/configs/{bob_assignment.id}/{format_name}")
    assert response.status_code == 200
    assert errors(served_schema(client), "GET", f"/api/v1/me/configs/{bob_assignment.id}/{format_name}", response) == []


def test_a_downloads_refusals_are_documented_with_their_sentence(api, alice, bob, bob_assignment, tokenbay_key):
    client = api(bob)
    schema = served_schema(client)
    unknown = client.get(f"/api/v1/me/configs/{bob_assignment.id}/tcsh")
    tokenbay_key.custom_headers = {"X-Discount": "50%"}  # a percent sign cmd cannot carry
    tokenbay_key.save()
    unwritable = client.get(f"/api/v1/me/configs/{bob_assignment.id}/cmd")
    revoke_key(key=tokenbay_key, actor=alice)
    revoked = client.get(f"/api/v1/me/configs/{bob_assignment.id}/bash")
    assert [unknown.status_code, unwritable.status_code, revoked.status_code] == [404, 422, 410]
    for response in (unknown, unwritable, revoked):
        path = response.request["PATH_INFO"]
        assert errors(schema, "GET", path, response) == []
    refusals = schema["paths"]["/api/v1/me/configs/{assignment_id}/{format_name}"]["get"]["responses"]
    for code in ("404", "410", "422"):
        detail = refusals[code]["content"]["application/json"]["schema"]
        assert detail["$ref"].split("/")[-1] in schema["components"]["schemas"]
        assert schema["components"]["schemas"][detail["$ref"].split("/")[-1]]["required"] == ["detail"]


# --- ?format= ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/teams/", "/api/v1/me/configs/", "/api/v1/gateways/tokaify/"])
def test_a_format_query_parameter_is_ignored_like_any_other(api, bob, bob_assignment, path):
    client = api(bob)
    response = client.get(path + "?format=csv")
    assert response.status_code == 200, response.content
    assert response.json() == client.get(path).json()


def test_a_download_with_a_format_query_parameter_is_the_same_download(api, bob, bob_assignment):
    client = api(bob)
    response = client.get(f"/api/v1/me/configs/{bob_assignment.id}/settings.json?format=text")
    assert response.status_code == 200 and json.loads(response.content)["env"]


@pytest.mark.parametrize(
    "query,media_type",
    [
        ("?format=json", "application/vnd.oai.openapi+json"),
        ("?format=yaml", "application/vnd.oai.openapi"),
        ("", "application/vnd.oai.openapi"),
    ],
)
def test_the_schema_still_answers_the_format_it_is_asked_for(api, bob, query, media_type):
    response = api(bob).get("/api/v1/schema/" + query)
    assert response.status_code == 200 and response["Content-Type"].split(";")[0] == media_type
    assert b"/api/v1/me/configs/" in response.content


def test_a_browser_asking_for_the_schema_as_yaml_gets_yaml(bob):
    client = Client()
    client.force_login(bob)
    response = client.get("/api/v1/schema/?format=yaml", HTTP_ACCEPT="text/html,*/*")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert response.content.startswith(b"openapi:")


# --- The install code on an error page ------------------------------------------------------------------


def test_a_device_creation_failing_after_the_code_is_made_stars_it_in_the_views_own_frame(
    settings, caplog, bob, bob_assignment, monkeypatch
):
    """The one-time install code installs a device once: the view's frame on an error page shows no trace of it.

    create_device also hands the code to the redaction net (portal.crypto.remember); that net is held off
    here, so what is checked is the view's own sensitive_variables.
    """
    import gateways.api.views

    settings.DEBUG = True
    caplog.set_level(logging.DEBUG)
    codes = []
    made = devices.create_device

    def remember_the_code(**kwargs):
        device, code = made(**kwargs)
        codes.append(code)
        return device, code

    class FailingResponse(gateways.api.views.Response):
        def __setitem__(self, header, value):
            raise RuntimeError("forced failure in Response.__setitem__")

    monkeypatch.setattr(devices, "create_device", remember_the_code)
    monkeypatch.setattr(devices, "remember", lambda text: None)
    monkeypatch.setattr(gateways.api.views, "Response", FailingResponse)
    client = api_client_for(bob, raise_request_exception=False)
    response = client.post(
        f"/api/v1/me/configs/{bob_assignment.id}/devices/",
        {"name": "pc", "platform": "linux"},
        format="json",
        HTTP_ACCEPT="*/*",
    )
    body = response.content.decode()
    assert response.status_code == 500 and "forced failure in Response.__setitem__" in body  # the debug page
    [code] = codes
    assert leaks(body, code) == [], body[:2000]
    logged = caplog.text + "\n".join(record.getMessage() for record in caplog.records)
    assert leaks(logged, code) == []
