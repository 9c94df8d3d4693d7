"""API input nobody expected: text that is not Unicode, fields an endpoint does not take, names too long.

Each is refused with a 400 and a sentence that says what is wrong, and nothing is written.
"""

from __future__ import annotations

import json

import pytest
from django.apps import apps

from gateways.models import GatewayKey
from portal.models import Team
from tests.api.schema_check import errors, served_schema
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db

# Rows a request may touch without writing anything a person did (sign-in bookkeeping).
UNTRACKED = {"accesstoken", "session", "accessattempt", "accesslog", "accessfailurelog"}


def every_row() -> dict[str, str]:
    """Each model's rows, as text: two calls compare equal when nothing was written in between."""
    return {
        model._meta.label: json.dumps(list(model.objects.order_by("pk").values()), default=str, sort_keys=True)
        for model in apps.get_models()
        if model._meta.model_name not in UNTRACKED
    }


@pytest.fixture
def world(settings, web, data_team, alice, bob, charlie, staff, tokaify_key, bob_assignment):
    settings.DEBUG = False
    users = {"alice": alice, "bob": bob, "staff": staff}
    return {
        "clients": {name: api_client_for(user, raise_request_exception=False) for name, user in users.items()},
        "K": tokaify_key.id,
        "A": bob_assignment.id,
    }


def send(world, who: str, method: str, path: str, body: bytes | dict):
    client = world["clients"][who]
    path = path.format(K=world["K"], A=world["A"])
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.generic(method.upper(), path, raw, content_type="application/json")


# --- L1, L2: half of a surrogate pair ------------------------------------------------------------------------

# (who, method, path, JSON text, the field it is in): every choice field, and every object whose names the
# portal echoes in a refusal.
SURROGATES = [
    ("alice", "POST", "/api/v1/teams/web/members/", '{"username": "charlie", "role": "\\ud800"}', "role"),
    ("alice", "POST", "/api/v1/teams/web/invitations/", '{"email": "z@example.com", "role": "\\ud800"}', "role"),
    ("alice", "POST", "/api/v1/teams/web/channels/", '{"kind": "\\ud800", "target": "ops@example.com"}', "kind"),
    ("bob", "POST", "/api/v1/me/configs/{A}/devices/", '{"name": "pc", "platform": "\\ud800"}', "platform"),
    (
        "staff",
        "POST",
        "/api/v1/gateways/",
        '{"slug": "gw", "name": "GW", "base_url": "https://gw.example.com", "auth_scheme": "\\ud800"}',
        "auth_scheme",
    ),
    ("staff", "PATCH", "/api/v1/gateways/tokaify/", '{"model_id_style": "\\ud800"}', "model_id_style"),
    ("staff", "PATCH", "/api/v1/gateways/tokaify/", '{"probe_mode": "\\ud800"}', "probe_mode"),
    ("alice", "PATCH", "/api/v1/keys/{K}/", '{"custom_headers": {"\\ud800": "\\u0000"}}', "custom_headers"),
    (
        "alice",
        "POST",
        "/api/v1/teams/web/keys/",
        '{"gateway": "tokaify", "label": "L", "secret": "sk-abcdefgh12345678", "custom_headers": {"\\udfff": null}}',
        "custom_headers",
    ),
    ("staff", "PATCH", "/api/v1/gateways/tokaify/", '{"extra_env": {"\\ud800": null}}', "extra_env"),
    ("staff", "PATCH", "/api/v1/gateways/tokaify/", '{"troubleshooting": [["a", "b\\udc00"]]}', "troubleshooting"),
]


@pytest.mark.parametrize("who,method,path,raw,field", SURROGATES, ids=[f"{c[1]} {c[2]} {c[4]}" for c in SURROGATES])
def test_half_a_surrogate_pair_is_a_400_that_says_so_and_writes_nothing(world, who, method, path, raw, field):
    before = every_row()
    response = send(world, who, method, path, raw.encode())
    assert response.status_code == 400, response.content[:300]
    answer = response.json()
    assert "half of a UTF-16 surrogate pair" in answer["detail"]
    assert "valid Unicode" in answer["detail"]
    assert answer["field"] == field
    assert every_row() == before


def test_half_a_surrogate_pair_in_a_field_name_is_refused_without_naming_a_field(world):
    response = send(world, "staff", "POST", "/api/v1/teams/", b'{"name": "Ops", "slug": "ops", "\\ud83d": 1}')
    assert response.status_code == 400
    assert "(\\ud83d)" in response.json()["detail"]
    assert "field" not in response.json()
    assert not Team.objects.filter(slug="ops").exists()


def test_a_whole_surrogate_pair_is_text_like_any_other(world):
    response = send(world, "staff", "POST", "/api/v1/teams/", b'{"name": "Ops \\ud83d\\ude80", "slug": "ops"}')
    assert response.status_code == 201, response.content[:300]
    assert Team.objects.get(slug="ops").name == "Ops \N{ROCKET}"


# --- L3: fields an endpoint does not take ----------------------------------------------------------------------


def test_disabling_a_key_with_the_channels_field_name_is_refused_and_points_to_is_enabled(world, tokaify_key):
    response = send(world, "alice", "PATCH", "/api/v1/keys/{K}/", {"enabled": False})
    assert response.status_code == 400
    answer = response.json()
    assert answer["field"] == "enabled"
    assert "did you mean is_enabled?" in answer["detail"]
    tokaify_key.refresh_from_db()
    assert tokaify_key.is_enabled is True


@pytest.mark.parametrize(
    "who,path,body,hint",
    [
        ("alice", "/api/v1/keys/{K}/", {"lable": "typo"}, "did you mean label?"),
        ("staff", "/api/v1/gateways/tokaify/", {"base_uri": "https://other.example.com"}, "did you mean base_url?"),
        ("alice", "/api/v1/teams/web/", {"colour": "red"}, "it takes sso_member_group and sso_admin_group"),
        # Shown by GET but not changed here: alone in a PATCH it would be a change silently dropped.
        ("alice", "/api/v1/teams/web/", {"name": "Web renamed"}, "it sets sso_member_group and sso_admin_group"),
    ],
)
def test_a_patch_of_a_field_the_endpoint_does_not_take_is_a_400_naming_it(world, who, path, body, hint):
    before = every_row()
    response = send(world, who, "PATCH", path, body)
    assert response.status_code == 400, response.content[:300]
    answer = response.json()
    name = next(iter(body))
    assert answer["field"] == name
    assert answer["detail"].startswith(f"{name}: ")
    assert hint in answer["detail"]
    assert every_row() == before


@pytest.mark.parametrize(
    "body,sentence",
    [
        ({"x": 1}, "x: This endpoint takes no body (stream and retry_betas are query parameters); send none."),
        (
            {"stream": False},
            "stream: This endpoint reads it from the query string, not the body: send ?stream=... instead.",
        ),
    ],
)
def test_a_probe_request_with_a_body_field_is_a_400_naming_it_and_probes_nothing(world, body, sentence):
    """POST /keys/{id}/probes/ takes no body; {"x": 1} answered 201 and probed, where every other write refuses it."""
    before = every_row()
    response = send(world, "alice", "POST", f"/api/v1/keys/{world['K']}/probes/", body)
    assert response.status_code == 400, response.content[:300]
    assert response.json()["detail"] == sentence
    assert response.json()["field"] == next(iter(body))
    assert every_row() == before
    schema = served_schema(world["clients"]["alice"])
    assert errors(schema, "POST", f"/api/v1/keys/{world['K']}/probes/", response) == []


def test_a_probe_request_with_a_form_body_is_a_400_and_probes_nothing(world):
    before = every_row()
    path = f"/api/v1/keys/{world['K']}/probes/"
    client = world["clients"]["alice"]
    response = client.generic("POST", path, "stream=false", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400, response.content[:300]
    assert (
        response.json()["detail"]
        == "This endpoint takes no body (stream and retry_betas are query parameters); send none."
    )
    assert every_row() == before
    assert errors(served_schema(client), "POST", path, response) == []


def test_two_unknown_fields_are_both_named(world):
    response = send(world, "alice", "PATCH", "/api/v1/keys/{K}/", {"lable": "x", "enabled": False})
    assert response.status_code == 400
    answer = response.json()
    assert set(answer["errors"]) == {"lable", "enabled"}
    assert "field" not in answer


def test_an_unknown_field_is_named_with_the_other_refusals(world):
    response = send(world, "staff", "POST", "/api/v1/teams/", {"slug": "ops", "nmae": "Ops"})
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"name", "nmae"}
    assert "did you mean name?" in response.json()["detail"]


def test_a_very_long_unknown_field_name_is_not_echoed_whole(world):
    response = send(world, "alice", "PATCH", "/api/v1/keys/{K}/", {"x" * 100_000: 1})
    assert response.status_code == 400
    assert len(response.content) < 2_000, len(response.content)


# (who, method, path in the schema, path, a body the endpoint takes): every write of the API that has a body.
WRITES = [
    (
        "staff",
        "post",
        "/api/v1/gateways/",
        "/api/v1/gateways/",
        {"slug": "gw", "name": "GW", "base_url": "https://gw.example.com"},
    ),
    ("staff", "patch", "/api/v1/gateways/{slug}/", "/api/v1/gateways/tokaify/", {"name": "Tokaify 2"}),
    ("staff", "post", "/api/v1/teams/", "/api/v1/teams/", {"name": "Ops", "slug": "ops"}),
    ("alice", "patch", "/api/v1/teams/{slug}/", "/api/v1/teams/web/", {"sso_member_group": "devs"}),
    ("alice", "post", "/api/v1/teams/{slug}/members/", "/api/v1/teams/web/members/", {"username": "charlie"}),
    (
        "alice",
        "post",
        "/api/v1/teams/{slug}/keys/",
        "/api/v1/teams/web/keys/",
        {"gateway": "tokaify", "label": "L", "secret": "sk-abcdefgh12345678"},
    ),
    ("alice", "patch", "/api/v1/keys/{key_id}/", "/api/v1/keys/{K}/", {"label": "Renamed"}),
    ("alice", "post", "/api/v1/keys/{key_id}/assignments/", "/api/v1/keys/{K}/assignments/", {"username": "bob"}),
    (
        "bob",
        "post",
        "/api/v1/me/configs/{assignment_id}/devices/",
        "/api/v1/me/configs/{A}/devices/",
        {"name": "pc", "platform": "linux"},
    ),
    (
        "alice",
        "post",
        "/api/v1/teams/{slug}/invitations/",
        "/api/v1/teams/web/invitations/",
        {"email": "z@example.com"},
    ),
    (
        "alice",
        "post",
        "/api/v1/teams/{slug}/channels/",
        "/api/v1/teams/web/channels/",
        {"kind": "email", "target": "ops@example.com"},
    ),
]


@pytest.mark.parametrize("who,method,template,path,body", WRITES, ids=[f"{w[1]} {w[2]}" for w in WRITES])
def test_every_write_refuses_a_field_it_does_not_take_and_takes_the_body_without_it(
    world, who, method, template, path, body
):
    before = every_row()
    refused = send(world, who, method, path, {**body, "colour": "red"})
    assert refused.status_code == 400, refused.content[:300]
    assert refused.json()["field"] == "colour"
    assert "colour: This endpoint takes no field by that name" in refused.json()["detail"]
    assert every_row() == before
    assert send(world, who, method, path, body).status_code in (200, 201)


def test_the_list_of_writes_above_is_every_write_with_a_body(world):
    schema = served_schema(world["clients"]["alice"])
    with_body = {
        (method, path)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and "requestBody" in operation
    }
    assert with_body == {(method, template) for _, method, template, _, _ in WRITES}


@pytest.mark.parametrize(
    "who,path",
    [("alice", "/api/v1/keys/{K}/"), ("staff", "/api/v1/gateways/tokaify/"), ("alice", "/api/v1/teams/web/")],
)
def test_what_get_answers_can_be_sent_back_whole_in_a_patch(world, who, path):
    shown = world["clients"][who].get(path.format(K=world["K"])).json()
    response = send(world, who, "PATCH", path, shown)
    assert response.status_code == 200, response.content[:500]
    again = {name: value for name, value in response.json().items() if name != "notices"}
    assert {n: v for n, v in again.items() if n not in ("updated_at", "config_changed_at")} == {
        n: v for n, v in shown.items() if n not in ("updated_at", "config_changed_at")
    }


def test_a_write_answer_sent_back_as_a_new_body_is_taken(world):
    """A client may copy what POST answered into the next POST: shown fields are not fields it sets."""
    first = send(world, "staff", "POST", "/api/v1/teams/", {"name": "Ops", "slug": "ops"}).json()
    response = send(world, "staff", "POST", "/api/v1/teams/", {**first, "name": "Ops 2", "slug": "ops2"})
    assert response.status_code == 201, response.content[:300]


# --- L4: names too long for a header or a variable -------------------------------------------------------------


def test_a_header_name_too_long_is_refused_with_the_limit_and_its_length(world):
    response = send(world, "alice", "PATCH", "/api/v1/keys/{K}/", {"custom_headers": {"X-" + "A" * 118: "v"}})
    assert response.status_code == 400
    answer = response.json()
    assert answer["field"] == "custom_headers"
    assert "Header names have at most 100 characters; this one has 120: " in answer["detail"]
    assert "not a valid HTTP header name" not in answer["detail"]


def test_an_env_name_too_long_is_refused_with_the_limit_and_its_length(world):
    response = send(world, "staff", "PATCH", "/api/v1/gateways/tokaify/", {"extra_env": {"A" * 120: "1"}})
    assert response.status_code == 400
    answer = response.json()
    assert answer["field"] == "extra_env"
    assert "Environment variable names have at most 100 characters; this one has 120: " in answer["detail"]
    assert "use A-Z" not in answer["detail"]


@pytest.mark.parametrize(
    "path,who,body",
    [
        ("/api/v1/keys/{K}/", "alice", {"custom_headers": {"X" * 100_000: "v"}}),
        ("/api/v1/keys/{K}/", "alice", {"custom_headers": {"X Y" * 33: "v"}}),
        ("/api/v1/gateways/tokaify/", "staff", {"extra_env": {"a" * 100_000: "1"}}),
        ("/api/v1/gateways/tokaify/", "staff", {"extra_env": {"a" * 99: "1"}}),
    ],
)
def test_a_refused_name_is_echoed_cut_to_about_80_characters(world, path, who, body):
    response = send(world, who, "PATCH", path, body)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert len(detail) < 400, detail
    name = next(iter(next(iter(body.values()))))
    if len(name) <= 100:  # a name of the right length but the wrong characters is shown, cut
        assert name[:80] + "…" in detail


def test_a_header_name_of_100_characters_is_taken(world):
    response = send(world, "alice", "PATCH", "/api/v1/keys/{K}/", {"custom_headers": {"X" * 100: "v"}})
    assert response.status_code == 200, response.content[:300]
    assert GatewayKey.objects.get(id=world["K"]).custom_headers == {"X" * 100: "v"}


def test_a_body_of_many_unknown_fields_names_five_and_counts_the_rest(api, alice, web):
    body = json.dumps({f"f{n}": 0 for n in range(80_000)})
    assert len(body) < 1024 * 1024  # within the body limit: refused for its fields, not its size
    response = api(alice).generic("PATCH", "/api/v1/teams/web/", body, content_type="application/json")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "f0: This endpoint takes no field by that name" in detail and "f4:" in detail and "f5:" not in detail
    assert "The body has 79995 more fields this endpoint does not take." in detail
    assert len(response.content) < 5_000


# --- A field shown but never changed here, sent with another value beside a real change -----------------------


@pytest.mark.parametrize(
    "who,path,body,field,hint",
    [
        ("alice", "/api/v1/teams/web/", {"name": "Web 2", "sso_member_group": "g"}, "name", "never change"),
        ("alice", "/api/v1/teams/web/", {"slug": "web2", "sso_member_group": "g"}, "slug", "never change"),
        ("alice", "/api/v1/keys/{K}/", {"gateway": "tokenbay", "label": "moved"}, "gateway", "add a key on"),
        ("alice", "/api/v1/keys/{K}/", {"team": "data", "label": "moved"}, "team", "stays in its team"),
        (
            "alice",
            "/api/v1/keys/{K}/",
            {"revoked_at": "2026-01-01T00:00:00Z", "label": "gone"},
            "revoked_at",
            "DELETE /api/v1/keys/",
        ),
    ],
)
def test_a_patch_that_changes_a_field_the_endpoint_never_changes_is_refused_and_writes_nothing(
    world, who, path, body, field, hint
):
    """{"name": "x", "sso_member_group": "g"} on a team answered 200 and kept the old name without a word."""
    before = every_row()
    response = send(world, who, "PATCH", path, body)
    assert response.status_code == 400, response.content[:300]
    assert response.json()["field"] == field
    assert hint in response.json()["detail"]
    assert every_row() == before


def test_a_time_shown_sent_back_in_another_spelling_is_the_same_time(world, tokaify_key):
    """A key revoked at 12:00Z may be sent back as 13:00+01:00 with a change: the same instant, not a change."""
    from django.utils import timezone

    GatewayKey.objects.filter(pk=tokaify_key.pk).update(revoked_at=timezone.now().replace(microsecond=0))
    shown = world["clients"]["alice"].get(f"/api/v1/keys/{tokaify_key.id}/").json()
    at = timezone.datetime.fromisoformat(shown["revoked_at"].replace("Z", "+00:00"))
    other = at.astimezone(timezone.get_fixed_timezone(60)).isoformat()
    response = send(world, "alice", "PATCH", "/api/v1/keys/{K}/", {"revoked_at": other, "label": "renamed"})
    # The body passed the serializer; the service then says what it says of any change to a revoked key.
    assert response.json() == {"detail": "This key is revoked; store a new key instead of changing it."}


@pytest.mark.parametrize("body", ["null", "{}", ""], ids=["null", "empty-object", "empty"])
def test_a_probe_request_whose_json_body_holds_nothing_probes(api, alice, tokaify_key, body):
    """Some clients send JSON null for a POST without a body (Go's json.Marshal(nil)): it is no body, not a 400."""
    from gateways.services import set_key_enabled

    set_key_enabled(key=tokaify_key, enabled=False, actor=alice)  # probed without the network: refused, recorded
    path = f"/api/v1/keys/{tokaify_key.id}/probes/"
    response = api(alice).generic("POST", path, body, content_type="application/json")
    assert response.status_code == 201, response.content[:300]
    assert response.json()["verdict"] == "refused"


def test_a_required_field_left_out_is_named_in_errors(api, staff):
    """A rule's refusal of a missing body field is in errors, as the serializer's refusal of an empty one is."""
    response = api(staff).post(
        "/api/v1/gateways/", {"name": "Relay", "base_url": "https://relay.example"}, format="json"
    )
    assert response.status_code == 400
    answer = response.json()
    assert answer["field"] == "slug"
    assert answer["errors"] == {"slug": [answer["detail"]]}
