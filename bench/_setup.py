"""Shared start-up for the benchmarks: Django on a scratch database, never the real one."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES = "postgres://portal:portal@127.0.0.1:5432/portal"


def django_on(database: Path | None = None) -> Path:
    """Configure Django on a SQLite file (default: a new temporary one), or on DATABASE_URL if set, and migrate it."""
    sys.path.insert(0, str(ROOT))
    database = database or Path(tempfile.mkdtemp()) / "bench.sqlite3"
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{database}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("PORTAL_ENCRYPTION_KEYS", "YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtMTI=")
    os.environ.setdefault("PORTAL_DATA_DIR", str(database.parent))
    os.environ.setdefault("PROBE_ALLOW_PRIVATE_IPS", "True")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return database


@contextmanager
def scratch_database(kind: str, postgres_url: str = DEFAULT_POSTGRES):
    """Environment for a fresh database, "sqlite" or "postgresql" (created next to postgres_url), dropped after."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield {"PORTAL_DATA_DIR": folder, "DATABASE_URL": f"sqlite:///{folder}/portal.sqlite3"}
        return
    import psycopg

    name = f"{urlsplit(postgres_url).path.lstrip('/') or 'portal'}_bench_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory() as folder:
            yield {
                "DATABASE_URL": urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}")),
                "PORTAL_DATA_DIR": folder,
            }
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_url_default() -> str:
    """Where to create scratch PostgreSQL databases: BENCH_POSTGRES_URL, a PostgreSQL DATABASE_URL, or the local one."""
    url = os.getenv("DATABASE_URL", "")
    return os.getenv("BENCH_POSTGRES_URL") or (
        url if url.startswith(("postgres://", "postgresql://")) else DEFAULT_POSTGRES
    )
