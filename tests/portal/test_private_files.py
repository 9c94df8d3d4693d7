"""The SQLite database, its folder and the development key file are readable by the portal's user only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from portal.private_files import write_private_file
from tests.conftest import ROOT, TEST_AUDIT_KEYRING, TEST_KEYRING


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run_manage_with_umask(*args: str, env: dict) -> subprocess.CompletedProcess:
    """Like a service started by hand: the usual umask 022, which SQLite alone would turn into 0644."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0o022),
    )


def test_a_first_start_makes_the_data_folder_database_and_key_file_private(tmp_path):
    data = tmp_path / "new" / "data"
    result = run_manage_with_umask("migrate", "--noinput", env={"DEBUG": "True", "PORTAL_DATA_DIR": str(data)})
    assert result.returncode == 0, result.stderr
    assert mode(data) == 0o700
    assert mode(data / "portal.sqlite3") == 0o600
    assert mode(data / "encryption.key") == 0o600
    assert (data / "portal.sqlite3").stat().st_size > 0  # SQLite wrote into the file made for it


def test_an_existing_readable_database_is_tightened_at_start(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    database = data / "portal.sqlite3"
    database.touch(mode=0o644)
    database.chmod(0o644)
    env = {
        "DEBUG": "False",
        "SECRET_KEY": "x" * 50,
        "ALLOWED_HOSTS": "portal.example.com",
        "PORTAL_DATA_DIR": str(data),
        "PORTAL_ENCRYPTION_KEYS": TEST_KEYRING,
        "PORTAL_AUDIT_KEYS": TEST_AUDIT_KEYRING,
    }
    result = run_manage_with_umask("check", env=env)
    assert result.returncode == 0, result.stderr
    assert mode(database) == 0o600


def test_a_private_file_is_never_readable_by_others_even_under_umask_zero(tmp_path):
    previous = os.umask(0)
    try:
        write_private_file(tmp_path / "key", "secret\n")
    finally:
        os.umask(previous)
    assert mode(tmp_path / "key") == 0o600
