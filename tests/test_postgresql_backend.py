"""config.postgresql: a kept connection is checked before a request's first query, with no round trip while all is well.

These need a PostgreSQL server (CI's second pass runs the suite on one); on SQLite there is no
connection to lose and Django never checks one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import DEFAULT_DB_ALIAS, OperationalError, connection, connections

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="a PostgreSQL connection's check; CI runs this on PostgreSQL"
    ),
    pytest.mark.django_db,
]


@contextmanager
def kept_connection(*, health_checks: bool = True) -> Iterator:
    """A second connection to the test database, kept between requests as DATABASE_CONN_MAX_AGE keeps one."""
    kept = type(connections[DEFAULT_DB_ALIAS])(
        {**connection.settings_dict, "CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": health_checks}, alias="kept"
    )
    try:
        yield kept
    finally:
        kept.close()


def backend_pid(kept) -> int:
    with kept.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def next_request(kept) -> None:
    """What Django does to a kept connection when a request starts (request_started), before its first query."""
    kept.close_if_unusable_or_obsolete()
    kept.close_if_health_check_failed()


def last_statement(pid: int) -> str:
    """The last statement the server ran for that session, read from another one."""
    with kept_connection() as observer, observer.cursor() as cursor:
        cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0]


def end_session(pid: int) -> None:
    """pg_terminate_backend, as a server restart or idle_session_timeout ends a session; returns once it is gone."""
    # Another session in autocommit: in a transaction, pg_stat_activity would stay as first read.
    with kept_connection() as observer, observer.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert cursor.fetchone()[0] is True
        deadline = time.monotonic() + 10
        while True:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if cursor.fetchone()[0] == 0:
                return
            assert time.monotonic() < deadline, f"session {pid} still there 10 s after pg_terminate_backend"
            time.sleep(0.01)


def test_settings_select_the_backend_whose_check_polls_the_socket_first():
    assert connection.settings_dict["ENGINE"] == "config.postgresql"
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True


def test_a_healthy_kept_connection_is_checked_without_sending_the_server_anything():
    with kept_connection() as kept:
        pid = backend_pid(kept)
        next_request(kept)
        assert kept.connection is not None and backend_pid(kept) == pid  # kept, not reopened
        # Django's own check would have sent SELECT 1; the server saw nothing after our last statement.
        next_request(kept)
        assert last_statement(pid) == "SELECT pg_backend_pid()"


def test_a_connection_the_server_ended_is_replaced_before_the_next_requests_first_query():
    with kept_connection(health_checks=False) as unchecked, kept_connection() as kept:
        # Without a check, the first query after the server ended the session fails: what the check is for.
        unchecked_pid = backend_pid(unchecked)
        end_session(unchecked_pid)
        next_request(unchecked)
        with pytest.raises(OperationalError):
            backend_pid(unchecked)

        pid = backend_pid(kept)
        end_session(pid)
        next_request(kept)
        new_pid = backend_pid(kept)  # a new session, and the query goes through
        assert new_pid != pid


def test_a_new_session_runs_without_jit_and_in_autocommit_as_django_left_it():
    """PostgreSQL compiled the dashboard's rollout query for 660 ms to run it in 11 ms (its estimate passed
    jit_above_cost): the portal's sessions turn JIT off, and the session is otherwise as Django sets it up."""
    with kept_connection() as kept:
        with kept.cursor() as cursor:
            cursor.execute("SHOW jit")
            assert cursor.fetchone()[0] == "off"
            cursor.execute("SHOW timezone")
            assert cursor.fetchone()[0] == "UTC"
        assert kept.get_autocommit() is True
        assert kept.connection.info.transaction_status.name == "IDLE"  # nothing left open by the set-up
