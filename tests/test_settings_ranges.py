"""Start-up refuses a number setting out of its range, and a DATABASE_URL it cannot read, with a sentence.

A lifetime of 0 days makes every invitation expired at birth; a "never" of 999999 days starts cleanly and
then the dashboard answers 500 (a date past year 9999). Both are refused before anything runs, naming the
variable and what it may be; a URL's sentence never quotes the URL, which holds the password.
"""

import re

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.settings import database_from_url
from tests.conftest import ROOT, TEST_AUDIT_KEYRING, TEST_KEYRING, production_env, run_manage


def start_up(tmp_path, **variables: str):
    env = production_env(
        tmp_path / "data", PORTAL_ENCRYPTION_KEYS=TEST_KEYRING, PORTAL_AUDIT_KEYS=TEST_AUDIT_KEYRING, **variables
    )
    return run_manage("check", env=env)


@pytest.mark.parametrize(
    ("name", "value", "sentence"),
    [
        ("INVITATION_DAYS", "0", "INVITATION_DAYS must be from 1 to 3650, not 0."),
        ("INVITATION_DAYS", "-7", "INVITATION_DAYS must be from 1 to 3650, not -7."),
        ("PASSWORD_RESET_HOURS", "0", "PASSWORD_RESET_HOURS must be from 1 to 8760, not 0."),
        ("CONNECTION_STALE_DAYS", "999999", "CONNECTION_STALE_DAYS must be from 1 to 3650, not 999999."),
        ("EXPIRY_WARNING_DAYS", "-1", "EXPIRY_WARNING_DAYS must be from 1 to 3650, not -1."),
        ("EXPIRY_WARNING_DAYS", "999999", "EXPIRY_WARNING_DAYS must be from 1 to 3650, not 999999."),
        ("ACCESS_TOKEN_DEFAULT_DAYS", "0", "ACCESS_TOKEN_DEFAULT_DAYS must be from 1 to 3650, not 0."),
        ("SUDO_MODE_SECONDS", "0", "SUDO_MODE_SECONDS must be from 60 to 86400, not 0."),
        ("EMAIL_PORT", "70000", "EMAIL_PORT must be from 1 to 65535, not 70000."),
        ("AXES_FAILURE_LIMIT", "0", "AXES_FAILURE_LIMIT must be 1 or more, not 0."),
        ("NOTIFY_CONCURRENCY", "0", "NOTIFY_CONCURRENCY must be 1 or more, not 0."),
        ("PROBE_PROCESSES", "-1", "PROBE_PROCESSES must be 0 or more, not -1."),
        ("PROBE_MAX_BYTES", "0", "PROBE_MAX_BYTES must be 1024 or more, not 0."),
        ("DATA_UPLOAD_MAX_MEMORY_SIZE", "-5", "DATA_UPLOAD_MAX_MEMORY_SIZE must be 1024 or more, not -5."),
        ("SECURE_HSTS_SECONDS", "-1", "SECURE_HSTS_SECONDS must be 0 or more, not -1."),
        ("DATABASE_CONN_MAX_AGE", "-1", "DATABASE_CONN_MAX_AGE must be 0 or more, not -1."),
        ("TRUSTED_PROXY_COUNT", "0", "TRUSTED_PROXY_COUNT must be 1 or more, not 0."),
        (
            "OIDC_DEADLINE_SECONDS",
            "121",
            "OIDC_DEADLINE_SECONDS must be more than 0 and at most 120 seconds, not 121.",
        ),
        # 0 or less turned the sign-in lock-out off without a word; 1e12 made every failed sign-in a 500.
        ("AXES_COOLOFF_HOURS", "0", "AXES_COOLOFF_HOURS must be more than 0 and at most 8760 hours, not 0."),
        ("AXES_COOLOFF_HOURS", "-1", "AXES_COOLOFF_HOURS must be more than 0 and at most 8760 hours, not -1."),
        ("AXES_COOLOFF_HOURS", "1e12", "AXES_COOLOFF_HOURS must be more than 0 and at most 8760 hours, not 1e+12."),
    ],
)
def test_a_number_out_of_its_range_stops_start_up_with_a_sentence(tmp_path, name, value, sentence):
    done = start_up(tmp_path, **{name: value})
    assert done.returncode != 0, f"{name}={value} was taken"
    assert "Traceback" not in done.stderr, done.stderr[-1200:]
    assert sentence in done.stderr, done.stderr[-400:]


def test_the_ends_of_each_range_are_taken(tmp_path):
    done = start_up(
        tmp_path,
        INVITATION_DAYS="3650",
        PASSWORD_RESET_HOURS="1",
        CONNECTION_STALE_DAYS="3650",
        EXPIRY_WARNING_DAYS="1",
        PROBE_PROCESSES="0",
        SECURE_HSTS_SECONDS="0",
        DATABASE_CONN_MAX_AGE="0",
        AXES_COOLOFF_HOURS="8760",
        ALLOWED_HOSTS="portal.example.com,.example.org,[::1],10.0.0.5",
    )
    assert done.returncode == 0, done.stderr[-1200:]


@pytest.mark.parametrize(
    "value", ["https://portal.example.com", "portal.example.com:443", "portal.example.com/", "::1"]
)
def test_allowed_hosts_no_request_could_match_stop_start_up(tmp_path, value):
    """Written like PORTAL_URL or CSRF_TRUSTED_ORIGINS beside it, a host matches no request: every page a 400."""
    done = start_up(tmp_path, ALLOWED_HOSTS=f"portal.example.com,{value}")
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-1200:]
    assert f"ALLOWED_HOSTS holds {value!r}, which no request's host can match" in done.stderr, done.stderr[-400:]


@pytest.mark.parametrize("value", ["https://tools.example.com/llm-portal", "https://portal.example.com/?x=1"])
def test_a_portal_url_with_a_path_stops_start_up(tmp_path, value):
    """Served under a prefix, install commands and invitation links carried it twice, pages lost their styles,
    API errors turned HTML and the session cookie went to every app on the host: the portal wants its own host."""
    done = start_up(tmp_path, PORTAL_URL=value)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-1200:]
    assert "PORTAL_URL must be the address of the portal's own host" in done.stderr, done.stderr[-400:]
    assert value in done.stderr and "cannot be served under a path prefix" in done.stderr
    assert start_up(tmp_path, PORTAL_URL="https://portal.example.com:8443/").returncode == 0


def test_an_email_backend_that_names_no_module_stops_start_up(tmp_path):
    """Django imports it at the first mail only: every invitation and reset would fail, one log line each."""
    done = start_up(tmp_path, EMAIL_BACKEND="django.core.mail.backends.smpt.EmailBackend")
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-1200:]
    assert "EMAIL_BACKEND is 'django.core.mail.backends.smpt.EmailBackend', which names no module" in done.stderr
    assert start_up(tmp_path, EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend").returncode == 0


def test_every_variable_the_settings_read_is_in_the_readme_configuration():
    """An operator reads the Configuration section for what can be set; settings.py reads nothing else."""
    readme = (ROOT / "README.md").read_text()
    configuration = readme[readme.index("## Configuration") : readme.index("### The vault")]
    code = (ROOT / "config" / "settings.py").read_text() + (ROOT / "config" / "gunicorn.conf.py").read_text()
    readers = r"(?:getenv|envstr|envbool|envint|envfloat|envsecret|_text|_count|_on|_address)"
    read = set(re.findall(readers + r"\(\s*\"([A-Z][A-Z0-9_]+)\"", code))
    assert len(read) > 40, sorted(read)  # the pattern still finds what the settings read
    assert sorted(name for name in read if f"`{name}`" not in configuration) == []


def test_the_longest_stale_and_warning_windows_keep_the_pages_working(settings, alice, bob_assignment, api, client):
    """The largest value start-up takes still makes dates the pages can show (999999 days made them 500)."""
    settings.CONNECTION_STALE_DAYS = 3650
    settings.EXPIRY_WARNING_DAYS = 3650
    client.force_login(alice)
    assert client.get("/dashboard/").status_code == 200
    assert client.get("/connections/").status_code == 200
    assert api(alice).get("/api/v1/connections/").status_code == 200


MALFORMED_URLS = [
    "postgres://portal:pa#ss@db.example.com/portal",  # a '#' in the password, not percent-encoded
    "postgres://portal:hunter2@db.example.com:54x2/portal",  # a port that is not a number
    "postgres://portal:hunter2@db.example.com:99999/portal",  # a port out of range
]


@pytest.mark.parametrize("url", MALFORMED_URLS)
def test_a_malformed_database_url_is_refused_with_a_sentence_not_its_password(url):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL") as refused:
        database_from_url(url)
    said = str(refused.value)
    assert "hunter2" not in said and "pa#ss" not in said and "portal:" not in said, said
    assert "percent-encode" in said and "port" in said, said


@pytest.mark.parametrize("url", MALFORMED_URLS)
def test_start_up_with_a_malformed_database_url_says_which_variable(tmp_path, url):
    done = start_up(tmp_path, DATABASE_URL=url)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-1200:]
    assert "DATABASE_URL" in done.stderr and "hunter2" not in done.stderr and "pa#ss" not in done.stderr


def test_a_malformed_database_url_file_is_named_as_the_file(tmp_path):
    secret = tmp_path / "database_url"
    secret.write_text("postgres://portal:pa#ss@db.example.com/portal\n")
    done = start_up(tmp_path, DATABASE_URL_FILE=str(secret))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-1200:]
    assert "DATABASE_URL_FILE" in done.stderr and "pa#ss" not in done.stderr, done.stderr[-400:]


def test_a_percent_encoded_password_is_read_back(tmp_path):
    config = database_from_url("postgres://portal:pa%23ss@db.example.com:5433/portal")
    assert (config["PASSWORD"], config["PORT"], config["HOST"]) == ("pa#ss", 5433, "db.example.com")
