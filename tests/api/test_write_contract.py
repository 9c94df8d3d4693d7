"""The served OpenAPI schema against what the API's writes and errors really answer and accept.

Real requests, checked with tests/api/schema_check: statuses, media types and bodies, undeclared fields
refused, and request bodies against the request schema a generated client sends by.
"""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from alerts.services import create_channel
from gateways.models import GatewayKey
from portal.invitations import create_invitation
from portal.models import Role
from tests.api import schema_check
from tests.api.schema_check import errors, request_errors, served_schema
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(web, staff, alice, bob, dave, tokaify_key, bob_assignment):
    invitation, _ = create_invitation(team=web, email="erin@example.com", role=Role.MEMBER, actor=alice)
    channel = create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    users = {"staff": staff, "alice": alice, "bob": bob, "dave": dave}
    return {
        "clients": {name: api_client_for(user, raise_request_exception=False) for name, user in users.items()},
        "K": tokaify_key.id,
        "A": bob_assignment.id,
        "I": invitation.id,
        "C": channel.id,
    }


# --- 1. Error statuses the writes answer, and the schema does not list ------------------------------------

# (who, method, path, body, the status the API answers): one real refusal per write operation.
REFUSALS = [
    ("staff", "post", "/api/v1/gateways/", {"name": "GW"}, 400),
    ("alice", "post", "/api/v1/gateways/", {"slug": "gw", "name": "GW", "base_url": "https://gw.example.com"}, 403),
    ("staff", "patch", "/api/v1/gateways/nope/", {"name": "x"}, 404),
    ("staff", "post", "/api/v1/teams/", {"name": "Ops"}, 400),
    (None, "post", "/api/v1/teams/", {"name": "Ops", "slug": "ops"}, 401),
    ("bob", "patch", "/api/v1/teams/web/", {"sso_member_group": "devs"}, 403),
    ("alice", "post", "/api/v1/teams/web/members/", {"username": "nobody"}, 400),
    ("alice", "delete", "/api/v1/teams/web/members/nobody/", None, 404),
    ("dave", "post", "/api/v1/teams/web/keys/", {"gateway": "tokaify", "label": "K", "secret": "sk-x"}, 403),
    ("alice", "patch", "/api/v1/keys/{K}/", {"timeout_ms": 5}, 400),
    ("bob", "delete", "/api/v1/keys/{K}/", None, 404),
    ("alice", "post", "/api/v1/keys/{K}/assignments/", {}, 400),
    ("bob", "delete", "/api/v1/assignments/{A}/", None, 403),
    ("bob", "post", "/api/v1/keys/{K}/probes/", None, 404),
    ("bob", "post", "/api/v1/me/configs/{A}/devices/", {"name": "pc", "platform": "beos"}, 400),
    ("alice", "post", "/api/v1/teams/web/invitations/", {"email": "notanemail"}, 400),
    ("bob", "delete", "/api/v1/teams/web/invitations/{I}/", None, 403),
    ("dave", "post", "/api/v1/teams/web/channels/", {"kind": "email", "target": "x@example.com"}, 403),
    ("dave", "delete", "/api/v1/channels/{C}/", None, 403),
    ("bob", "delete", "/api/v1/devices/999999/", None, 404),
]


@pytest.mark.parametrize("who,method,path,body,status", REFUSALS, ids=lambda v: v if isinstance(v, str) else None)
def test_every_refusal_of_a_write_is_a_status_the_schema_documents(world, who, method, path, body, status):
    path = path.format(**{k: v for k, v in world.items() if k != "clients"})
    client = world["clients"][who] if who else APIClient()
    schema = served_schema(world["clients"]["alice"])
    response = getattr(client, method)(path, body, format="json") if body is not None else getattr(client, method)(path)
    assert response.status_code == status, response.content[:300]
    assert response.json()["detail"]
    assert errors(schema, method.upper(), path, response) == []


def test_a_body_too_large_and_a_form_body_are_documented_refusals(settings, world):
    client = world["clients"]["staff"]
    schema = served_schema(client)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    too_large = client.post("/api/v1/teams/", {"name": "a" * 5000, "slug": "a"}, format="json")
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1048576
    form = client.post("/api/v1/teams/", {"name": "a", "slug": "a"})  # multipart: the API takes JSON only
    assert [too_large.status_code, form.status_code] == [413, 415]
    assert errors(schema, "POST", "/api/v1/teams/", too_large) == []
    assert errors(schema, "POST", "/api/v1/teams/", form) == []


# --- 2. The exports' media types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,media_type",
    [
        ("/api/v1/audit-events/?export=csv", "text/csv"),
        ("/api/v1/audit-events/?export=jsonl", "application/x-ndjson"),
        ("/api/v1/connections/?export=csv", "text/csv"),
    ],
)
def test_an_export_the_schema_offers_answers_a_media_type_it_documents(world, path, media_type):
    client = world["clients"]["alice"]
    schema = served_schema(client)
    response = client.get(path)
    assert response.status_code == 200 and response["Content-Type"].startswith(media_type)
    documented = schema["paths"][path.split("?")[0]]["get"]["responses"]["200"]["content"]
    assert media_type in documented, f"200 {media_type} is not documented ({sorted(documented)})"
    assert errors(schema, "GET", path, response) == []  # a streamed answer, read by the check


def test_a_list_without_export_is_still_a_documented_json_page(world):
    client = world["clients"]["alice"]
    schema = served_schema(client)
    for path in ("/api/v1/audit-events/", "/api/v1/connections/"):
        response = client.get(path)
        assert response.status_code == 200 and set(response.json()) == {"results", "next"}
        assert errors(schema, "GET", path, response) == []


# --- 1b. Refusals of reads, and the downloads' own refusals --------------------------------------------------

READ_REFUSALS = [
    (None, "/api/v1/gateways/", 401),
    (None, "/api/v1/keys/{K}/", 401),
    ("bob", "/api/v1/teams/web/keys/", 403),
    ("bob", "/api/v1/devices/?team=web", 403),
    ("bob", "/api/v1/devices/?team=nope", 404),
    ("bob", "/api/v1/audit-events/?since=garbage", 400),
    ("alice", "/api/v1/keys/00000000-0000-0000-0000-000000000000/", 404),
    ("alice", "/api/v1/teams/nope/members/", 404),
    ("alice", "/api/v1/probes/?verdict=nope", 400),
    ("alice", "/api/v1/connections/?export=xml", 400),
]


@pytest.mark.parametrize("who,path,status", READ_REFUSALS)
def test_a_refused_read_is_a_status_the_schema_documents(world, who, path, status):
    path = path.format(**{k: v for k, v in world.items() if k != "clients"})
    client = world["clients"][who] if who else APIClient()
    response = client.get(path)
    assert response.status_code == status, response.content[:300]
    assert response.json()["detail"]
    assert errors(served_schema(world["clients"]["alice"]), "GET", path, response) == []


def test_a_download_keeps_its_own_documented_refusals(world):
    schema = served_schema(world["clients"]["bob"])
    responses = schema["paths"]["/api/v1/me/configs/{assignment_id}/{format_name}"]["get"]["responses"]
    assert responses["404"]["description"] == "Unknown format or assignment."
    assert {"404", "410", "422"} <= set(responses)
    response = world["clients"]["bob"].get(f"/api/v1/me/configs/{world['A']}/nope")
    assert response.status_code == 404
    assert errors(schema, "GET", f"/api/v1/me/configs/{world['A']}/nope", response) == []


# --- 3. Request bodies: the schema accepts what the API refuses --------------------------------------------

# Bodies the schema's request schema accepts and the API refuses for a reason a schema can state
# (a required field, a pattern, a maximum length).
SCHEMA_TOO_LOOSE = [
    ("staff", "post", "/api/v1/gateways/", {}),  # slug, name and base_url are required: none is in `required`
    ("staff", "post", "/api/v1/gateways/", {"slug": "gw2", "name": "GW"}),  # base_url missing
    ("staff", "post", "/api/v1/teams/", {"name": "Ops", "slug": "Ops"}),  # pattern allows upper case
    ("staff", "post", "/api/v1/gateways/", {"slug": "MyGW", "name": "GW", "base_url": "https://gw.example.com"}),
    ("bob", "post", "/api/v1/me/configs/{A}/devices/", {"name": "x" * 150, "platform": "linux"}),  # 100, not 200
    # A webhook's secret is 16 to 200 characters: the schema said only "at most 200".
    (
        "alice",
        "post",
        "/api/v1/teams/web/channels/",
        {"kind": "webhook", "target": "https://h.example.com/a", "secret": "short"},
    ),
]


@pytest.mark.parametrize("who,method,path,body", SCHEMA_TOO_LOOSE)
def test_a_body_the_api_refuses_for_its_shape_is_refused_by_the_request_schema(world, who, method, path, body):
    path = path.format(**{k: v for k, v in world.items() if k != "clients"})
    client = world["clients"][who]
    schema = served_schema(client)
    response = getattr(client, method)(path, body, format="json")
    assert response.status_code == 400, response.content[:300]
    assert request_errors(schema, method.upper(), path, body) != [], (
        f"the schema accepts a body the API refuses: {response.json()['detail']}"
    )


# Bodies both the request schema and the API take: the schema is no stricter than the API either.
SCHEMA_AND_API_ACCEPT = [
    ("staff", "post", "/api/v1/gateways/", {"slug": "gw-2", "name": "GW", "base_url": "https://gw.example.com"}, 201),
    ("staff", "patch", "/api/v1/gateways/tokaify/", {"name": "Tokaify 2"}, 200),  # a PATCH names what it changes
    ("staff", "post", "/api/v1/teams/", {"name": "Ops", "slug": "ops_2"}, 201),
    ("bob", "post", "/api/v1/me/configs/{A}/devices/", {"name": "x" * 100, "platform": "linux"}, 201),
    ("staff", "patch", "/api/v1/gateways/tokaify/", {"docs_url": ""}, 200),  # how a client clears the docs link
    ("staff", "patch", "/api/v1/gateways/tokaify/", {"docs_url": "https://docs.example.com/"}, 200),
    (
        "alice",
        "post",
        "/api/v1/teams/web/channels/",
        {"kind": "webhook", "target": "https://h.example.com/a", "secret": "s" * 16},
        201,
    ),
    (
        "alice",
        "post",
        "/api/v1/teams/web/channels/",
        {"kind": "slack", "target": "https://h.example.com/b", "secret": ""},
        201,
    ),
]


@pytest.mark.parametrize("who,method,path,body,status", SCHEMA_AND_API_ACCEPT)
def test_a_body_the_request_schema_accepts_is_taken_by_the_api(world, who, method, path, body, status):
    path = path.format(**{k: v for k, v in world.items() if k != "clients"})
    client = world["clients"][who]
    schema = served_schema(client)
    assert request_errors(schema, method.upper(), path, body) == []
    response = getattr(client, method)(path, body, format="json")
    assert response.status_code == status, response.content[:300]
    assert errors(schema, method.upper(), path, response) == []


@pytest.mark.parametrize(
    "who,method,path,body",
    [
        ("staff", "patch", "/api/v1/gateways/tokaify/", {"docs_url": ""}),
        ("alice", "post", "/api/v1/teams/web/channels/", {"kind": "email", "target": "ops@example.com", "secret": ""}),
    ],
)
def test_an_empty_string_the_api_takes_is_valid_to_a_validator_that_checks_no_formats(world, who, method, path, body):
    """drf-spectacular's `oneOf [formatted, maxLength 0]` refused "" where `format` is not checked (most generated
    clients): "" is valid under both branches. The schema says `anyOf`."""
    schema = served_schema(world["clients"][who])
    assert request_errors(schema, method.upper(), path, body, formats=False) == []
    assert request_errors(schema, method.upper(), path, body) == []


def test_the_channel_secret_says_a_webhook_needs_one(world):
    secret = served_schema(world["clients"]["alice"])["components"]["schemas"]["ChannelInput"]["properties"]["secret"]
    assert secret["description"].startswith("Required for a webhook: 16 to 200 characters")
    assert secret["anyOf"][0]["minLength"] == 16


def test_an_upper_case_slug_is_refused_with_the_services_sentence(world):
    response = world["clients"]["staff"].post("/api/v1/teams/", {"name": "Ops", "slug": "Ops"}, format="json")
    assert response.status_code == 400
    sentence = "Use lowercase letters in the slug: 'ops', not 'Ops'."
    assert response.json() == {"detail": sentence, "field": "slug", "errors": {"slug": [sentence]}}


# --- 4. The error envelope (README, The API) -----------------------------------------------------------


@pytest.mark.parametrize(
    "who,method,path,body,field",
    [
        ("alice", "patch", "/api/v1/keys/{K}/", {"custom_headers": {"X-B": None}}, "custom_headers"),
        ("staff", "patch", "/api/v1/gateways/tokaify/", {"extra_env": {"ANTHROPIC_X": None}}, "extra_env"),
        ("staff", "patch", "/api/v1/gateways/tokaify/", {"troubleshooting": [["only one"]]}, "troubleshooting"),
    ],
)
def test_errors_holds_each_fields_messages_as_a_list_of_sentences(world, who, method, path, body, field):
    """README: `"errors"`: each field's messages, `{"slug": ["..."]}`."""
    path = path.format(**{k: v for k, v in world.items() if k != "clients"})
    response = getattr(world["clients"][who], method)(path, body, format="json")
    assert response.status_code == 400
    answer = response.json()
    assert answer["field"] == field
    assert all(isinstance(m, list) and all(isinstance(s, str) for s in m) for m in answer["errors"].values()), answer
    assert list(answer["errors"]) == [field]
    assert errors(served_schema(world["clients"][who]), method.upper(), path, response) == []


@pytest.mark.parametrize(
    "value,what", [(5, "a number"), (1.5, "a number"), (True, "true or false"), (["v"], "a list"), ({}, "an object")]
)
def test_a_custom_header_value_that_is_not_a_string_is_refused_naming_the_header(world, value, what):
    """{"X-B": 5} was stored as the header value "5", where the schema says a value is a string."""
    client = world["clients"]["alice"]
    path = f"/api/v1/keys/{world['K']}/"
    response = client.patch(path, {"custom_headers": {"X-B": value}}, format="json")
    assert response.status_code == 400
    sentence = f"X-B: A header's value must be text, in quotes; {what} is not."
    assert response.json()["errors"] == {"custom_headers": [sentence]}
    assert response.json()["field"] == "custom_headers"
    assert GatewayKey.objects.get(pk=world["K"]).custom_headers == {}
    assert errors(served_schema(client), "PATCH", path, response) == []


def test_a_refused_entry_of_an_object_field_is_named_in_its_sentence(world):
    response = world["clients"]["alice"].patch(
        f"/api/v1/keys/{world['K']}/", {"custom_headers": {"X-B": None}}, format="json"
    )
    assert response.json()["errors"] == {"custom_headers": ["X-B: This field may not be null."]}
    assert response.json()["detail"] == "custom_headers: X-B: This field may not be null."


@pytest.mark.parametrize("body", [["a", "list"], "a string", 42])
def test_a_body_that_is_not_an_object_is_refused_in_detail_alone(world, body):
    """README: `errors` holds the refused fields' messages; a body refused as a whole names none."""
    client = world["clients"]["staff"]
    response = client.post("/api/v1/teams/", body, format="json")
    assert response.status_code == 400
    answer = response.json()
    assert set(answer) == {"detail"} and answer["detail"], answer
    assert errors(served_schema(client), "POST", "/api/v1/teams/", response) == []


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("post", "/api/v1/gateways/", {"name": "GW", "base_url": "https://gw.example.com"}),  # slug missing
        ("patch", "/api/v1/gateways/tokaify/", {"slug": "other"}),  # a slug cannot change
    ],
)
def test_a_gateway_write_refusing_its_slug_names_the_field(world, method, path, body):
    """README: errors carry `"field"` when one input is at fault (the team POST already does for its slug)."""
    response = getattr(world["clients"]["staff"], method)(path, body, format="json")
    assert response.status_code == 400
    assert response.json().get("field") == "slug", response.json()
    assert response.json()["detail"] in (
        "slug is required to add a gateway.",
        "A gateway's slug cannot change; it is part of every config URL.",
    )


# --- 5. Refusals answered before any view, for every operation of the schema ---------------------------------

# A value for each path parameter: before the view runs, no id has to name anything.
PATH_VALUES = {
    "slug": "web",
    "username": "bob",
    "format_name": "bash",
    "key_id": "00000000-0000-0000-0000-000000000000",
    "channel_id": "00000000-0000-0000-0000-000000000000",
}


def every_operation(schema: dict) -> list[tuple[str, str, str]]:
    """(method, path template, a real path) for each operation the schema lists."""
    return [
        (method.upper(), template, re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m[1], "1"), template))
        for template, operations in schema["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    ]


def test_a_nul_in_the_query_is_a_documented_400_on_every_operation(world):
    """RejectNulCharactersMiddleware answers before authentication, whatever the operation."""
    client = world["clients"]["alice"]
    schema = served_schema(client)
    found = []
    for method, _template, path in every_operation(schema):
        response = client.generic(method, f"{path}?x=%00", "{}", content_type="application/json")
        assert response.status_code == 400 and "NUL" in response.json()["detail"], (method, path)
        found += errors(schema, method, path, response)
    assert found == [], "\n".join(found)


def test_a_session_owing_its_second_factor_gets_a_documented_403_on_every_operation(settings, world, alice):
    """TwoFactorMiddleware holds back a session (the schema's cookieAuth) on every API address, reads included."""
    schema = served_schema(world["clients"]["alice"])
    settings.REQUIRE_2FA_FOR_ADMINS = True
    client = APIClient(raise_request_exception=False)
    client.force_login(alice)  # an admin without an authenticator: owes its enrolment
    found = []
    for method, template, path in every_operation(schema):
        assert ["cookieAuth"] in [list(r) for r in schema["paths"][template][method.lower()]["security"]]
        response = client.generic(method, path, "{}", content_type="application/json")
        assert response.status_code == 403 and "two-factor" in response.json()["detail"], (method, path)
        found += errors(schema, method, path, response)
    assert found == [], "\n".join(found)


def test_an_accept_header_the_api_cannot_answer_is_a_documented_406(world):
    """Content negotiation runs before authentication and the view; only a download answers any Accept."""
    client = world["clients"]["alice"]
    schema = served_schema(client)
    found = []
    for method, template, path in every_operation(schema):
        response = client.generic(method, path, "{}", content_type="application/json", HTTP_ACCEPT="application/xml")
        if template == "/api/v1/me/configs/{assignment_id}/{format_name}":
            assert response.status_code != 406 and "406" not in schema["paths"][template]["get"]["responses"]
            continue
        assert response.status_code == 406 and response.json()["detail"], (method, path, response.status_code)
        found += errors(schema, method, path, response)
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    "path,accept",
    [
        ("/api/v1/audit-events/?export=csv", "application/x-ndjson"),
        ("/api/v1/audit-events/?export=jsonl", "text/csv"),
        ("/api/v1/connections/?export=csv", "application/x-ndjson"),
        ("/api/v1/audit-events/", "text/csv"),
    ],
)
def test_an_exports_406_is_a_documented_status(world, path, accept):
    """README: an export answers JSON or its own type; "any other Accept gets 406 with a sentence"."""
    client = world["clients"]["alice"]
    response = client.get(path, HTTP_ACCEPT=accept)
    assert response.status_code == 406 and "Accept header" in response.json()["detail"]
    assert errors(served_schema(client), "GET", path, response) == []


def test_the_schema_check_checks_date_time_and_uri_formats():
    """jsonschema skips both formats silently without its extras (rfc3339-validator, rfc3987): a `format: uri`
    answering "" passed every schema test above. tests/api/schema_check checks them itself."""
    node = {
        "type": "object",
        "properties": {"at": {"type": "string", "format": "date-time"}, "url": {"type": "string", "format": "uri"}},
    }
    schema = {"components": {"schemas": {}}}

    def refused(body: dict) -> list[str]:
        return [e.message for e in schema_check._validator(schema, node).iter_errors(body)]

    assert refused({"at": "2026-05-01T10:00:00Z", "url": "https://example.com/x"}) == []
    assert refused({"at": "2026-05-01T10:00:00.5+02:00", "url": "mailto:ops@example.com"}) == []
    assert refused({"at": "2026-05-01T10:00:00", "url": ""}) == [
        "'2026-05-01T10:00:00' is not a 'date-time'",
        "'' is not a 'uri'",
    ]
    assert refused({"at": "2026-02-30T10:00:00Z", "url": "/api/v1/"}) == [
        "'2026-02-30T10:00:00Z' is not a 'date-time'",
        "'/api/v1/' is not a 'uri'",
    ]


def test_a_gateway_without_a_docs_link_answers_what_the_schema_says(world):
    """GatewayOutput.docs_url was `format: uri`, and every gateway without a docs link answers ""."""
    client = world["clients"]["staff"]
    schema = served_schema(client)
    found = []
    for path in ("/api/v1/gateways/", "/api/v1/gateways/tokaify/"):
        response = client.get(path)
        found += errors(schema, "GET", path, response)
    made = client.post(
        "/api/v1/gateways/", {"slug": "gw", "name": "GW", "base_url": "https://gw.example.com"}, format="json"
    )
    assert made.status_code == 201 and made.json()["docs_url"] == ""
    found += errors(schema, "POST", "/api/v1/gateways/", made)
    assert found == [], "\n".join(found)
