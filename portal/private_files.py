"""Files only the portal's own user may read: the SQLite database and the development key file.

SQLite creates its database with the process umask (usually 0644, readable by every local
user), and a file written then chmod-ed is readable for a moment. Here they are created 0600,
in a 0700 folder, from the first byte. Imported by the settings, so it uses no Django app.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def make_private_dir(path: Path) -> None:
    """Create the folder as 0700 (an existing folder keeps its mode: it may be shared on purpose)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def write_private_file(path: Path, text: str) -> None:
    """Create a new file readable by its owner only, never for a moment by anyone else."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def tighten(path: Path) -> None:
    """Take group and other permissions off a file the portal owns."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return
    if status.st_mode & 0o077 and status.st_uid == os.getuid():
        path.chmod(0o600)


def private_sqlite_file(name: str) -> None:
    """Create the SQLite database 0600 before SQLite does, and tighten an existing one and its journals.

    SQLite gives the -wal, -shm and -journal files the database file's own permissions.
    """
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    try:
        make_private_dir(path.parent)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        for file in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS)):
            tighten(file)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"The SQLite database {path} cannot be created ({exc.strerror}). "
            "Set PORTAL_DATA_DIR to a writable folder, or DATABASE_URL to another database."
        ) from None
