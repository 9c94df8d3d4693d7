"""Page numbers and positions from the query string: a sentence or the first page, never a 500.

"²".isdigit() is true but int("²") fails, and 10**24 fits no database integer: both were 500s.
"""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import pytest

from gateways.models import ProbeResult

pytestmark = pytest.mark.django_db

HUGE = "1" + "0" * 24  # 10**24
BAD_NUMBERS = ["²", HUGE, "9223372036854775808", "-1", "0", "abc", "1e3", "0x10", ""]


@pytest.fixture
def listed(bob_assignment, tokenbay_key):
    """Something on every list: connections, audit events, probes."""
    for _ in range(3):
        ProbeResult.objects.create(key=tokenbay_key, gateway=tokenbay_key.gateway, verdict="ok")


@pytest.mark.parametrize("value", ["²", HUGE, "-1", "abc"])
def test_the_audit_page_shows_the_newest_events_and_says_why(client, alice, listed, value):
    client.force_login(alice)
    response = client.get("/audit/", {"before": value})
    assert response.status_code == 200
    html = response.content.decode()
    assert "before must be an event id" in html and "assignment.created" in html


def test_a_real_page_and_position_still_work(client, alice, listed):
    client.force_login(alice)
    assert client.get("/connections/", {"page": "2"}).status_code == 200  # an old page link shows the first page
    html = client.get("/audit/", {"before": "2"}).content.decode()
    assert "key.created" in html and "must be" not in html


@pytest.mark.parametrize("param", ["limit", "offset"])
@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_api_limit_offset_lists_never_fail(api, alice, listed, param, value):
    response = api(alice).get("/api/v1/probes/", {param: value})
    assert response.status_code == 200, response.content
    assert len(response.json()["results"]) <= 1000


@pytest.mark.parametrize("value", ["²", HUGE, "-1", "abc"])
def test_api_audit_limit_never_fails(api, alice, listed, value):
    assert api(alice).get("/api/v1/audit-events/", {"limit": value}).status_code == 200


def forged_cursor(**tokens) -> str:
    return base64.b64encode(urlencode(tokens).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        forged_cursor(p="abc"),
        forged_cursor(p="²"),
        forged_cursor(p="1e3"),
        forged_cursor(p=HUGE),
        forged_cursor(p="\x00", r="1"),
        "not base64 at all",
    ],
)
def test_a_forged_audit_cursor_is_a_400_with_a_sentence(api, alice, listed, cursor):
    response = api(alice).get("/api/v1/audit-events/", {"cursor": cursor})
    assert response.status_code == 400
    assert "cursor" in response.json()["detail"]


def test_a_handed_out_cursor_still_pages(api, alice, listed):
    client = api(alice)
    first = client.get("/api/v1/audit-events/", {"limit": 1}).json()
    second = client.get(first["next"]).json()
    assert second["results"] and second["results"][0]["id"] < first["results"][0]["id"]
