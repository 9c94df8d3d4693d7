"""The connections CSV: refused, not widened, when a filter is not understood, and streamed from the
database in chunks, so a long list never sits in memory whole."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models.query import QuerySet
from django.test import Client
from django.test.utils import CaptureQueriesContext

from gateways import connections
from gateways.models import Assignment
from gateways.services import store_key
from portal.models import Membership, Role
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def csv_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(body(response).decode("utf-8"))))


# --- A filter the page cannot read: no export -----------------------------------------------------------


@pytest.fixture
def two_teams(staff, charlie, data_team, tokenbay, bob_assignment):
    """bob holds a web key; charlie a data key: a CSV of team=data must never hold bob."""
    key = store_key(
        team=data_team, gateway=tokenbay, label="Data key", secret="sk-data-0123456789abcdef", actor=charlie
    )
    Assignment.objects.create(key=key, user=charlie)
    client = Client()
    client.force_login(staff)
    return client


def test_the_page_exports_the_team_asked_for(two_teams):
    assert [row["user"] for row in csv_rows(two_teams.get("/connections/?team=data&export=csv"))] == ["charlie"]


@pytest.mark.parametrize("bad", ["state=Failing", "sort=-downloaded", "sort=--user"])
def test_the_page_refuses_to_export_when_a_filter_is_not_understood(two_teams, bad):
    response = two_teams.get(f"/connections/?team=data&{bad}&export=csv")
    assert not response.streaming and response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "must be one of" in html and "Nothing was exported" in html


def test_a_filter_not_understood_without_export_still_shows_the_page_with_the_rule(two_teams):
    response = two_teams.get("/connections/?sort=-downloaded")
    assert response.status_code == 200 and "sort must be one of" in response.content.decode()


# --- The export streams from a cursor, chunk by chunk ---------------------------------------------------


@pytest.fixture
def many_connections(alice, web, tokenbay):
    """2,500 assignments: 50 keys of web, each held by 50 developers."""
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"dev{i:02d}", email=f"dev{i:02d}@example.com") for i in range(50)
    )
    Membership.objects.bulk_create(Membership(team=web, user=user, role=Role.MEMBER) for user in users)
    keys = [
        store_key(team=web, gateway=tokenbay, label=f"Key {k:02d}", secret=f"sk-many-{k:02d}-0123456789ab", actor=alice)
        for k in range(50)
    ]
    Assignment.objects.bulk_create(Assignment(key=key, user=user) for key in keys for user in users)
    assert Assignment.objects.count() == 2500


def test_the_connections_export_reads_no_list_into_memory(alice, many_connections, monkeypatch):
    loaded = []
    original = QuerySet._fetch_all

    def fetch_all(queryset):
        if queryset.model is Assignment:
            loaded.append(str(queryset.query)[:60])
        return original(queryset)

    monkeypatch.setattr(QuerySet, "_fetch_all", fetch_all)
    rows = csv_rows(api_client_for(alice).get("/api/v1/connections/?export=csv"))
    assert len(rows) == 2500
    assert loaded == [], "every assignment was loaded into the queryset's cache before the first row"


@pytest.mark.parametrize("door", ["api", "page"])
def test_the_streamed_export_is_the_whole_list_in_a_constant_number_of_queries(alice, many_connections, door):
    if door == "api":
        client = api_client_for(alice)
        path = "/api/v1/connections/?export=csv&sort=user"
    else:
        client = Client()
        client.force_login(alice)
        path = "/connections/?export=csv&sort=user"
    with CaptureQueriesContext(connection) as streamed:
        content = body(client.get(path))
    whole = connections.connections_for(alice, connections.ConnectionFilters(sort="user"))
    in_memory = body(connections.connections_csv(list(whole)))
    assert content == in_memory  # the same rows, in the same order, cell for cell
    assert len(content.decode().splitlines()) == 2501
    rows = [q["sql"] for q in streamed.captured_queries if 'FROM "gateways_assignment"' in q["sql"]]
    # One query for the list (a server-side cursor on PostgreSQL, read in chunks): none per row, none per chunk.
    assert len(rows) <= 1 + 2500 // connections.EXPORT_CHUNK, rows
    assert len(streamed.captured_queries) < 20
