"""A developer's configurations through the API: listing, every format, refusals, audit."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from gateways.config.formats import FORMATS
from gateways.models import Assignment
from gateways.services import revoke_key
from portal.models import AccessToken, AuditEvent
from portal.times import written_time
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


def piped_into_sh(body: bytes, folder: Path) -> None:
    """Run an answer as `curl … | sh` without -f would, in dash and in bash as sh, with a `manage.py` that tells."""
    trap = folder / "bin"
    trap.mkdir(exist_ok=True)
    (trap / "manage.py").write_text(f'#!/bin/sh\ntouch "{folder}/manage_ran"\n')
    (trap / "manage.py").chmod(0o755)
    env = {"PATH": f"{trap}:{os.environ['PATH']}", "LC_ALL": "C.UTF-8", "HOME": str(folder)}
    for shell in ("dash", "bash"):
        subprocess.run([shell], input=body, cwd=folder, env=env, capture_output=True, timeout=30)


def refusal_of(why: str, bob, bob_assignment, tokenbay_key, alice):
    url = f"/api/v1/me/configs/{bob_assignment.id}/install.sh"
    client = APIClient()
    if why == "revoked token":
        token, raw = AccessToken.issue(bob, name="old")
        token.revoked_at = timezone.now()
        token.save()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client.get(url)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.issue(bob, name='t')[1]}")
    if why == "revoked key":
        revoke_key(key=tokenbay_key, actor=alice)
        return client.get(url)
    if why == "unknown address with $()":
        response = client.get("/api/v1/me/conf" + quote("$(touch format_ran)", safe="") + "/")
        assert "There is nothing at that address" in response.json()["detail"]  # the API's 404 handler
        return response
    name = {"format with $()": "x$(touch format_ran)", "format with backticks": "x`touch format_ran`"}[why]
    response = client.get(f"/api/v1/me/configs/{bob_assignment.id}/" + quote(name, safe=""))
    assert "no format by that name" in response.json()["detail"]  # the view's answer, not the router's
    return response


@pytest.mark.shell
@pytest.mark.parametrize(
    "why", ["revoked token", "revoked key", "format with $()", "format with backticks", "unknown address with $()"]
)
def test_a_refused_download_piped_into_sh_runs_nothing(api, bob, alice, bob_assignment, tokenbay_key, why, tmp_path):
    """The README's `curl … | sh`: a refusal's JSON reaches sh when curl runs without -f."""
    response = refusal_of(why, bob, bob_assignment, tokenbay_key, alice)
    assert response.status_code in (401, 404, 410)
    detail = response.json()["detail"]
    assert not set("`$\\") & set(detail), detail
    piped_into_sh(response.content, tmp_path)
    assert not (tmp_path / "manage_ran").exists() and not (tmp_path / "format_ran").exists()


def test_an_expired_or_revoked_token_is_sent_to_the_access_tokens_page(bob):
    token, raw = AccessToken.issue(bob, name="old")
    expired = timezone.now()
    AccessToken.objects.filter(pk=token.pk).update(expires_at=expired)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = client.get("/api/v1/me/configs/")
    assert response.status_code == 401
    assert response.json()["detail"] == (
        f"This access token expired on {written_time(expired)}; make a new one at http://testserver/tokens/."
    )


@pytest.mark.parametrize("format_name", ["install.sh", "bash", "fish", "install.ps1", "settings.json"])
def test_a_download_asked_for_in_its_own_media_type_is_delivered(api, bob, bob_assignment, format_name):
    from gateways.config import formats

    own_type = formats.FORMATS[format_name].content_type
    response = api(bob).get(f"/api/v1/me/configs/{bob_assignment.id}/{format_name}", HTTP_ACCEPT=own_type)
    assert response.status_code == 200, response.content[:200]
    assert response["Content-Type"].startswith(own_type)


def test_a_refused_download_asked_for_as_a_script_is_still_answered_in_json(api, bob, bob_assignment):
    response = api(bob, raise_request_exception=False).get(
        "/api/v1/me/configs/999999/install.sh", HTTP_ACCEPT="text/x-shellscript"
    )
    assert response.status_code == 404
    assert "no configuration with that id" in response.json()["detail"]
