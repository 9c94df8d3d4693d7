"""A device asked for a configuration that yields none answers as that configuration's download does, and
the probe list's filters are in the schema a generated client reads."""

from __future__ import annotations

import pytest

from gateways.models import Device
from gateways.services import revoke_key, set_key_enabled
from tests.api.schema_check import errors, served_schema
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db

DEVICE = {"name": "pc", "platform": "linux"}


@pytest.mark.parametrize("how", ["revoked", "disabled"])
def test_a_device_for_a_key_that_yields_no_configuration_is_refused_like_its_download(alice, bob, bob_assignment, how):
    key = bob_assignment.key
    if how == "revoked":
        revoke_key(key=key, actor=alice)
    else:
        set_key_enabled(key=key, enabled=False, actor=alice)
    client = api_client_for(bob, raise_request_exception=False)
    schema = served_schema(client)
    download = client.get(f"/api/v1/me/configs/{bob_assignment.id}/settings.json")
    path = f"/api/v1/me/configs/{bob_assignment.id}/devices/"
    response = client.post(path, DEVICE, format="json")
    assert (response.status_code, download.status_code) == (410, 410)
    assert how in response.json()["detail"]
    assert errors(schema, "POST", path, response) == []
    assert not Device.objects.exists()


def test_a_device_for_a_configuration_taken_back_is_a_documented_404(alice, bob, bob_assignment):
    client = api_client_for(bob, raise_request_exception=False)
    path = f"/api/v1/me/configs/{bob_assignment.id}/devices/"
    bob_assignment.delete()
    response = client.post(path, DEVICE, format="json")
    assert response.status_code == 404
    assert "GET /api/v1/me/configs/" in response.json()["detail"]
    assert errors(served_schema(client), "POST", path, response) == []


def test_the_probe_lists_filters_are_documented(alice):
    schema = served_schema(api_client_for(alice))
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/probes/"]["get"]["parameters"]}
    assert {"verdict", "key", "gateway"} <= set(parameters)
    assert "ok" in parameters["verdict"]["schema"]["enum"]
    assert parameters["key"]["schema"]["format"] == "uuid"
