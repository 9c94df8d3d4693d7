"""What a person or an operator is told while the database does not answer: where it is, never its password.

Shared by the error handlers (config.views), a live device's key fetch (gateways.api.views) and manage.py.
"""

from __future__ import annotations

from django.conf import settings

# How long a client should wait before asking again (Retry-After) while the database is down.
RETRY_AFTER_SECONDS = 60


def database_place() -> str:
    """Where the database is, for a log line or an operator's message: host:port or the SQLite file."""
    database = settings.DATABASES["default"]
    if not database.get("HOST"):
        return str(database.get("NAME", ""))
    return f"{database['HOST']}:{database.get('PORT') or 5432}"


def database_error_line(exc: BaseException) -> str:
    """The driver's first line about the failure, with the database's password removed should it be quoted."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    password = settings.DATABASES["default"].get("PASSWORD")
    return line.replace(password, "[password hidden]") if password else line


def command_sentence(exc: BaseException) -> str:
    """One sentence for a management command stopped by its database: where it is and what to check."""
    if not settings.DATABASES["default"].get("HOST"):
        return (
            f"Database error: the SQLite database {database_place()} cannot be used ({database_error_line(exc)}). "
            "Check that PORTAL_DATA_DIR (or DATABASE_URL) names a folder this user can write, and that "
            "`manage.py migrate` has run."
        )
    return (
        f"Database error: the database at {database_place()} cannot be used ({database_error_line(exc)}). Check "
        "that PostgreSQL is running and reachable there, and that DATABASE_URL names the right host, port, user, "
        "password and database."
    )
