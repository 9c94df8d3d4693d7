"""A wrong method at a device's door says why, in plain text, with Allow; and the served schema describes the
`notices` that creating or editing a gateway answers with."""

from __future__ import annotations

import pytest
from django.test import Client

from gateways.devices import create_device
from gateways.models import Device
from tests.api.schema_check import errors, served_schema

pytestmark = pytest.mark.django_db

DOORS = ["/api/v1/device/key", "/api/v1/device/install/abc_def", "/api/v1/device/install/"]


# --- A wrong method at a device's door ----------------------------------------------------------------------


@pytest.mark.parametrize("path", DOORS)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_a_wrong_method_at_a_device_door_is_a_405_that_says_why_in_plain_text(path, method):
    # As curl sends it: no cookie, no CSRF token (a CSRF page would be no answer to a wrong method).
    response = Client(enforce_csrf_checks=True).generic(method, path)
    assert response.status_code == 405
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Allow"] == "GET"
    assert f'Method "{method}" not allowed' in response.content.decode()
    assert "GET" in response.content.decode()


@pytest.mark.parametrize("path", DOORS)
def test_head_at_a_device_door_stays_refused(path):
    response = Client().head(path)
    assert response.status_code == 405
    assert response["Allow"] == "GET"


def test_a_wrong_method_does_not_use_the_install_link(bob, bob_assignment):
    device, code = create_device(assignment=bob_assignment, name="laptop", platform="linux", actor=bob)
    client = Client(enforce_csrf_checks=True)
    for method in ("POST", "HEAD", "DELETE"):
        assert client.generic(method, f"/api/v1/device/install/{code}").status_code == 405
    assert Device.objects.get(pk=device.pk).installed_at is None
    installed = client.get(f"/api/v1/device/install/{code}")
    assert installed.status_code == 200
    assert Device.objects.get(pk=device.pk).installed_at is not None


# --- The gateway writes' `notices` in the served schema -----------------------------------------------------


def _documented_properties(schema: dict, path: str, method: str, code: str) -> set[str]:
    content = schema["paths"][path][method]["responses"][code]["content"]["application/json"]["schema"]
    name = content["$ref"].rsplit("/", 1)[-1]
    return set(schema["components"]["schemas"][name]["properties"])


def _check_against_schema(schema: dict, method: str, path: str, template: str, response) -> None:
    assert errors(schema, method, path, response) == []
    # jsonschema lets a field the schema never names through: a generated client drops it.
    documented = _documented_properties(schema, template, method.lower(), str(response.status_code))
    assert set(response.json()) <= documented, set(response.json()) - documented


def test_creating_a_gateway_answers_what_the_served_schema_says_notices_included(api, staff):
    client = api(staff)
    schema = served_schema(client)
    body = {"slug": "mygw", "name": "My GW", "base_url": "https://gw.example.com/v1/", "auth_scheme": "bearer"}
    response = client.post("/api/v1/gateways/", body, format="json")
    assert response.status_code == 201
    assert response.json()["notices"], "the trailing /v1 is removed with a notice: an empty list checks nothing"
    _check_against_schema(schema, "POST", "/api/v1/gateways/", "/api/v1/gateways/", response)
    notices = schema["components"]["schemas"]
    assert any(
        props.get("properties", {}).get("notices", {}).get("items", {}).get("type") == "string"
        for props in notices.values()
    )


def test_editing_a_gateway_answers_what_the_served_schema_says_notices_included(api, staff, tokaify):
    client = api(staff)
    schema = served_schema(client)
    response = client.patch("/api/v1/gateways/tokaify/", {"base_url": "https://gw.example.com/v1"}, format="json")
    assert response.status_code == 200
    assert response.json()["notices"]
    _check_against_schema(schema, "PATCH", "/api/v1/gateways/tokaify/", "/api/v1/gateways/{slug}/", response)


def test_reading_a_gateway_is_still_documented_without_notices(api, staff, tokaify):
    schema = served_schema(api(staff))
    assert "notices" not in _documented_properties(schema, "/api/v1/gateways/{slug}/", "get", "200")
