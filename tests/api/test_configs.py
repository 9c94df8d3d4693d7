"""A developer's configurations through the API: listing, every format, refusals, audit."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from gateways.config.formats import FORMATS
from gateways.models import Assignment
from portal.models import AuditEvent
from tests.conftest import TOKENBAY_SECRET

pytestmark = pytest.mark.django_db


def test_my_configs_lists_the_callers_assignments(api, bob, bob_assignment):
    [config] = api(bob).get("/api/v1/me/configs/").json()["results"]
    assert config["id"] == bob_assignment.id
    assert config["gateway"] == "tokenbay"
    assert config["team"] == "web"
    assert config["key_label"] == "Bob laptop"
    assert config["masked"] == "sk-…cdef"
    assert set(config["formats"]) == set(FORMATS)
    assert config["formats"]["bash"].endswith(f"/api/v1/me/configs/{bob_assignment.id}/bash")
    assert TOKENBAY_SECRET not in json.dumps(config)


def test_others_see_no_configs_of_bobs(api, alice, charlie, bob_assignment):
    assert api(alice).get("/api/v1/me/configs/").json()["results"] == []
    assert api(charlie).get("/api/v1/me/configs/").json()["results"] == []
    # Even the team admin cannot download a developer's secret.
    assert api(alice).get(f"/api/v1/me/configs/{bob_assignment.id}/bash").status_code == 404


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_downloads_with_a_filename(api, bob, bob_assignment, name):
    response = api(bob).get(f"/api/v1/me/configs/{bob_assignment.id}/{name}")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="')
    assert response["Cache-Control"] == "no-store"
    text = response.content.decode()
    if name == "settings.json":
        assert json.loads(text)["env"]["ANTHROPIC_AUTH_TOKEN"] == TOKENBAY_SECRET
    elif name.startswith("install"):
        assert "PORTAL_ENV" in text or "Decode-Json" in text
    else:
        assert TOKENBAY_SECRET in text


def test_unknown_format_is_a_404_listing_the_formats(api, bob, bob_assignment):
    response = api(bob).get(f"/api/v1/me/configs/{bob_assignment.id}/yaml")
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert "'yaml'" in detail
    for name in FORMATS:
        assert name in detail


def test_download_is_an_audit_event_and_updates_the_connection(api, bob, bob_assignment, tokenbay_key):
    client = api(bob)
    response = client.get(
        f"/api/v1/me/configs/{bob_assignment.id}/zsh", HTTP_USER_AGENT="curl/8.5", REMOTE_ADDR="10.1.2.3"
    )
    assert response.status_code == 200
    event = AuditEvent.objects.filter(action="config.downloaded").latest("id")
    assert event.actor_username == "bob"
    assert event.target == tokenbay_key.short_fingerprint
    assert event.details["format"] == "zsh"
    assert event.details["assignment"] == bob_assignment.id
    assert event.ip_address == "10.1.2.3"
    assert event.user_agent == "curl/8.5"
    assert TOKENBAY_SECRET not in json.dumps(event.details)
    assignment = Assignment.objects.get(pk=bob_assignment.pk)
    assert assignment.last_download_format == "zsh"
    assert assignment.last_download_ip == "10.1.2.3"
    assert assignment.download_count == 1


@pytest.mark.parametrize(
    "change, word",
    [
        ({"is_enabled": False}, "disabled"),
        ({"revoked_at": timezone.now()}, "revoked"),
        ({"expires_at": timezone.now()}, "expired"),
    ],
)
def test_unusable_key_yields_a_message_not_a_config(api, bob, bob_assignment, tokenbay_key, change, word):
    type(tokenbay_key).objects.filter(pk=tokenbay_key.pk).update(**change)
    response = api(bob).get(f"/api/v1/me/configs/{bob_assignment.id}/bash")
    assert response.status_code == 410
    assert word in response.json()["detail"]
    assert TOKENBAY_SECRET not in response.content.decode()
    assert AuditEvent.objects.filter(action="config.refused").exists()


def test_a_value_cmd_cannot_carry_is_explained(api, bob, bob_assignment, tokenbay_key):
    tokenbay_key.custom_headers = {"X-Discount": "50%"}
    tokenbay_key.save()
    response = api(bob).get(f"/api/v1/me/configs/{bob_assignment.id}/cmd")
    assert response.status_code == 422
    assert "percent sign" in response.json()["detail"]
    assert not AuditEvent.objects.filter(action="config.downloaded").exists()
    assert Assignment.objects.get(pk=bob_assignment.pk).last_download_at is None


def test_config_list_query_count_does_not_grow(api, bob, web, tokenbay, alice, django_assert_max_num_queries):
    from gateways.services import assign_key, store_key

    for i in range(5):
        key = store_key(team=web, gateway=tokenbay, label=f"k{i}", secret=f"sk-many-{i}-0000000000", actor=alice)
        assign_key(key=key, username="bob", actor=alice)
    client = api(bob)
    with django_assert_max_num_queries(4):
        assert len(client.get("/api/v1/me/configs/").json()["results"]) == 5


def test_download_url_works_with_a_trailing_slash(api, bob, bob_assignment):
    response = api(bob).get(f"/api/v1/me/configs/{bob_assignment.id}/settings.json/")
    assert response.status_code == 200
    assert json.loads(response.content)["env"]["ANTHROPIC_AUTH_TOKEN"] == TOKENBAY_SECRET
