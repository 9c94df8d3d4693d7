from __future__ import annotations

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


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from portal import audit_chain, crypto, redaction, signals  # noqa: F401  (connects the sign-in audit hooks)

        # Log records made while a key is in reach carry stars in its place, whatever handler reads them.
        redaction.install_log_redaction()

        # Fail at start-up, with a sentence, rather than at the first key a user stores.
        crypto.get_keyring()
        audit_chain.get_keyring()
        post_migrate.connect(refresh_sqlite_statistics, sender=self)
