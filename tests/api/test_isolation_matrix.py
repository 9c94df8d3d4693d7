"""Who may do what through the API: every route x method x role, answered from one table.

The routes come from the API's URL conf (config.api_urls) and the operations from its OpenAPI
schema. A route or a method that MATRIX does not list fails `test_the_matrix_lists_every_route_
and_operation`, so a new endpoint cannot skip the isolation checks: its author has to say here
who may call it.

Roles (tests/conftest.py), all about team web: the outsider is charlie (admin of another team),
the member bob, the auditor dave, the admin alice; staff is in no team. The objects named in a
path are web's: its tokenbay key, and bob's assignment of that key. Every caller uses a personal
access token, like a script (sudo mode, for browser sessions, has its own tests in test_sudo.py).
"""

from __future__ import annotations

import re

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from alerts.models import Channel
from alerts.services import create_channel
from config import api_urls
from gateways.devices import create_device
from gateways.models import Assignment, Device, Gateway, GatewayKey, ProbeResult
from portal.invitations import create_invitation
from portal.models import AuditEvent, Membership, Team
from tests.conftest import make_user
from tests.gateway_emulator import GatewayRules, running_emulator

pytestmark = pytest.mark.django_db

ROLES = ("outsider", "member", "auditor", "admin", "staff")
# For a list across teams: 200, with team web's row among the results (SEES) or without it (BLIND).
SEES, BLIND = "sees", "blind"

# fmt: off
MATRIX = {
    # route in config.api_urls, method:                   outsider member auditor admin  staff
    ("", "GET"):                                            (200,    200,   200,    200,   200),
    ("docs/", "GET"):                                       (200,    200,   200,    200,   200),
    ("schema/", "GET"):                                     (200,    200,   200,    200,   200),
    ("gateways/", "GET"):                                   (200,    200,   200,    200,   200),
    ("gateways/", "POST"):                                  (403,    403,   403,    403,   201),
    ("gateways/<slug:slug>/", "GET"):                       (200,    200,   200,    200,   200),
    ("gateways/<slug:slug>/", "PATCH"):                     (403,    403,   403,    403,   200),
    ("teams/", "GET"):                                      (BLIND,  SEES,  SEES,   SEES,  SEES),
    ("teams/", "POST"):                                     (403,    403,   403,    403,   201),
    ("teams/<slug:slug>/", "GET"):                          (404,    200,   200,    200,   200),
    ("teams/<slug:slug>/", "PATCH"):                        (404,    403,   403,    200,   200),
    ("teams/<slug:slug>/invitations/", "GET"):              (404,    403,   403,    200,   200),
    ("teams/<slug:slug>/invitations/", "POST"):             (404,    403,   403,    201,   201),
    ("teams/<slug:slug>/invitations/<int:invitation_id>/", "DELETE"): (404, 403, 403, 204, 204),
    ("teams/<slug:slug>/members/", "GET"):                  (404,    200,   200,    200,   200),
    ("teams/<slug:slug>/members/", "POST"):                 (404,    403,   403,    201,   201),
    ("teams/<slug:slug>/members/<str:username>/", "DELETE"): (404,   403,   403,    204,   204),
    ("teams/<slug:slug>/keys/", "GET"):                     (404,    403,   200,    200,   200),
    ("teams/<slug:slug>/keys/", "POST"):                    (404,    403,   403,    201,   201),
    ("keys/<uuid:key_id>/", "GET"):                         (404,    404,   200,    200,   200),
    ("keys/<uuid:key_id>/", "PATCH"):                       (404,    404,   403,    200,   200),
    ("keys/<uuid:key_id>/", "DELETE"):                      (404,    404,   403,    204,   204),
    ("keys/<uuid:key_id>/assignments/", "GET"):             (404,    404,   200,    200,   200),
    ("keys/<uuid:key_id>/assignments/", "POST"):            (404,    404,   403,    201,   201),
    ("assignments/<int:assignment_id>/", "DELETE"):         (404,    403,   403,    204,   204),
    ("me/configs/", "GET"):                                 (BLIND,  SEES,  BLIND,  BLIND, BLIND),
    ("me/configs/<int:assignment_id>/<str:format_name>", "GET"):  (404, 200, 404,   404,   404),
    ("me/configs/<int:assignment_id>/<str:format_name>/", "GET"): (404, 200, 404,   404,   404),
    ("keys/<uuid:key_id>/probes/", "GET"):                  (404,    404,   200,    200,   200),
    ("keys/<uuid:key_id>/probes/", "POST"):                 (404,    404,   403,    201,   201),
    ("probes/", "GET"):                                     (BLIND,  BLIND, SEES,   SEES,  SEES),
    ("audit-events/", "GET"):                               (BLIND,  BLIND, SEES,   SEES,  SEES),
    ("connections/", "GET"):                                (BLIND,  SEES,  SEES,   SEES,  SEES),
    # Live keys: a device is made for one's own configuration, listed by its owner (a team's with ?team=),
    # removed by its owner or a team admin.
    ("me/configs/<int:assignment_id>/devices/", "POST"):    (404,    201,   404,    404,   404),
    ("devices/", "GET"):                                    (BLIND,  SEES,  BLIND,  BLIND, BLIND),
    ("devices/<int:device_id>/", "DELETE"):                 (404,    204,   403,    204,   204),
    # Notification channels: read by the team's admins and auditors, changed by its admins.
    ("teams/<slug:slug>/channels/", "GET"):                 (404,    403,   200,    200,   200),
    ("teams/<slug:slug>/channels/", "POST"):                (404,    403,   403,    201,   201),
    ("channels/<uuid:channel_id>/", "GET"):                 (404,    404,   200,    200,   200),
    ("channels/<uuid:channel_id>/", "DELETE"):              (404,    404,   403,    204,   204),
}
# fmt: on

# A valid body for each write, so that an answer speaks about the caller, not the input.
BODIES = {
    ("gateways/", "POST"): {
        "slug": "mygw",
        "name": "My GW",
        "base_url": "https://gw.example.com",
        "auth_scheme": "bearer",
    },
    ("gateways/<slug:slug>/", "PATCH"): {"name": "Tokenbay EU"},
    ("teams/", "POST"): {"name": "Mobile", "slug": "mobile"},
    ("teams/<slug:slug>/members/", "POST"): {"username": "erin", "role": "member"},
    ("teams/<slug:slug>/", "PATCH"): {"sso_member_group": "engineering"},
    ("teams/<slug:slug>/invitations/", "POST"): {"email": "newcomer@example.com", "role": "member"},
    ("teams/<slug:slug>/keys/", "POST"): {
        "gateway": "tokaify",
        "label": "Matrix",
        "secret": "sk-matrix-0123456789abcdef",
    },
    ("keys/<uuid:key_id>/", "PATCH"): {"label": "Renamed"},
    ("keys/<uuid:key_id>/assignments/", "POST"): {"username": "dave"},
    ("me/configs/<int:assignment_id>/devices/", "POST"): {"name": "matrix laptop", "platform": "linux"},
    ("teams/<slug:slug>/channels/", "POST"): {"kind": "email", "target": "matrix@example.com"},
}
# How to find team web's row in a list across teams.
WEB_ROW = {
    "teams/": lambda row, world: row["slug"] == "web",
    "me/configs/": lambda row, world: row["id"] == world["assignment_id"],
    "probes/": lambda row, world: row["key"] == world["key_id"],
    "audit-events/": lambda row, world: row["team"] == "web",
    "connections/": lambda row, world: row["team"] == "web",
    "devices/": lambda row, world: row["id"] == world["device_id"],
}
# The two doors a device itself uses are plain views with their own credential (a one-time install
# code, a device token), not a role: tests/api/test_devices.py covers who gets through them.
DEVICE_DOORS = {"device/key", "device/install/<str:code>", "device/install/"}

# The interactive API docs (Swagger UI) are an HTML page inside the portal, not an API answer.
BROWSER_PAGES = {"docs/"}

PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")
API_PREFIX = "/api/v1/"
ROUTES = [str(pattern.pattern) for pattern in api_urls.urlpatterns]


def route_methods() -> set[tuple[str, str]]:
    """Every (route, method) the URL conf serves, from the methods its view class implements."""
    found = set()
    for pattern in api_urls.urlpatterns:
        view = getattr(pattern.callback, "view_class", None)
        if view is None:
            assert str(pattern.pattern) in DEVICE_DOORS, f"{pattern.pattern} is not a DRF view: say who may call it"
            continue
        for method in view.http_method_names:
            if method not in ("head", "options") and hasattr(view, method):
                found.add((str(pattern.pattern), method.upper()))
    return found


def schema_operations() -> set[tuple[str, str]]:
    """Every (path, method) the OpenAPI schema documents, with the path spelled like a route."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {(path, method.upper()) for path, item in schema["paths"].items() for method in item}


def as_schema_path(route: str) -> str:
    return API_PREFIX + PARAMETER.sub(r"{\1}", route)


def test_the_matrix_lists_every_route_and_operation():
    served = route_methods()
    assert served - set(MATRIX) == set(), "Add these routes to MATRIX: who may call them?"
    assert set(MATRIX) - served == set(), "MATRIX names routes or methods the API no longer serves"
    documented = schema_operations()
    listed = {(as_schema_path(route), method) for route, method in MATRIX}
    assert documented - listed == set(), "The schema documents operations MATRIX does not list"
    assert set(BODIES) <= set(MATRIX)
    assert {route for (route, _), row in MATRIX.items() if SEES in row or BLIND in row} <= set(WEB_ROW)


@pytest.fixture
def world(web, data_team, alice, bob, dave, charlie, staff, tokenbay_key, bob_assignment):
    """Team web with a key, bob's assignment of it and a probe result; erin, in no team, to be added.

    The key's gateway is the emulator on 127.0.0.1, so a probe that is allowed really runs.
    """
    make_user("erin")
    ProbeResult.objects.create(key=tokenbay_key, gateway=tokenbay_key.gateway, verdict="ok")
    invitation, _ = create_invitation(team=web, email="pending@example.com", role="member", actor=alice)
    # Made by "the system", so that bob's own audit trail stays as the audit-events row expects.
    device, _ = create_device(assignment=bob_assignment, name="bob laptop", platform="linux", actor=None)
    channel = create_channel(team=web, kind="email", target="ops@example.com", actor=None)
    with running_emulator(GatewayRules(accept_any_key=True)) as gateway:
        Gateway.objects.filter(slug="tokenbay").update(base_url=gateway.base_url)
        yield {
            "users": {"outsider": charlie, "member": bob, "auditor": dave, "admin": alice, "staff": staff},
            "slug": "web",
            "key_id": str(tokenbay_key.id),
            "assignment_id": bob_assignment.id,
            "username": "bob",
            "format_name": "bash",
            "invitation_id": invitation.id,
            "device_id": device.id,
            "channel_id": channel.id,
        }


def path_for(route: str, world: dict) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        if route.startswith("gateways/") and name == "slug":
            return "tokenbay"
        return str(world[name])

    return API_PREFIX + PARAMETER.sub(value, route)


def snapshot() -> tuple:
    """What a write can change, in a form that compares: refused calls must leave it as it was."""
    return (
        list(Gateway.objects.order_by("slug").values_list("slug", "name", "base_url")),
        list(Team.objects.order_by("slug").values_list("slug", "name")),
        list(Membership.objects.order_by("pk").values_list("team__slug", "user__username", "role")),
        list(GatewayKey.objects.order_by("pk").values_list("pk", "label", "revoked_at", "secret_ciphertext")),
        list(Assignment.objects.order_by("pk").values_list("pk", "key_id", "user__username")),
        ProbeResult.objects.count(),
        AuditEvent.objects.count(),
        list(Device.objects.order_by("pk").values_list("pk", "revoked_at")),
        list(Channel.objects.order_by("pk").values_list("pk", "target")),
    )


CASES = [(route, method, role) for (route, method), row in MATRIX.items() for role in ROLES]


@pytest.mark.parametrize(("route", "method", "role"), CASES, ids=lambda v: str(v))
def test_each_role_gets_what_the_matrix_says(route, method, role, world, api):
    expected = MATRIX[route, method][ROLES.index(role)]
    client = api(world["users"][role])
    path = path_for(route, world)
    before = snapshot()
    response = getattr(client, method.lower())(path, BODIES.get((route, method)), format="json")
    wanted = 200 if expected in (SEES, BLIND) else expected
    assert response.status_code == wanted, (role, method, path, response.content[:300])
    if wanted >= 400:
        assert response.json()["detail"], "a refusal says why"
        assert snapshot() == before, f"a refused {method} changed something"
    elif method != "GET":
        assert snapshot() != before, f"an allowed {method} changed nothing"
    if expected in (SEES, BLIND):
        rows = response.json()["results"]
        assert any(WEB_ROW[route](row, world) for row in rows) is (expected == SEES), (role, path, rows)


@pytest.mark.parametrize(("route", "method"), list(MATRIX), ids=lambda v: str(v))
def test_without_a_token_every_operation_is_a_401_with_a_sentence(route, method, world):
    before = snapshot()
    response = getattr(APIClient(), method.lower())(path_for(route, world), BODIES.get((route, method)), format="json")
    if route in BROWSER_PAGES:  # a page for people: like every other page, it sends them to sign in
        assert response.status_code == 302 and response["Location"].startswith("/login/?next=/api/v1/"), route
    else:
        assert response.status_code == 401, (method, route, response.content[:300])
        assert response.json()["detail"]
    assert snapshot() == before
