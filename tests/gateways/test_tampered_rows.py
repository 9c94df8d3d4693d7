"""Rows saved around the rules (a data migration, `objects.create`, an old row) never reach an artifact.

The config builder and every renderer check what they write again, so a hostile variable name or a
malformed field held by the database gives the page, each download and the probe a sentence: never a
500, never a file carrying the stored text.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from gateways.config.formats import FORMATS
from gateways.models import Assignment, Gateway, GatewayKey
from portal.models import AuditEvent

pytestmark = pytest.mark.django_db

# Every payload carries the word "marker", so a test can tell whether stored text got out.
TAMPERED = {
    "command in a name": ("gateway", {"extra_env": {"X=1; touch marker; Y": "v"}}),
    "PROMPT_COMMAND": ("gateway", {"extra_env": {"PROMPT_COMMAND": "touch marker"}}),
    "BASH_ENV": ("gateway", {"extra_env": {"BASH_ENV": "./marker.sh"}}),
    "NODE_OPTIONS": ("gateway", {"extra_env": {"NODE_OPTIONS": "--require ./marker.js"}}),
    "LD_PRELOAD": ("gateway", {"extra_env": {"LD_PRELOAD": "./marker.so"}}),
    "PATH": ("gateway", {"extra_env": {"PATH": "./marker:/usr/bin"}}),
    "name with $()": ("gateway", {"extra_env": {"$(touch marker)": "v"}}),
    "extra env saved as a list": ("gateway", {"extra_env": ["DISABLE_TELEMETRY", "marker"]}),
    "value on two lines": ("gateway", {"extra_env": {"DISABLE_TELEMETRY": "1\ntouch marker"}}),
    "invalid gateway model id": ("gateway", {"default_model": "$(touch marker)"}),
    "invalid key model id": ("key", {"model": "sonnet`touch marker`"}),
    "custom headers saved as a list": ("key", {"custom_headers": ["X-Team: marker"]}),
    "base URL over plain http": ("gateway", {"base_url": "http://marker.example.com"}),
    "base URL ending in /v1": ("gateway", {"base_url": "https://marker.example.com/v1"}),
}


@pytest.fixture(params=list(TAMPERED))
def tampered(request, bob_assignment, tokenbay, tokenbay_key):
    """Bob's configuration, after the database was written around the rules."""
    owner, fields = TAMPERED[request.param]
    model, pk = (Gateway, tokenbay.pk) if owner == "gateway" else (GatewayKey, tokenbay_key.pk)
    model.objects.filter(pk=pk).update(**fields)
    return bob_assignment


def test_the_setup_page_says_why_and_shows_no_snippet(client, bob, tampered):
    client.force_login(bob)
    response = client.get("/setup/")
    assert response.status_code == 200
    [card] = response.context["cards"]
    assert card["error"].startswith("This set-up cannot be written:")
    assert "tabs" not in card
    assert "marker" not in response.content.decode()


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_web_download_is_refused_with_a_sentence(client, bob, tampered, name):
    client.force_login(bob)
    response = client.get(f"/setup/{tampered.id}/{name}")
    assert response.status_code == 302 and response["Location"] == "/setup/"
    assert "Content-Disposition" not in response
    page = client.get("/setup/").content.decode()
    assert "This set-up cannot be written:" in page
    assert "marker" not in page
    assert Assignment.objects.get(pk=tampered.pk).download_count == 0
    assert not AuditEvent.objects.filter(action="config.downloaded", details__format=name).exists()


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_api_download_is_a_422_with_a_sentence_safe_to_pipe_into_sh(api, bob, tampered, name):
    response = api(bob).get(f"/api/v1/me/configs/{tampered.id}/{name}")
    assert response.status_code == 422
    body = response.content.decode()
    assert response.json()["detail"].startswith("This set-up cannot be written:")
    # `curl ... | sh` runs whatever comes back: the refusal echoes none of the stored text.
    assert "marker" not in body and "$" not in body and "`" not in body
    assert Assignment.objects.get(pk=tampered.pk).download_count == 0


def test_a_probe_of_a_tampered_configuration_is_refused_with_the_reason(api, alice, tampered, tokenbay_key):
    response = api(alice).post(f"/api/v1/keys/{tokenbay_key.id}/probes/")
    assert response.status_code == 201
    assert response.json()["verdict"] == "refused"
    assert response.json()["hint"].startswith("This set-up cannot be written:")


def test_staff_can_open_the_tampered_gateway_to_correct_it(client, staff, tampered):
    client.force_login(staff)
    assert client.get("/gateways/tokenbay/").status_code == 200
    assert client.get("/gateways/tokenbay/edit/").status_code == 200
    superuser = get_user_model().objects.create_superuser("root", "root@example.com", "pass-root")
    client.force_login(superuser)
    gateway = Gateway.objects.get(slug="tokenbay")
    assert client.get(f"/admin/gateways/gateway/{gateway.pk}/change/").status_code == 200


@pytest.mark.parametrize(
    "troubleshooting",
    [[["401", "Check the key", "marker"]], [["marker"]], {"401": "marker"}, "marker", [["401", 7]], [None]],
    ids=["three items", "one item", "an object", "a string", "a number", "null row"],
)
def test_a_malformed_troubleshooting_table_is_left_out_with_a_sentence(
    client, bob, staff, bob_assignment, tokenbay, troubleshooting
):
    Gateway.objects.filter(pk=tokenbay.pk).update(troubleshooting=troubleshooting)
    client.force_login(bob)
    setup = client.get("/setup/")
    assert setup.status_code == 200
    assert setup.context["cards"][0]["tabs"]  # the configuration itself is fine
    detail = client.get("/gateways/tokenbay/")
    assert detail.status_code == 200
    assert "troubleshooting table cannot be shown" in detail.content.decode()
    client.force_login(staff)
    assert client.get("/gateways/tokenbay/edit/").status_code == 200


def test_a_gateway_with_an_auth_scheme_saved_around_the_rules_yields_no_config(tokenbay, tokenbay_key):
    """An unknown scheme has no credential variable: a config would carry no key, so none is built."""
    from gateways.config.builder import build_config
    from gateways.rules import UnrepresentableValue

    Gateway.objects.filter(pk=tokenbay.pk).update(auth_scheme="marker")
    gateway = Gateway.objects.get(pk=tokenbay.pk)
    with pytest.raises(UnrepresentableValue, match="the gateway's auth_scheme setting breaks the portal's rules"):
        build_config(gateway, tokenbay_key, tokenbay_key.reveal_secret())
