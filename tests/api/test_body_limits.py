"""Request bodies are bounded: a huge body is a 413 and a deeply nested one a 400, each with a sentence."""

from __future__ import annotations

import json

import pytest

from gateways.models import Gateway, GatewayKey
from portal.models import Team

pytestmark = pytest.mark.django_db


def post_raw(client, url: str, body: bytes):
    return client.generic("POST", url, body, content_type="application/json")


def test_a_ten_megabyte_body_is_refused_with_a_413_and_nothing_is_stored(api, alice, tokaify):
    padding = "x" * (10 * 1024 * 1024)
    body = json.dumps({"gateway": "tokaify", "label": padding, "secret": "sk-big-000011112222"}).encode()
    response = post_raw(api(alice), "/api/v1/teams/web/keys/", body)
    assert response.status_code == 413
    assert "larger than 1024 KiB" in response.json()["detail"]
    assert not GatewayKey.objects.exists()


def test_a_body_just_under_the_limit_is_read_as_usual(api, staff, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    notes = "Ask #ai-help first. " * 195  # 3,900 characters of a field the gateway takes
    body = json.dumps({"notes": notes}).encode()
    assert 3900 < len(body) <= 4096
    response = api(staff).generic("PATCH", "/api/v1/gateways/tokaify/", body, content_type="application/json")
    assert response.status_code == 200, response.json()
    assert Gateway.objects.get(slug="tokaify").notes == notes.strip()


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        json.dumps({"name": "Deep", "slug": "deep", "extra": json.loads("[" * 33 + "]" * 33)}).encode(),
    ],
    ids=["100k-deep array", "100k-deep object", "33 levels"],
)
def test_deeply_nested_json_is_a_400_with_a_sentence(api, staff, body):
    response = post_raw(api(staff), "/api/v1/teams/", body)
    assert response.status_code == 400
    assert "nested more than 32 levels" in response.json()["detail"]
    assert not Team.objects.filter(slug="deep").exists()


def test_ordinary_nesting_is_read_and_judged_by_the_fields(api, staff):
    """30 levels are parsed: the answer is about the field that holds them, not about the nesting."""
    body = json.dumps({"name": "Fine", "slug": "fine", "extra": json.loads("[" * 30 + "]" * 30)}).encode()
    response = post_raw(api(staff), "/api/v1/teams/", body)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("extra: This endpoint takes no field by that name")
    assert "nested" not in response.json()["detail"]


def test_broken_json_still_says_what_is_wrong(api, staff):
    response = post_raw(api(staff), "/api/v1/teams/", b'{"name": ')
    assert response.status_code == 400 and response.json()["detail"].startswith("JSON parse error")


def test_a_huge_form_post_on_a_page_is_a_413_not_a_500(client, staff):
    client.force_login(staff)
    response = client.post("/teams/new/", {"name": "x" * (2 * 1024 * 1024), "slug": "big"})
    assert response.status_code == 413
    assert not Team.objects.filter(slug="big").exists()
