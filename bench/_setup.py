"""Shared start-up for the benchmarks: Django on a scratch database, never the real one."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def django_on(database: Path | None = None) -> Path:
    """Configure Django on a SQLite file (default: a new temporary one) and migrate it."""
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
