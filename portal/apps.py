from __future__ import annotations

import os
import sys

from django.apps import AppConfig
from django.db.models.signals import post_migrate

# Rows ANALYZE reads per index: enough for the planner's estimates, quick on a table of millions.
SQLITE_ANALYSIS_LIMIT = 1000


def refresh_sqlite_statistics(sender, using: str, **kwargs) -> None:
    """After each migrate (every container start), refresh SQLite's table statistics.

    Without them SQLite's planner guesses every table's size, and a list sorted by a joined column
    (connections by team, say) reads every row instead of walking an index. PostgreSQL keeps its
    statistics itself (autovacuum).
    """
    from django.db import connections

    connection = connections[using]
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA analysis_limit = {SQLITE_ANALYSIS_LIMIT}")
            cursor.execute("ANALYZE")


# What manage.py runs before the keyrings exist: the command that makes their keys, and help, which only prints.
RUNS_WITHOUT_KEYRINGS = {"generate_encryption_key", "help", "version", "--help", "-h", "--version"}


def runs_without_keyrings(argv: list[str]) -> bool:
    """Whether this process is manage.py (or django-admin) making a key or printing help.

    Every keyring error tells the operator to run `generate_encryption_key`, so that command must run where
    the error appears: with DEBUG off and no keyring. Anything else (another command, gunicorn) checks them.
    """
    if os.path.basename(argv[0]) not in {"manage.py", "django-admin"}:
        return False
    if len(argv) < 2:
        return True  # a bare `manage.py` lists the commands
    options = argv[2 : argv.index("--")] if "--" in argv else argv[2:]  # after "--", "-h" is a value
    return argv[1] in RUNS_WITHOUT_KEYRINGS or "--help" in options or "-h" in options


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        # signals connects the sign-in audit hooks; mail makes every body 7-bit data (portal.mail.SevenBitUTF8).
        from portal import audit_chain, crypto, mail, ordering, redaction, signals  # noqa: F401

        # Lists of names sort as people read them: SQLite needs the collation on every connection it opens.
        connection_created.connect(ordering.add_sqlite_collation, dispatch_uid="portal.reading_order")

        # Log records made while a key is in reach carry stars in its place, whatever handler reads them.
        redaction.install_log_redaction()

        # Fail at start-up, with a sentence, rather than at the first key a user stores.
        if not runs_without_keyrings(sys.argv):
            crypto.get_keyring()
            audit_chain.get_keyring()
        post_migrate.connect(refresh_sqlite_statistics, sender=self)
