"""Gateways, teams, members, keys and assignments through the REST API.

Who may call what (every route x role) is tests/api/test_isolation_matrix.py.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from gateways.models import Assignment, GatewayKey
from portal.models import AccessToken, AuditEvent, Invitation, Membership, Team
from tests.api.schema_check import errors, served_schema
from tests.conftest import TOKAIFY_SECRET, TOKENBAY_SECRET

pytestmark = pytest.mark.django_db


def test_anonymous_requests_get_a_401_with_a_sentence():
    response = APIClient().get("/api/v1/gateways/")
    assert response.status_code == 401
    assert response.json()["detail"]


def test_bad_token_is_refused_the_same_way_whether_it_exists_or_not(alice):
    _, raw = AccessToken.issue(alice)
    fake = raw[:-4] + "AAAA"
    unknown = "ptl_000000000000_" + "A" * 43
    answers = []
    for candidate in (fake, unknown):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {candidate}")
        response = client.get("/api/v1/gateways/")
        answers.append((response.status_code, response.json()["detail"]))
    assert answers[0] == answers[1]
    assert answers[0][0] == 401


def test_expired_and_revoked_tokens_stop_working(alice):
    _, raw_expired = AccessToken.issue(alice, expires_at=timezone.now() - timedelta(minutes=1))
    revoked, raw_revoked = AccessToken.issue(alice)
    revoked.revoked_at = timezone.now()
    revoked.save()
    for raw in (raw_expired, raw_revoked):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert client.get("/api/v1/gateways/").status_code == 401


def test_token_is_stored_hashed(alice):
    token, raw = AccessToken.issue(alice)
    secret_part = raw.split("_", 2)[2]
    assert secret_part and secret_part not in token.digest
    assert raw not in token.digest


def test_catalogue_lists_the_presets(api, bob):
    slugs = {g["slug"]: g for g in api(bob).get("/api/v1/gateways/").json()["results"]}
    assert {"tokaify", "tokenbay", "anthropic"} <= set(slugs)
    assert slugs["tokenbay"]["auth_scheme"] == "bearer"
    assert slugs["tokenbay"]["empties_api_key"] is True
    assert slugs["tokenbay"]["default_sonnet_model"] == "claude-sonnet-4.6"
    assert slugs["tokaify"]["auth_scheme"] == "x-api-key"
    assert slugs["tokaify"]["base_url"] == "https://api.tokaify.com"


def test_only_staff_add_gateways(api, alice, staff):
    body = {"slug": "mygw", "name": "My GW", "base_url": "https://gw.example.com/v1/", "auth_scheme": "bearer"}
    assert api(alice).post("/api/v1/gateways/", body, format="json").status_code == 403
    response = api(staff).post("/api/v1/gateways/", body, format="json")
    assert response.status_code == 201
    assert response.json()["base_url"] == "https://gw.example.com"
    assert "Removed the trailing /v1" in response.json()["notices"][0]
    assert AuditEvent.objects.filter(action="gateway.created", gateway_slug="mygw").exists()


def test_patching_a_presets_base_url_keeps_its_other_rules(api, staff):
    response = api(staff).patch("/api/v1/gateways/tokenbay/", {"base_url": "https://eu.tokenbay.com"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["base_url"] == "https://eu.tokenbay.com"
    assert body["auth_scheme"] == "bearer"
    assert body["model_id_style"] == "dotted"
    assert body["timeout_ms"] == 600000
    assert body["default_opus_model"] == "claude-opus-4.8"


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"base_url": "ftp://x"}, "must start with https://"),
        ({"auth_scheme": "basic"}, "auth_scheme"),
        ({"timeout_ms": 5}, "between 1000"),
        ({"timeout_ms": 10**30}, "between 1000 (1 s) and 3600000 (1 h)"),
        ({"timeout_ms": 3_600_001}, "between 1000 (1 s) and 3600000 (1 h)"),
        ({"extra_env": {"ANTHROPIC_API_KEY": "x"}}, "set by the portal"),
        ({"extra_env": {"X=1; touch marker; Y": "v"}}, "not a valid environment variable name"),
        ({"extra_env": {"PROMPT_COMMAND": "touch marker"}}, "would run code"),
        ({"extra_env": {"NODE_OPTIONS": "--require /tmp/x.js"}}, "would run code"),
        ({"extra_env": {"LD_PRELOAD": "/tmp/x.so"}}, "would run code"),
        ({"extra_env": {"DISABLE_TELEMETRY": "1\ntouch marker"}}, "one line of text"),
        ({"troubleshooting": [["401", "Check the key", "extra"]]}, "troubleshooting"),
        ({"default_model": "sonnet; touch marker"}, "is not a model id"),
        ({"extra_env": {"CLAUDE_CODE_SUBAGENT_MODEL": "haiku 4.5"}}, "is not a model id"),
    ],
)
def test_bad_gateway_input_is_a_400_with_detail(api, staff, body, fragment):
    before = api(staff).get("/api/v1/gateways/tokaify/").json()
    response = api(staff).patch("/api/v1/gateways/tokaify/", body, format="json")
    assert response.status_code == 400
    assert fragment in response.json()["detail"]
    assert api(staff).get("/api/v1/gateways/tokaify/").json() == before  # nothing half-written


def test_malformed_json_is_a_400_not_a_500(api, staff):
    response = api(staff).generic("POST", "/api/v1/teams/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


def test_staff_create_teams_and_admins_add_members(api, staff, bob):
    response = api(staff).post("/api/v1/teams/", {"name": "Mobile", "slug": "mobile"}, format="json")
    assert response.status_code == 201
    response = api(staff).post("/api/v1/teams/mobile/members/", {"username": "bob", "role": "admin"}, format="json")
    assert response.status_code == 201
    assert Membership.objects.get(team__slug="mobile", user=bob).role == "admin"
    response = api(bob).post("/api/v1/teams/mobile/members/", {"username": "nobody", "role": "member"}, format="json")
    assert response.status_code == 400
    assert "no active user called 'nobody'" in response.json()["detail"]


@pytest.mark.parametrize("name", ["Mob\nile", "Mob\u202eelib", "Mob\x07ile"])
def test_a_team_name_that_is_not_one_line_of_plain_text_is_refused(api, client, staff, name):
    response = api(staff).post("/api/v1/teams/", {"name": name, "slug": "mobile"}, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == "name" and "one line of text" in response.json()["detail"]
    client.force_login(staff)
    page = client.post("/teams/new/", {"name": name, "slug": "mobile"})
    assert page.status_code == 400 and "one line of text" in page.content.decode()
    assert not Team.objects.filter(slug="mobile").exists()


def test_adding_someone_already_in_the_team_sets_their_role_and_answers_200(api, alice, bob, charlie):
    """POST /teams/{slug}/members/ adds a member (201) or sets the role of one (200), as the team page's form does;
    re-adding answered 201 as if a membership were made."""
    client = api(alice)
    schema = served_schema(client)
    path = "/api/v1/teams/web/members/"
    added = client.post(path, {"username": "charlie", "role": "member"}, format="json")
    again = client.post(path, {"username": "charlie", "role": "member"}, format="json")
    promoted = client.post(path, {"username": "bob", "role": "auditor"}, format="json")
    assert [added.status_code, again.status_code, promoted.status_code] == [201, 200, 200]
    assert promoted.json()["role"] == "auditor" == Membership.objects.get(team__slug="web", user=bob).role
    assert Membership.objects.filter(team__slug="web", user=charlie).count() == 1
    assert [e for r in (added, again, promoted) for e in errors(schema, "POST", path, r)] == []
    actions = list(AuditEvent.objects.filter(target__in=["bob", "charlie"]).values_list("action", flat=True))
    assert sorted(actions) == ["member.added", "member.role_changed"]


def test_last_admin_cannot_be_demoted(api, alice):
    response = api(alice).post("/api/v1/teams/web/members/", {"username": "alice", "role": "member"}, format="json")
    assert response.status_code == 400
    assert "last admin" in response.json()["detail"]


def test_storing_a_key_returns_masked_and_fingerprint_never_the_secret(api, alice):
    body = {"gateway": "tokaify", "label": "Alice laptop", "secret": f"  {TOKAIFY_SECRET}\n"}
    response = api(alice).post("/api/v1/teams/web/keys/", body, format="json")
    assert response.status_code == 201
    data = response.json()
    assert data["masked"] == "sk-…cdef"
    assert len(data["fingerprint"]) == 12
    assert data["id"]
    assert TOKAIFY_SECRET not in json.dumps(data)
    listing = api(alice).get("/api/v1/teams/web/keys/").content.decode()
    detail = api(alice).get(f"/api/v1/keys/{data['id']}/").content.decode()
    assert TOKAIFY_SECRET not in listing + detail
    events = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert TOKAIFY_SECRET not in events


def test_same_secret_twice_in_a_team_is_refused(api, alice, tokaify_key):
    body = {"gateway": "tokaify", "label": "again", "secret": TOKAIFY_SECRET}
    response = api(alice).post("/api/v1/teams/web/keys/", body, format="json")
    assert response.status_code == 400
    assert "already stored" in response.json()["detail"]
    assert GatewayKey.objects.count() == 1


def test_key_without_sk_prefix_gets_the_guides_advice(api, alice):
    body = {"gateway": "tokenbay", "label": "x", "secret": "0123456789abcdef"}
    response = api(alice).post("/api/v1/teams/web/keys/", body, format="json")
    assert response.status_code == 400
    assert "do not remove the sk- prefix" in response.json()["detail"]


def test_hyphenated_model_override_is_stored_dotted_for_tokenbay(api, alice):
    body = {"gateway": "tokenbay", "label": "x", "secret": TOKENBAY_SECRET, "sonnet_model": "claude-sonnet-4-6"}
    response = api(alice).post("/api/v1/teams/web/keys/", body, format="json")
    assert response.json()["sonnet_model"] == "claude-sonnet-4.6"


def test_model_ids_in_extra_env_are_stored_in_the_gateways_style(api, staff):
    extra = {"CLAUDE_CODE_SUBAGENT_MODEL": "claude-haiku-4-5", "ANTHROPIC_SMALL_FAST_MODEL": "claude-haiku-4-5"}
    response = api(staff).patch(
        "/api/v1/gateways/tokenbay/", {"extra_env": {**extra, "MCP_TIMEOUT": "4-5"}}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["extra_env"] == {
        "CLAUDE_CODE_SUBAGENT_MODEL": "claude-haiku-4.5",
        "ANTHROPIC_SMALL_FAST_MODEL": "claude-haiku-4.5",
        "MCP_TIMEOUT": "4-5",  # not a model id: left as written
    }


def test_patch_rotates_secret_and_records_it(api, alice, tokaify_key):
    response = api(alice).patch(f"/api/v1/keys/{tokaify_key.id}/", {"secret": "sk-new-secret-99998888"}, format="json")
    assert response.status_code == 200
    assert response.json()["masked"] == "sk-…8888"
    assert GatewayKey.objects.get(pk=tokaify_key.pk).reveal_secret() == "sk-new-secret-99998888"
    assert AuditEvent.objects.filter(action="key.rotated").count() == 1


def test_delete_revokes_and_destroys_the_secret(api, alice, tokaify_key):
    assert api(alice).delete(f"/api/v1/keys/{tokaify_key.id}/").status_code == 204
    key = GatewayKey.objects.get(pk=tokaify_key.pk)
    assert key.state == "revoked"
    assert key.secret_ciphertext == ""
    assert AuditEvent.objects.filter(action="key.revoked").exists()


def test_assigning_needs_team_membership(api, alice, tokaify_key, charlie, bob):
    url = f"/api/v1/keys/{tokaify_key.id}/assignments/"
    response = api(alice).post(url, {"username": "charlie"}, format="json")
    assert response.status_code == 400
    assert "not a member of web" in response.json()["detail"]
    response = api(alice).post(url, {"username": "bob"}, format="json")
    assert response.status_code == 201
    assert response.json()["username"] == "bob"
    assert Assignment.objects.filter(key=tokaify_key, user=bob).exists()


def test_a_shared_key_can_be_assigned_to_several_members(api, alice, bob, dave, tokaify_key):
    url = f"/api/v1/keys/{tokaify_key.id}/assignments/"
    for username in ("bob", "dave"):
        assert api(alice).post(url, {"username": username}, format="json").status_code == 201
    assert tokaify_key.assignments.count() == 2


def test_schema_is_served(api, bob):
    response = api(bob).get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"/api/v1/me/configs/" in response.content


def test_schema_needs_a_sign_in(client, bob):
    response = APIClient().get("/api/v1/schema/")
    assert response.status_code == 401 and response.json()["detail"]
    assert b"/api/v1/me/configs/" not in response.content
    client.force_login(bob)  # the browser session is enough, like for every other operation
    assert client.get("/api/v1/schema/").status_code == 200


# --- Cross-team isolation and roles, for every endpoint -------------------------------------------


def endpoints(key_id, assignment_id, invitation_id):
    """(method, url, body) for every endpoint that touches team web's data."""
    return [
        ("get", "/api/v1/teams/web/", None),
        ("patch", "/api/v1/teams/web/", {"sso_admin_group": "everyone"}),
        ("get", "/api/v1/teams/web/invitations/", None),
        ("post", "/api/v1/teams/web/invitations/", {"email": "intruder@example.com", "role": "admin"}),
        ("delete", f"/api/v1/teams/web/invitations/{invitation_id}/", None),
        ("get", "/api/v1/teams/web/members/", None),
        ("post", "/api/v1/teams/web/members/", {"username": "charlie", "role": "admin"}),
        ("delete", "/api/v1/teams/web/members/bob/", None),
        ("get", "/api/v1/teams/web/keys/", None),
        ("post", "/api/v1/teams/web/keys/", {"gateway": "tokaify", "label": "x", "secret": "sk-intruder-123456"}),
        ("get", f"/api/v1/keys/{key_id}/", None),
        ("patch", f"/api/v1/keys/{key_id}/", {"label": "hijacked"}),
        ("delete", f"/api/v1/keys/{key_id}/", None),
        ("get", f"/api/v1/keys/{key_id}/assignments/", None),
        ("post", f"/api/v1/keys/{key_id}/assignments/", {"username": "bob"}),
        ("delete", f"/api/v1/assignments/{assignment_id}/", None),
        ("get", f"/api/v1/keys/{key_id}/probes/", None),
        ("post", f"/api/v1/keys/{key_id}/probes/", None),
        ("get", f"/api/v1/me/configs/{assignment_id}/bash", None),
    ]


@pytest.fixture
def web_invitation(web, alice):
    invitation, _ = Invitation.issue(
        team=web,
        email="pending@example.com",
        role="member",
        created_by=alice,
        expires_at=timezone.now() + timedelta(days=7),
    )
    return invitation


def test_an_outsider_can_neither_see_nor_act_on_another_team(api, charlie, bob_assignment, web_invitation):
    key_id = bob_assignment.key_id
    client = api(charlie)
    for method, url, body in endpoints(key_id, bob_assignment.id, web_invitation.id):
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
        assert response.json()["detail"]
    assert GatewayKey.objects.get(pk=key_id).label == "Bob laptop"
    assert GatewayKey.objects.get(pk=key_id).state == "active"
    assert Assignment.objects.filter(pk=bob_assignment.pk).exists()
    assert [t["slug"] for t in client.get("/api/v1/teams/").json()["results"]] == ["data"]
    assert client.get("/api/v1/probes/").json()["results"] == []
    assert client.get("/api/v1/connections/").json()["results"] == []
    assert Invitation.objects.get(pk=web_invitation.pk).state == "pending"
    assert Invitation.objects.count() == 1
    assert Team.objects.get(slug="web").sso_admin_group == ""


WRITES = {"post", "patch", "delete"}


@pytest.mark.parametrize("who", ["bob", "dave"])
def test_members_and_auditors_cannot_change_the_team(api, who, bob, dave, bob_assignment, web_invitation):
    user = {"bob": bob, "dave": dave}[who]
    client = api(user)
    for method, url, body in endpoints(bob_assignment.key_id, bob_assignment.id, web_invitation.id):
        if method not in WRITES:
            continue
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code in (403, 404), (who, method, url, response.status_code)
    assert GatewayKey.objects.get(pk=bob_assignment.key_id).label == "Bob laptop"
    assert Assignment.objects.filter(pk=bob_assignment.pk).exists()
    # Invitations carry addresses and links: only the team's admins see them.
    assert client.get("/api/v1/teams/web/invitations/").status_code == 403
    assert Invitation.objects.get(pk=web_invitation.pk).state == "pending" and Invitation.objects.count() == 1
    assert Team.objects.get(slug="web").sso_admin_group == ""


@pytest.mark.parametrize("who", ["alice", "staff"])
def test_admins_and_staff_manage_invitations_and_sso_groups(api, who, alice, staff, web_invitation):
    client = api({"alice": alice, "staff": staff}[who])
    url = "/api/v1/teams/web/invitations/"
    assert [i["id"] for i in client.get(url).json()["results"]] == [web_invitation.id]
    created = client.post(url, {"email": "new@example.com", "role": "admin"}, format="json")
    assert created.status_code == 201 and created.json()["accept_url"]
    assert client.delete(f"{url}{web_invitation.id}/").status_code == 204
    assert [i["email"] for i in client.get(url).json()["results"]] == ["new@example.com"]
    patched = client.patch(
        "/api/v1/teams/web/", {"sso_member_group": "eng", "sso_admin_group": "eng-leads"}, format="json"
    )
    assert patched.status_code == 200
    assert (patched.json()["sso_member_group"], patched.json()["sso_admin_group"]) == ("eng", "eng-leads")
    event = AuditEvent.objects.get(action="team.updated")
    assert event.details["sso_admin_group"] == {"from": "", "to": "eng-leads"}
    same = client.patch("/api/v1/teams/web/", {"sso_admin_group": "eng"}, format="json")
    assert same.status_code == 400 and "different groups" in same.json()["detail"]


def test_auditors_read_keys_but_members_do_not(api, bob, dave, tokaify_key):
    assert api(dave).get("/api/v1/teams/web/keys/").status_code == 200
    assert api(bob).get("/api/v1/teams/web/keys/").status_code == 403


@pytest.mark.parametrize("url", ["/api/v1/nope/", "/api/v1/keys/not-a-uuid/", "/api/v1/me/configs/x/bash"])
def test_unknown_api_urls_answer_json_with_a_sentence(api, bob, url):
    response = api(bob).get(url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "/api/v1/schema/" in response.json()["detail"]


def test_the_secret_of_a_revoked_key_is_refused_with_the_reason(api, alice, tokaify_key):
    assert api(alice).delete(f"/api/v1/keys/{tokaify_key.id}/").status_code == 204
    body = {"gateway": "tokaify", "label": "again", "secret": TOKAIFY_SECRET}
    response = api(alice).post("/api/v1/teams/web/keys/", body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "This secret belonged to 'Alice laptop' in web, which was revoked: a revoked secret is not taken back. "
        "Issue a new key at the gateway and store that one."
    )
    assert GatewayKey.objects.count() == 1


def test_a_duplicate_that_slips_past_the_check_is_still_refused_with_a_sentence(api, alice, tokaify_key, monkeypatch):
    from gateways import services

    monkeypatch.setattr(services, "_refuse_duplicate", _refuse_only_on_second_call(services._refuse_duplicate))
    body = {"gateway": "tokaify", "label": "again", "secret": TOKAIFY_SECRET}
    response = api(alice).post("/api/v1/teams/web/keys/", body, format="json")
    assert response.status_code == 400
    assert "already stored" in response.json()["detail"]
    assert GatewayKey.objects.count() == 1


def _refuse_only_on_second_call(check):
    """Simulate a concurrent insert: the first check sees nothing, as if the other row was not committed yet."""
    calls = []

    def checked(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            check(*args, **kwargs)

    return checked


def test_no_request_body_is_described_by_the_base_class_notes(api, staff):
    """A generated client shows a schema's description as the body's documentation: each input says what it is,
    not the maintainers' notes of the class it inherits from (InputSerializer's docstring)."""
    from portal.api.serializers import InputSerializer

    notes = InputSerializer.__doc__.split("\n")[0]
    schemas = served_schema(api(staff))["components"]["schemas"]
    inherited = sorted(name for name, schema in schemas.items() if notes in schema.get("description", ""))
    assert inherited == []
    assert "webhook" in schemas["ChannelInput"]["description"]
