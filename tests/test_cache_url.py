"""CACHE_URL and DATABASE_URL: one setting names each shared service (config/settings.py)."""

from __future__ import annotations

import os

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from config.settings import cache_from_url, database_from_url
from tests.conftest import ROOT, run_manage


@pytest.mark.parametrize(
    "url, backend, location",
    [
        ("locmem://", "locmem.LocMemCache", "portal"),
        ("db://portal_cache", "db.DatabaseCache", "portal_cache"),
        ("redis://cache.internal:6379/1", "redis.RedisCache", "redis://cache.internal:6379/1"),
        ("rediss://:pw@cache.internal:6380/0", "redis.RedisCache", "rediss://:pw@cache.internal:6380/0"),
        ("memcached://m1:11211,m2:11211", "memcached.PyMemcacheCache", ["m1:11211", "m2:11211"]),
    ],
)
def test_each_kind_of_cache_url_names_djangos_backend(url, backend, location):
    assert cache_from_url(url) == {"BACKEND": f"django.core.cache.backends.{backend}", "LOCATION": location}


@pytest.mark.parametrize("url", ["mongodb://x", "redis://", "memcached://", "cache"])
def test_a_cache_url_that_names_no_cache_is_refused_with_a_sentence(url):
    with pytest.raises(ImproperlyConfigured, match="CACHE_URL must look like"):
        cache_from_url(url)


def test_start_up_stops_on_a_bad_cache_url():
    env = {"PATH": os.environ["PATH"], "CACHE_URL": "mongodb://x", "PORTAL_DATA_DIR": str(ROOT / "data")}
    result = run_manage("check", env=env)
    assert result.returncode != 0 and "CACHE_URL must look like" in result.stderr


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_database_cache_works_across_connections(settings):
    """db:// needs no other server: every portal server reads what another wrote."""
    settings.CACHES = {"default": cache_from_url("db://portal_cache_test")}
    call_command("createcachetable")
    caches["default"].set("shared", "from server one", 60)
    caches["default"].close()
    assert caches["default"].get("shared") == "from server one"


def test_what_several_servers_share_is_kept_in_the_database():
    """Sessions (and the sudo mode in them) and sign-in lock-outs: any server answers the next request."""
    from axes.conf import settings as axes_settings
    from django.conf import settings

    assert settings.SESSION_ENGINE == "django.contrib.sessions.backends.db"
    assert axes_settings.AXES_HANDLER == "axes.handlers.database.AxesDatabaseHandler"


@pytest.mark.parametrize(
    "url, says",
    [
        ("mysql://portal:hunter2@db/portal", "its scheme is 'mysql'"),
        ("portal:hunter2@db:5432/portal", "it has no scheme such as postgres://"),
    ],
)
def test_a_database_url_the_portal_cannot_use_is_refused_without_quoting_its_password(url, says):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL must look like") as refused:
        database_from_url(url)
    assert says in str(refused.value) and "hunter2" not in str(refused.value)


def test_an_empty_database_url_means_the_default_sqlite_file(tmp_path):
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": "", "PORTAL_DATA_DIR": str(tmp_path)}
    code = "from django.conf import settings; print(settings.DATABASES['default']['NAME'])"
    result = run_manage("shell", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == str(tmp_path / "portal.sqlite3")


@pytest.mark.parametrize(
    ("url", "package"), [("redis://cache.internal:6379/0", "redis"), ("memcached://m1:11211", "pymemcache")]
)
def test_a_cache_whose_client_is_not_installed_stops_start_up_with_a_sentence(url, package):
    """Not at the first use of the cache (a Redis URL passed the check, a memcached one crashed it)."""
    import importlib.util

    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here, so there is nothing missing to report")
    env = {"PATH": os.environ["PATH"], "CACHE_URL": url, "PORTAL_DATA_DIR": str(ROOT / "data")}
    result = run_manage("check", env=env)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"whose client is not installed: pip install {package}" in result.stderr
