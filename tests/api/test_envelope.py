"""Every list of the API answers one envelope, `{"results": [...], "next": <url or null>}`.

The routes come from the API's URL conf, so a new endpoint is covered without editing this
file: a GET that answers a bare JSON list fails, and so does a list that does not page.
"""

from __future__ import annotations

import base64
import json
import math
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured
from drf_spectacular.generators import SchemaGenerator
from rest_framework.mixins import ListModelMixin

from alerts.services import create_channel
from config import api_urls
from gateways.devices import create_device
from gateways.models import GatewayKey, ProbeResult
from gateways.services import assign_key, store_key
from portal.invitations import create_invitation
from portal.models import Membership, Role
from portal.pagination import sort_keys

pytestmark = pytest.mark.django_db

PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")
GET_ROUTES = [p for p in api_urls.urlpatterns if hasattr(getattr(p.callback, "view_class", None), "get")]


@pytest.fixture
def world(web, data_team, staff, alice, bob, dave, tokaify_key, tokenbay_key, bob_assignment):
    """Two or more rows in every list staff can read."""
    Membership.objects.create(team=web, user=staff, role=Role.ADMIN)
    mine = [assign_key(key=key, username="staff", actor=alice) for key in (tokaify_key, tokenbay_key)]
    for verdict in ("ok", "auth_failed"):
        ProbeResult.objects.create(key=tokenbay_key, gateway=tokenbay_key.gateway, verdict=verdict)
    for email in ("erin@example.com", "frank@example.com"):
        create_invitation(team=web, email=email, role=Role.MEMBER, actor=alice)
    for assignment in mine:
        create_device(assignment=assignment, name=f"laptop {assignment.pk}", platform="linux", actor=staff)
    channels = [create_channel(team=web, kind="email", target=f"ops{n}@example.com", actor=alice) for n in range(2)]
    return {
        "slug": "web",
        "key_id": str(tokenbay_key.id),
        "assignment_id": str(mine[0].id),  # downloads are the caller's own
        "username": "bob",
        "format_name": "bash",
        "channel_id": str(channels[0].id),
    }


def path_for(route: str, values: dict) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        assert name in values, f"Give tests/api/test_envelope.py a value for <{name}> (route {route})."
        if route.startswith("gateways/") and name == "slug":
            return "tokaify"
        return values[name]

    return "/api/v1/" + PARAMETER.sub(value, route)


def is_list_view(pattern) -> bool:
    return issubclass(pattern.callback.view_class, ListModelMixin)


@pytest.mark.parametrize("pattern", GET_ROUTES, ids=lambda p: str(p.pattern))
def test_every_get_answers_a_page_envelope_or_one_object(pattern, world, api, staff):
    client = api(staff)
    path = path_for(str(pattern.pattern), world)
    response = client.get(path, {"limit": 1})
    assert response.status_code == 200, (path, response.content[:300])
    if not response.get("Content-Type", "").startswith("application/json"):
        assert not is_list_view(pattern), f"{path} is a list that does not answer JSON"
        return
    body = response.json()
    assert not isinstance(body, list), f"{path} answers a bare list; every list answers the page envelope"
    if not is_list_view(pattern):
        assert "results" not in body, f"{path} answers an envelope but is not a ListAPIView: use one"
        return
    assert set(body) == {"results", "next"}, f"{path} answers {sorted(body)}"
    assert len(body["results"]) == 1
    assert body["next"], f"{path}: with limit=1 and two or more rows, there must be a next page"
    # Following `next` to the end gives the same rows as one big page, once each, in order.
    paged, link = [], path + "?limit=1"
    while link:
        page = client.get(link).json()
        paged += page["results"]
        link = page["next"] and urlsplit(page["next"])._replace(scheme="", netloc="").geturl()
    assert paged == client.get(path).json()["results"]
    assert len(paged) >= 2


def test_the_schema_documents_the_envelope_for_every_list_and_no_bare_array():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    lists = []
    for route, operations in schema["paths"].items():
        answer = operations.get("get", {}).get("responses", {}).get("200", {})
        body = answer.get("content", {}).get("application/json", {}).get("schema", {})
        if "$ref" in body:
            body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
        assert body.get("type") != "array", f"GET {route} is documented as a bare array"
        if "results" in body.get("properties", {}):
            assert body["required"] == ["results", "next"], route
            lists.append(route)
    assert len(lists) == sum(is_list_view(p) for p in GET_ROUTES) == 13


def all_pages(client, path: str) -> list:
    rows, link = [], path
    while link:
        page = client.get(link).json()
        rows += page["results"]
        link = page["next"] and urlsplit(page["next"])._replace(scheme="", netloc="").geturl()
    return rows


@pytest.mark.parametrize("sort", ["last_download", "-last_download", "expiry", "-expiry", "verdict", "-team"])
def test_connections_page_by_any_sort_even_through_nulls(sort, api, staff, web, tokenbay, alice, bob, dave):
    from datetime import timedelta

    from django.utils import timezone

    from gateways.models import Assignment, GatewayKey
    from gateways.services import store_key

    now = timezone.now()
    for i in range(7):
        key = store_key(team=web, gateway=tokenbay, label=f"k{i}", secret=f"sk-page{i}-0000000000000", actor=alice)
        for username in ("bob", "dave"):
            assign_key(key=key, username=username, actor=alice)
        # Some rows have a value, some none (null), some share one: the keyset must handle all three.
        if i % 3:
            GatewayKey.objects.filter(pk=key.pk).update(expires_at=now + timedelta(days=i % 2))
        if i % 2:
            Assignment.objects.filter(key=key, user=bob).update(last_download_at=now - timedelta(hours=i % 3))
    client = api(staff)
    whole = client.get(f"/api/v1/connections/?sort={sort}").json()
    assert whole["next"] is None and len(whole["results"]) == 14
    assert all_pages(client, f"/api/v1/connections/?sort={sort}&limit=3") == whole["results"]


def test_a_made_up_cursor_is_a_400_with_a_sentence(api, staff):
    response = api(staff).get("/api/v1/audit-events/?cursor=not-a-cursor")
    assert response.status_code == 400
    assert response.json()["field"] == "cursor"
    assert "follow the list's own next link" in response.json()["detail"]


def test_a_cursor_from_another_sort_is_refused(api, staff, bob_assignment, dave, alice):
    assign_key(key=bob_assignment.key, username="dave", actor=alice)
    client = api(staff)
    link = client.get("/api/v1/connections/?sort=user&limit=1").json()["next"]
    cursor = parse_qs(urlsplit(link).query)["cursor"][0]
    response = client.get(f"/api/v1/connections/?sort=-expiry&cursor={cursor}")
    assert response.status_code == 400
    assert response.json()["field"] == "cursor"


def cursor_body(link: str) -> dict:
    """What the cursor of a handed-out next link holds (it is base64 JSON: anyone can read and edit it)."""
    cursor = parse_qs(urlsplit(link).query)["cursor"][0]
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


def edited(link: str, *values) -> str:
    """The cursor of a handed-out next link with its values replaced, as anyone can."""
    body = cursor_body(link)
    body["v"] = list(values)
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()


@pytest.mark.parametrize("value", [math.inf, -math.inf, 10**30, -(2**63) - 1])
def test_a_cursor_edited_to_a_number_past_what_the_database_holds_is_a_400(api, staff, alice, tokaify, value):
    for n in range(3):
        store_key(team=alice.memberships.get().team, gateway=tokaify, label=f"k{n}", secret=f"sk-{n}" * 8, actor=alice)
    client = api(staff)
    link = client.get("/api/v1/audit-events/?limit=1").json()["next"]
    response = client.get(f"/api/v1/audit-events/?cursor={edited(link, value)}")
    assert response.status_code == 400
    assert response.json()["field"] == "cursor"


def test_a_cursor_nested_past_the_json_parser_or_holding_a_nul_is_a_400(api, staff, bob_assignment, dave, alice):
    assign_key(key=bob_assignment.key, username="dave", actor=alice)
    client = api(staff)
    deep = base64.urlsafe_b64encode(("[" * 100_000 + "]" * 100_000).encode()).decode().rstrip("=")
    assert client.get(f"/api/v1/connections/?cursor={deep}").status_code == 400
    link = client.get("/api/v1/connections/?sort=user&limit=1").json()["next"]
    values = cursor_body(link)["v"]
    cursor = edited(link, "a\x00", *values[1:])
    response = client.get(f"/api/v1/connections/?sort=user&cursor={cursor}")
    assert response.status_code == 400
    assert response.json()["field"] == "cursor"


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "2026-01-01T00:00:00"])
def test_a_cursor_edited_to_a_time_outside_the_calendar_in_utc_is_a_400(
    api, staff, bob_assignment, dave, alice, moment
):
    assign_key(key=bob_assignment.key, username="dave", actor=alice)
    client = api(staff)
    link = client.get("/api/v1/connections/?sort=-last_download&limit=1").json()["next"]
    values = cursor_body(link)["v"]
    response = client.get(f"/api/v1/connections/?sort=-last_download&cursor={edited(link, moment, *values[1:])}")
    assert response.status_code == 400
    assert response.json()["field"] == "cursor"


@pytest.mark.parametrize("ordering", ["label__name", "assignments"])
def test_a_list_ordered_by_something_other_than_a_column_is_named_at_start(ordering):
    """A programming mistake in a view's ordering is named with the path, not an AttributeError."""
    with pytest.raises(ImproperlyConfigured, match=re.escape(repr(ordering))):
        sort_keys(GatewayKey.objects.order_by(ordering))
