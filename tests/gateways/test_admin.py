"""The Django admin is a door like the API and the web form: Model.clean() applies the same rules.

A superuser signs in and posts the admin's own add and change forms; what the API refuses is
refused here too, with the same sentence next to the field, and nothing is saved.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from gateways.models import Gateway, GatewayKey
from portal.models import AuditEvent
from tests.admin_forms import form_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, db):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pass-root")
    client.force_login(user)
    return client


HOSTILE_GATEWAY_FIELDS = [
    ("extra_env", json.dumps({"X=1; touch marker; Y": "v"}), "is not a valid environment variable name"),
    ("extra_env", json.dumps({"PROMPT_COMMAND": "touch marker"}), "PROMPT_COMMAND is not a Claude Code setting"),
    ("extra_env", json.dumps({"NODE_OPTIONS": "--require /tmp/x.js"}), "NODE_OPTIONS is not a Claude Code setting"),
    ("extra_env", json.dumps({"LD_PRELOAD": "/tmp/x.so"}), "would run code"),
    ("extra_env", json.dumps(["DISABLE_TELEMETRY"]), "must be an object of names to values"),
    ("extra_env", json.dumps({"DISABLE_TELEMETRY": "1\ntouch marker"}), "one line of text"),
    ("troubleshooting", json.dumps([["401", "Check the key", "third"]]), "not a [symptom, fix] pair"),
    ("troubleshooting", json.dumps({"401": "Check the key"}), "list of [symptom, fix] pairs"),
    ("troubleshooting", json.dumps([["401", 7]]), "not a [symptom, fix] pair"),
    ("default_model", "sonnet; touch marker", "is not a model id"),
    ("probe_model", "$(touch marker)", "is not a model id"),
    ("base_url", "ftp://gw.example.com", "must start with https://"),
    ("timeout_ms", "5", "between 1000"),
]


@pytest.mark.parametrize("field, value, sentence", HOSTILE_GATEWAY_FIELDS)
def test_admin_add_refuses_what_the_api_refuses(admin_client, field, value, sentence):
    page = admin_client.get("/admin/gateways/gateway/add/")
    data = form_data(page)
    data.update(slug="hostile", name="Hostile", base_url="https://gw.example.com", probe_prompt="ping")
    data[field] = value
    response = admin_client.post("/admin/gateways/gateway/add/", data)
    assert response.status_code == 200  # the form again, with the error, not a redirect
    assert sentence in response.content.decode().replace("&#x27;", "'").replace("&quot;", '"')
    assert field in response.context["adminform"].form.errors
    assert not Gateway.objects.filter(slug="hostile").exists()


@pytest.mark.parametrize("field, value, sentence", HOSTILE_GATEWAY_FIELDS)
def test_admin_change_refuses_what_the_api_refuses(admin_client, tokenbay, field, value, sentence):
    url = f"/admin/gateways/gateway/{tokenbay.pk}/change/"
    data = form_data(admin_client.get(url))
    before = {name: getattr(tokenbay, name) for name in ("extra_env", "troubleshooting", "default_model", "base_url")}
    data[field] = value
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert sentence in response.content.decode().replace("&#x27;", "'").replace("&quot;", '"')
    tokenbay.refresh_from_db()
    assert {name: getattr(tokenbay, name) for name in before} == before


def test_admin_saves_cleaned_values_like_the_api(admin_client, tokenbay):
    url = f"/admin/gateways/gateway/{tokenbay.pk}/change/"
    data = form_data(admin_client.get(url))
    data.update(
        base_url="https://eu.tokenbay.com/v1",
        default_sonnet_model="claude-sonnet-4-6",
        extra_env=json.dumps({"DISABLE_TELEMETRY": 1}),
        troubleshooting=json.dumps([[" 401 ", " Check the key "]]),
    )
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    tokenbay.refresh_from_db()
    assert tokenbay.base_url == "https://eu.tokenbay.com"  # Claude Code adds /v1 itself
    assert tokenbay.default_sonnet_model == "claude-sonnet-4.6"  # TokenBay's dotted style
    assert tokenbay.extra_env == {"DISABLE_TELEMETRY": "1"}
    assert tokenbay.troubleshooting == [["401", "Check the key"]]


@pytest.mark.parametrize(
    "field, value, sentence",
    [
        ("custom_headers", json.dumps({"Authorization": "Bearer x"}), "set by Claude Code itself"),
        ("custom_headers", json.dumps(["X-Team"]), "must be an object of names to values"),
        ("custom_headers", json.dumps({"Bad Name": "x"}), "not a valid HTTP header name"),
        ("model", "sonnet; touch marker", "is not a model id"),
        ("timeout_ms", "5", "between 1000"),
    ],
)
def test_admin_key_change_refuses_what_the_api_refuses(admin_client, tokenbay_key, field, value, sentence):
    url = f"/admin/gateways/gatewaykey/{tokenbay_key.pk}/change/"
    data = form_data(admin_client.get(url))
    data[field] = value
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert sentence in response.content.decode().replace("&#x27;", "'")
    key = GatewayKey.objects.get(pk=tokenbay_key.pk)
    assert (key.custom_headers, key.model, key.timeout_ms) == (
        tokenbay_key.custom_headers,
        tokenbay_key.model,
        tokenbay_key.timeout_ms,
    )


def test_admin_key_change_styles_model_ids_like_the_api(admin_client, tokenbay_key):
    url = f"/admin/gateways/gatewaykey/{tokenbay_key.pk}/change/"
    data = form_data(admin_client.get(url))
    data["model"] = "claude-opus-4-8"
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert GatewayKey.objects.get(pk=tokenbay_key.pk).model == "claude-opus-4.8"


def test_the_admin_gateway_form_explains_the_allow_list(admin_client, tokaify):
    page = admin_client.get(f"/admin/gateways/gateway/{tokaify.pk}/change/").content.decode()
    assert "Anything else (PATH, NODE_OPTIONS, PROMPT_COMMAND...) is refused" in page


def test_the_admin_shows_a_keys_state_and_holders_but_leaves_changing_them_to_the_audited_pages(
    admin_client, bob_assignment, tokenbay_key
):
    url = f"/admin/gateways/gatewaykey/{tokenbay_key.pk}/change/"
    page = admin_client.get(url)
    form = page.context["adminform"].form
    assert "label" in form.fields and "model" in form.fields  # settings, under the same rules as the API
    assert not {"revoked_at", "is_enabled", "last_probe_verdict", "rotated_at"} & set(form.fields)
    [inline] = page.context["inline_admin_formsets"]
    assert not inline.has_add_permission and not inline.has_change_permission and not inline.has_delete_permission
    data = form_data(page)
    data.update({"revoked_at_0": "2026-01-01", "revoked_at_1": "00:00:00", "is_enabled": ""})
    assert admin_client.post(url, data).status_code == 302
    key = GatewayKey.objects.get(pk=tokenbay_key.pk)
    assert key.revoked_at is None and key.is_enabled and key.assignments.count() == 1


def test_a_key_is_not_deleted_in_the_admin(admin_client, bob_assignment, tokenbay_key):
    """Revoked on the key's page (audited, the secret destroyed), never deleted with its history."""
    response = admin_client.post(f"/admin/gateways/gatewaykey/{tokenbay_key.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert GatewayKey.objects.filter(pk=tokenbay_key.pk).exists()


def test_an_admin_gateway_change_is_audited_and_makes_earlier_downloads_stale(admin_client, tokenbay, tokenbay_key):
    """As on the gateway pages and the API: the keys go to the new address, so the change is on record."""
    url = f"/admin/gateways/gateway/{tokenbay.pk}/change/"
    data = form_data(admin_client.get(url))
    data["base_url"] = "https://eu.tokenbay.com"
    assert admin_client.post(url, data).status_code == 302
    event = AuditEvent.objects.get(action="gateway.updated")
    assert event.details["changed"] == {
        "base_url": {"from": "https://api.tokenbay.com", "to": "https://eu.tokenbay.com"}
    }
    assert event.actor_username == "root"  # the admin_client fixture's superuser
    assert GatewayKey.objects.get(pk=tokenbay_key.pk).config_changed_at is not None
    add = form_data(admin_client.get("/admin/gateways/gateway/add/"))
    add.update(slug="corp", name="Corp", base_url="https://llm.corp.example", probe_prompt="ping")
    assert admin_client.post("/admin/gateways/gateway/add/", add).status_code == 302
    assert AuditEvent.objects.filter(action="gateway.created", target="corp").exists()
    assert "slug" not in admin_client.get(url).context["adminform"].form.fields  # set once, when added
