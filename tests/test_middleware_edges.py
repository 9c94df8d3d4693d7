"""The request middleware at its edges: the exact key-fetch address, a body of exactly the size limit."""

from __future__ import annotations

import json

import pytest

from tests.api.test_devices import KEY_URL, fetch, live_bob  # noqa: F401 (live_bob: fixture)

pytestmark = pytest.mark.django_db


def test_only_the_key_fetch_address_is_answered_as_a_key_fetch(client, live_bob):  # noqa: F811 (the fixture)
    """Addresses that merely start like the key fetch's are not found, and never answer with the device's key."""
    _, token = live_bob
    assert fetch(client, token).status_code == 200
    for path in (KEY_URL + "s", KEY_URL + "/", KEY_URL + "x/extra"):
        response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 404, (path, response.status_code)
        assert "sk-tokenbay" not in response.content.decode()


def test_a_body_of_exactly_the_limit_is_accepted_and_one_byte_more_is_refused(api, staff, settings):
    """DATA_UPLOAD_MAX_MEMORY_SIZE is the largest body accepted, not the first one refused."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    team = json.dumps({"name": "Ops", "slug": "ops"})
    body = team[:-1] + " " * (2000 - len(team)) + "}"  # JSON padded with whitespace to exactly the limit
    assert len(body.encode()) == 2000
    over = api(staff).post("/api/v1/teams/", body + " ", content_type="application/json")
    assert over.status_code == 413
    made = api(staff).post("/api/v1/teams/", body, content_type="application/json")
    assert made.status_code == 201, made.content
