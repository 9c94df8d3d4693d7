"""Request bodies are bounded: a huge body is a 413 and a deeply nested one a 400, each with a sentence."""

from __future__ import annotations

import json

import pytest

from gateways.models import GatewayKey
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
    body = json.dumps({"name": "N" * 50, "slug": "roomy", "pad": "p" * 3900}).encode()
    assert len(body) <= 4096
    assert post_raw(api(staff), "/api/v1/teams/", body).status_code == 201


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


def test_ordinary_nesting_still_works(api, staff):
    body = json.dumps({"name": "Fine", "slug": "fine", "extra": json.loads("[" * 30 + "]" * 30)}).encode()
    assert post_raw(api(staff), "/api/v1/teams/", body).status_code == 201


def test_broken_json_still_says_what_is_wrong(api, staff):
    response = post_raw(api(staff), "/api/v1/teams/", b'{"name": ')
    assert response.status_code == 400 and response.json()["detail"].startswith("JSON parse error")


def test_a_huge_form_post_on_a_page_is_a_400_not_a_500(client, staff):
    client.force_login(staff)
    response = client.post("/teams/new/", {"name": "x" * (2 * 1024 * 1024), "slug": "big"})
    assert response.status_code == 400
    assert not Team.objects.filter(slug="big").exists()
