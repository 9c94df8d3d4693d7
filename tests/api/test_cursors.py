"""A cursor is good for the list and order that gave it out: an edited or borrowed one is a sentence, never a 500
or a silent page of another list."""

import base64
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from gateways.services import assign_key, store_key


def encode(cursor: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode().rstrip("=")


def next_cursor(page: dict) -> str:
    return parse_qs(urlsplit(page["next"]).query)["cursor"][0]


def decode(raw: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))


@pytest.fixture
def connections(web, tokenbay, alice, bob, dave):
    for i in range(3):
        key = store_key(team=web, gateway=tokenbay, label=f"k{i}", secret=f"sk-cursor{i}-0000000000000", actor=alice)
        assign_key(key=key, username="bob", actor=alice)
        assign_key(key=key, username="dave", actor=alice)


def test_an_api_cursor_edited_to_hold_half_a_surrogate_pair_is_a_400(api, staff, connections):
    client = api(staff, raise_request_exception=False)
    cursor = decode(next_cursor(client.get("/api/v1/connections/?sort=user&limit=2").json()))
    cursor["v"][0] = "\ud800"
    response = client.get(f"/api/v1/connections/?sort=user&limit=2&cursor={encode(cursor)}")
    assert response.status_code == 400
    assert response.json()["field"] == "cursor"
    assert "not one this list gave out" in response.json()["detail"]


def test_a_page_cursor_edited_to_hold_half_a_surrogate_pair_shows_the_first_page(
    client, staff, connections, monkeypatch
):
    from gateways import views

    monkeypatch.setattr(views, "CONNECTIONS_PER_PAGE", 2)
    client.raise_request_exception = False
    client.force_login(staff)
    cursor = decode(client.get("/connections/?sort=user").context["next_cursor"])
    cursor["v"][0] = "\ud800"
    response = client.get(f"/connections/?sort=user&cursor={encode(cursor)}")
    assert response.status_code == 200
    assert "Showing the first page." in response.content.decode()


def test_a_connections_cursor_is_refused_by_the_audit_list_of_the_same_order(api, staff, connections):
    client = api(staff)
    cursor = next_cursor(client.get("/api/v1/connections/?sort=-assigned&limit=1").json())
    response = client.get(f"/api/v1/audit-events/?since=2000-01-01&cursor={cursor}")
    assert response.status_code == 400
    assert response.json()["field"] == "cursor"


def test_a_key_assignments_cursor_is_refused_by_the_probe_list_of_the_same_order(
    api, staff, tokenbay_key, alice, bob, dave
):
    for username in ("bob", "dave"):
        assign_key(key=tokenbay_key, username=username, actor=alice)
    client = api(staff)
    cursor = next_cursor(client.get(f"/api/v1/keys/{tokenbay_key.pk}/assignments/?limit=1").json())
    response = client.get(f"/api/v1/probes/?cursor={cursor}")
    assert response.status_code == 400
    assert response.json()["field"] == "cursor"
