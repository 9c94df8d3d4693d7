"""Django's PostgreSQL backend, whose check of a kept connection costs no round trip while all is well.

With `CONN_HEALTH_CHECKS`, Django checks a connection kept from an earlier request before the
request's first query, by sending `SELECT 1`. A key fetch makes one query of its own, so that
check was half its round trips to the server (`bench.compare`: 1.15 x the key fetches per second
without it). An idle connection has nothing to read: a server that ends the session (a restart,
`pg_terminate_backend`, `idle_session_timeout`) sends its FATAL error and closes the socket, and
either makes the socket readable. So the check polls the socket first, without waiting, and runs
`SELECT 1` only when something has arrived. What it cannot see, a link that died silently, would
make `SELECT 1` hang until the TCP time-out as well.

Each session also turns PostgreSQL's JIT compiler off. The portal's queries are short, but a list with
subqueries per row can be estimated above `jit_above_cost`: the dashboard's rollout query ran in 11 ms
and was compiled for 660 ms first, on every request (bench.pages, 1,367 ms for the staff dashboard).

settings.DATABASES selects it (ENGINE "config.postgresql") for every postgres:// DATABASE_URL.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def _configure_connection(self, connection) -> bool:
        """Django's set-up of a new session (time zone, role), and no JIT; True: the caller commits it."""
        super()._configure_connection(connection)  # type: ignore[misc]  # Django 5.2 has it; the stubs do not
        with connection.cursor() as cursor:
            cursor.execute("SET jit = off")
        return True

    def is_usable(self) -> bool:
        if self.connection is None or self.connection.closed:
            return False
        if not hasattr(select, "poll"):  # Windows: Django's check as it is
            return super().is_usable()
        poller = select.poll()
        poller.register(self.connection.fileno(), select.POLLIN)
        if not poller.poll(0):  # nothing sent since the last query's answer: the session is as it was
            return True
        return super().is_usable()  # a FATAL error and the end of the session, or a notice: ask the server
