"""portal.compiled_sql: the hot paths' statements give what the ORM gives, for one query each."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gateways.models import Assignment, Device
from gateways.selectors import my_assignment
from portal import audit
from portal.compiled_sql import CompiledInsert, CompiledRead, CompiledUpdate, fits_bigint
from portal.models import AccessToken, Action, AuditEvent

ASSIGNMENT_WITH_KEY = CompiledRead(Assignment, where=("user_id", "pk"), related=("key", "key__gateway", "key__team"))


def field_values(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}


def test_a_compiled_read_builds_the_instances_select_related_builds(bob_assignment, bob):
    expected = Assignment.objects.select_related("key__gateway", "key__team").get(pk=bob_assignment.pk)
    with CaptureQueriesContext(connection) as queries:
        got = ASSIGNMENT_WITH_KEY.get(bob.pk, bob_assignment.pk)
        # The related rows came with it: reading them asks nothing more.
        related = (got.key, got.key.gateway, got.key.team)
    assert len(queries) == 1
    assert field_values(got) == field_values(expected)
    assert [field_values(r) for r in related] == [
        field_values(expected.key),
        field_values(expected.key.gateway),
        field_values(expected.key.team),
    ]
    assert got._state.adding is False and got._state.db == "default"


def test_a_compiled_read_matches_every_where_value_whatever_order_the_orm_puts_them_in(bob_assignment, bob, alice):
    # The ORM sorts a filter's conditions (pk before user_id): each value must still meet its own column.
    assert ASSIGNMENT_WITH_KEY.get(alice.pk, bob_assignment.pk) is None
    assert ASSIGNMENT_WITH_KEY.get(bob.pk, bob_assignment.pk + 1000) is None
    assert ASSIGNMENT_WITH_KEY.get(bob.pk, bob_assignment.pk).pk == bob_assignment.pk


def test_a_compiled_read_with_some_fields_loads_only_those(bob, api):
    _, raw = AccessToken.issue(bob, name="laptop")
    token = AccessToken.objects.authenticate(raw)
    read = CompiledRead(AccessToken, where=("lookup_id",), related=("user",), fields={"user": {"id", "username"}})
    got = read.get(token.lookup_id)
    assert (got.name, got.user.username) == ("laptop", "bob")
    assert got.user.get_deferred_fields() >= {"email", "password"}
    with pytest.raises(TypeError, match="takes 1 values, got 2"):
        read.get(token.lookup_id, "extra")


def test_a_compiled_read_leaves_a_missing_nullable_relation_as_none(db):
    event = audit.record(Action.TEAM_CREATED, details={"name": "none"})
    read = CompiledRead(AuditEvent, where=("pk",), related=("actor", "team"))
    got = read.get(event.pk)
    assert (got.actor, got.team, got.action) == (None, None, Action.TEAM_CREATED)


def test_a_compiled_read_must_load_the_primary_key(db):
    read = CompiledRead(AccessToken, where=("lookup_id",), related=("user",), fields={"user": {"username"}})
    with pytest.raises(ValueError, match="must include the primary key"):
        read.get("abc")


def test_a_compiled_insert_stores_what_save_stores(db, alice):
    event = audit.new_event(Action.TEAM_CREATED, actor=alice, details={"name": "\u00e9quipe", "n": 1})
    event.prev_hash, event.hash, event.signature = "p" * 64, "h" * 64, "s"
    CompiledInsert(AuditEvent).insert(event)
    assert event.pk is not None and event._state.adding is False
    stored = AuditEvent.objects.get(pk=event.pk)
    assert field_values(stored) == field_values(event)


def test_a_compiled_insert_of_several_rows_stores_each_in_order_in_one_statement(db, alice):
    events = [audit.new_event(Action.TEAM_CREATED, actor=alice, details={"n": n}) for n in range(3)]
    for n, event in enumerate(events):
        event.prev_hash, event.hash, event.signature = "p" * 64, f"{n}" * 64, "s"
    with CaptureQueriesContext(connection) as queries:
        CompiledInsert(AuditEvent).insert(*events)
    assert len(queries) == 1
    ids = [event.pk for event in events]
    assert None not in ids and ids == sorted(ids)
    for event in events:
        assert field_values(AuditEvent.objects.get(pk=event.pk)) == field_values(event)


@pytest.mark.parametrize("count", [0, CompiledInsert.MAX_ROWS + 1])
def test_a_compiled_insert_refuses_a_row_count_it_does_not_compile(db, alice, count):
    events = [audit.new_event(Action.TEAM_CREATED, actor=alice) for _ in range(count)]
    with pytest.raises(ValueError, match=f"1 to {CompiledInsert.MAX_ROWS} rows at a time, not {count}"):
        CompiledInsert(AuditEvent).insert(*events)


def test_the_audit_chain_written_through_the_compiled_insert_verifies(bob_assignment, api, bob):
    client = api(bob)
    for name in ("bash", "zsh", "fish"):
        assert client.get(f"/api/v1/me/configs/{bob_assignment.pk}/{name}").status_code == 200
    check = audit.verify_chain()
    assert check.broken is None
    assert AuditEvent.objects.filter(action=Action.CONFIG_DOWNLOADED).count() == 3


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_an_id_no_integer_column_holds_is_no_row_not_an_error(bob, bob_assignment, api, value):
    assert not fits_bigint(value)
    assert my_assignment(bob, value) is None
    response = api(bob).get(f"/api/v1/me/configs/{value}/bash")
    assert response.status_code == 404
    assert response.json()["detail"]  # a sentence (for a negative id, the URL matches no route at all)


def test_the_key_fetch_read_loads_only_what_a_fetch_needs(bob_assignment, bob, api):
    response = api(bob).post(
        f"/api/v1/me/configs/{bob_assignment.pk}/devices/", {"name": "laptop", "platform": "linux"}, format="json"
    )
    assert response.status_code == 201, response.content
    Device.objects.update(token_lookup_id="lookup1234")  # as an install leaves it
    device = Device.objects.get()
    from gateways.devices import device_for_fetch

    with CaptureQueriesContext(connection) as queries:
        got = device_for_fetch(device.token_lookup_id)
        assert (got.pk, got.key.pk, got.user.pk) == (device.pk, bob_assignment.key_id, bob.pk)
    assert len(queries) == 1
    assert "secret_ciphertext" not in got.get_deferred_fields()
    assert {"created_at", "platform"} <= got.get_deferred_fields()
    assert device_for_fetch("nosuchid") is None


# --- CompiledUpdate: compare and set, for the "last seen" stamps -------------------------------------

STAMP = CompiledUpdate(
    Assignment,
    fields=("last_download_at", "last_download_format"),
    expect="last_download_at",
    increments=("download_count",),
)


def test_a_compiled_update_writes_a_row_that_still_holds_what_was_read_and_only_then(bob_assignment):
    read = Assignment.objects.get(pk=bob_assignment.pk)
    first, second = timezone.now(), timezone.now() + timedelta(seconds=1)
    with CaptureQueriesContext(connection) as queries:
        # Both requests read the row before either wrote: the first writes, the second finds it changed.
        assert STAMP.update(read.pk, read.last_download_at, {"last_download_at": first, "last_download_format": "zsh"})
        assert not STAMP.update(
            read.pk, read.last_download_at, {"last_download_at": second, "last_download_format": "fish"}
        )
    assert len(queries) == 2 and all(q["sql"].startswith("UPDATE") for q in queries.captured_queries)
    stored = Assignment.objects.get(pk=bob_assignment.pk)
    assert (stored.last_download_at, stored.last_download_format, stored.download_count) == (first, "zsh", 1)
    # Compared with the value it holds now, the row is written again, and its count raised once more.
    assert STAMP.update(read.pk, first, {"last_download_at": second, "last_download_format": "fish"})
    stored.refresh_from_db()
    assert (stored.last_download_at, stored.last_download_format, stored.download_count) == (second, "fish", 2)


def test_a_compiled_update_writes_and_compares_none_as_null(bob_assignment):
    Assignment.objects.filter(pk=bob_assignment.pk).update(last_download_at=timezone.now(), last_download_format="zsh")
    stamp = Assignment.objects.get(pk=bob_assignment.pk).last_download_at
    assert not STAMP.update(bob_assignment.pk, None, {"last_download_at": None, "last_download_format": "bash"})
    assert STAMP.update(bob_assignment.pk, stamp, {"last_download_at": None, "last_download_format": "bash"})
    stored = Assignment.objects.get(pk=bob_assignment.pk)
    assert (stored.last_download_at, stored.last_download_format) == (None, "bash")
    later = timezone.now()
    assert STAMP.update(bob_assignment.pk, None, {"last_download_at": later, "last_download_format": "fish"})
    assert Assignment.objects.get(pk=bob_assignment.pk).last_download_at == later


def test_a_compiled_update_of_a_missing_row_writes_nothing(bob_assignment):
    values = {"last_download_at": timezone.now(), "last_download_format": "zsh"}
    assert not STAMP.update(bob_assignment.pk + 1000, None, values)


def test_a_compiled_update_names_the_fields_it_takes(bob_assignment):
    with pytest.raises(TypeError, match="give exactly last_download_at, last_download_format"):
        STAMP.update(bob_assignment.pk, None, {"last_download_at": timezone.now()})


def test_a_compiled_update_takes_its_values_in_any_order(bob_assignment):
    stamp = CompiledUpdate(Assignment, fields=("last_download_at", "last_download_format"), expect="last_download_at")
    now = timezone.now()
    assert stamp.update(bob_assignment.pk, None, {"last_download_format": "fish", "last_download_at": now})
    stored = Assignment.objects.get(pk=bob_assignment.pk)
    assert (stored.last_download_at, stored.last_download_format) == (now, "fish")


def test_a_compiled_statement_takes_percent_signs_and_question_marks_as_plain_values(bob_assignment):
    """On SQLite the statements name their parameters (%(p0)s): a value is still only a value."""
    read = CompiledRead(Assignment, where=("last_download_format",))
    odd = "%s %(p0)s ? :p0 %%"
    assert read.get(odd) is None
    Assignment.objects.filter(pk=bob_assignment.pk).update(last_download_format=odd)
    assert read.get(odd).pk == bob_assignment.pk
    assert STAMP.update(bob_assignment.pk, None, {"last_download_at": timezone.now(), "last_download_format": odd})
    assert Assignment.objects.get(pk=bob_assignment.pk).last_download_format == odd
