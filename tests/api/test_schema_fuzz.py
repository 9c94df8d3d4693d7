"""Property-based: whatever schemathesis sends to any API operation, the answer is never a 500 and never a key.

The schema is the portal's own (drf-spectacular), built by a fixture when the test runs, so that
collecting the suite stays fast; each operation is a subtest. The calls go in-process through the
WSGI app, authenticated as staff so every operation is reachable, with DEBUG on (a 500 would be the
debug page). Every operation is covered, POST /keys/{id}/probes/ included: the keys' gateways point at
the emulator on 127.0.0.1, which echoes the key it gets, and every answer is checked for every
encoding of the probed key (a canary with the characters escaping changes) and for the others.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings

from config.wsgi import application
from gateways.services import store_key
from portal.models import AccessToken
from tests.conftest import TOKAIFY_SECRET, TOKENBAY_SECRET
from tests.gateway_emulator import GatewayRules, running_emulator
from tests.portal.test_redaction import leaks

CANARY = 'sk-fz81c0/9e4a7d+b2f63e="5da07c91'


@pytest.fixture(scope="module")
def api_schema():
    """The portal's schema, built when the test runs: collecting the suite does not pay for it."""
    raw_schema = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    schema = schemathesis.openapi.from_dict(raw_schema)
    schema.app = application
    return schema


# One test; each operation runs as a subtest of it, reported by its label (e.g. `GET /api/v1/teams/`).
schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request):
    """schemathesis 4.32's lazy schema reads the test's `node._nodeid`, which pytest 9.2 no longer has."""
    request.node._nodeid = request.node.nodeid


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Like Django's test client: a request's end must not close the test transaction's connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def real_objects(settings, staff, bob_assignment, tokaify_key, data_team, web, tokaify, tokenbay):
    """A token, and path parameters naming existing objects whose gateway is the echoing emulator (one set for all)."""
    settings.DEBUG = True
    _, raw = AccessToken.issue(staff)
    canary_key = store_key(team=web, gateway=tokaify, label="Canary", secret=CANARY, actor=staff)
    with running_emulator(GatewayRules(accept_any_key=True, behaviour="echo_json")) as gw:
        for gateway in (tokaify, tokenbay):
            gateway.base_url = gw.base_url
            gateway.save()
        yield raw, {"key_id": str(canary_key.id), "assignment_id": bob_assignment.id, "username": "bob"}


def real_path(case, known: dict) -> dict:
    params = dict(case.path_parameters or {})
    for name in params:
        if name == "slug":
            params[name] = "tokaify" if case.path.startswith("/api/v1/gateways/") else "web"
        elif name in known:
            params[name] = known[name]
    return params


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_api_fail(case, real_objects):
    token, known = real_objects
    # As generated (mostly unknown objects), then with the same input aimed at existing objects.
    for path_parameters in (case.path_parameters, real_path(case, known)):
        case.path_parameters = path_parameters
        with transaction.atomic():  # every call starts from the same objects, whatever the last one deleted
            response = case.call(headers={"Authorization": f"Bearer {token}"})
            transaction.set_rollback(True)
        assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:300])
        assert leaks(response.text, CANARY) == [], (case.method, case.formatted_path, response.text[:300])
        assert TOKAIFY_SECRET not in response.text and TOKENBAY_SECRET not in response.text
        if response.headers.get("Content-Type", "").startswith("application/json") and response.status_code >= 400:
            assert response.json().get("detail"), response.text[:300]
