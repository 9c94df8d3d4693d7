"""A list read ids first (portal.pagination) whose row is removed between its two reads: the ids, then the
rows by id. Another request's removal commits in that gap (autocommit on SQLite, READ COMMITTED on
PostgreSQL); here an execute_wrapper lets it commit exactly there, so the interleaving is certain."""

from __future__ import annotations

import pytest
from django.db import connection

from gateways.models import Assignment
from gateways.services import assign_key, remove_assignment

pytestmark = pytest.mark.django_db


def removed_between_the_reads(victim, admin):
    """An execute_wrapper removing `victim` after the page's ids are read, before its rows are."""
    state = {"ids_read": False, "done": False}

    def wrapper(execute, sql, params, many, context):
        if not state["done"] and state["ids_read"] and "gateways_assignment" in sql and " IN (" in sql:
            state["done"] = True
            remove_assignment(assignment=Assignment.objects.get(pk=victim.pk), actor=admin)
        result = execute(sql, params, many, context)
        if 'SELECT "gateways_assignment"."id"' in sql and "LIMIT" in sql:
            state["ids_read"] = True
        return result

    return wrapper, state


@pytest.mark.parametrize("path", ["/api/v1/connections/", "/api/v1/keys/{key}/assignments/"])
def test_a_row_removed_between_a_lists_two_reads_is_left_out_not_a_500(api, alice, bob, dave, tokaify_key, path):
    kept = assign_key(key=tokaify_key, username="bob", actor=alice)
    victim = assign_key(key=tokaify_key, username="dave", actor=alice)
    wrapper, state = removed_between_the_reads(victim, alice)
    with connection.execute_wrapper(wrapper):
        response = api(alice, raise_request_exception=False).get(path.format(key=tokaify_key.id))
    assert state["done"], "the removal did not fall between the two reads"
    assert response.status_code == 200, response.content[:300]
    shown = [row.get("assignment", row.get("id")) for row in response.json()["results"]]
    assert shown == [kept.pk]


def test_the_next_page_after_a_removal_between_the_reads_repeats_and_skips_nothing(api, alice, bob, dave, tokaify_key):
    first = assign_key(key=tokaify_key, username="bob", actor=alice)
    second = assign_key(key=tokaify_key, username="dave", actor=alice)
    client = api(alice, raise_request_exception=False)
    url = f"/api/v1/keys/{tokaify_key.id}/assignments/?limit=1"
    wrapper, state = removed_between_the_reads(first, alice)  # the page's one row goes; the look-ahead row stays
    with connection.execute_wrapper(wrapper):
        page = client.get(url).json()
    assert state["done"]
    assert [row["id"] for row in page["results"]] == [second.pk]
    assert page["next"], "the list held more than one row when it was read"
    rest = client.get(page["next"]).json()
    assert rest["results"] == [] and rest["next"] is None
