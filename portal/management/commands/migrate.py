"""Django's migrate, one run at a time on a PostgreSQL database.

The image runs `migrate` at every start, and several servers share one PostgreSQL: replicas started
together each applied the same migration, and all but one stopped with a duplicate key in
django_migrations or a constraint that "already exists". Here each run first takes a PostgreSQL
advisory lock, so the second waits for the first, then finds nothing left to apply. SQLite has one
server by design; there the command is Django's own.
"""

from __future__ import annotations

from django.core.management.commands import migrate
from django.db import connections

# The advisory lock's key: any number, the same in every portal process. Advisory locks are per database,
# so portals on other databases of the same server do not wait for each other.
MIGRATE_LOCK = int.from_bytes(b"portal")


class Command(migrate.Command):
    help = f"{migrate.Command.help} On PostgreSQL one run at a time: another waits for it, then applies what is left."

    def handle(self, *args, **options):
        connection = connections[options["database"]]
        if connection.vendor != "postgresql":
            return super().handle(*args, **options)
        # A session of its own holds the lock: migrate's connection may be closed or rolled back on the way.
        holder = connection.copy()
        try:
            with holder.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATE_LOCK])
                if not cursor.fetchone()[0]:
                    if options["verbosity"] >= 1:
                        self.stdout.write("Another server is migrating this database; waiting for it to finish.")
                    cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATE_LOCK])
            return super().handle(*args, **options)
        finally:
            holder.close()  # the session's end lets the lock go, whatever happened meanwhile
