"""Settings for the portal, read from the environment.

Defaults suit development (`make run`); production sets `DEBUG=False` and must then
provide `SECRET_KEY`, `ALLOWED_HOSTS`, `PORTAL_ENCRYPTION_KEYS` and `PORTAL_AUDIT_KEYS`, or start-up stops
with a sentence that says which one is missing.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import re
from email import errors as email_errors
from email import policy as email_policy
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import validate_email

from portal.private_files import private_sqlite_file

BASE_DIR = Path(__file__).resolve().parent.parent


def envstr(name: str, default: str) -> str:
    """NAME, or the default when it is unset or blank (a blank line in an env file), as for every setting."""
    return os.getenv(name, "").strip() or default


def envbool(name: str, default: str) -> bool:
    value = envstr(name, default).lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}.")


def envint(name: str, default: int, *, low: int | None = None, high: int | None = None) -> int:
    """NAME as a whole number from `low` to `high` (either may be left open), checked at start-up: a lifetime
    of 0, or a count of days past the calendar, would start cleanly and fail later, page by page."""
    value = os.getenv(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from None
    if (low is not None and number < low) or (high is not None and number > high):
        if low is not None and high is not None:
            allowed = f"from {low} to {high}"
        else:
            allowed = f"{low} or more" if low is not None else f"{high} or less"
        raise ImproperlyConfigured(f"{name} must be {allowed}, not {number}.")
    return number


def envfloat(name: str, default: float, *, most_seconds: float | None = None, most_hours: float | None = None) -> float:
    """NAME as a number; with `most_seconds` (or `most_hours`), a length of time more than 0 and at most that,
    checked at start-up: 0 or less would fail every wait as a time-out, blamed on whoever was waited for, or
    make a window (a lock-out's) that never holds anything."""
    value = os.getenv(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):  # "nan" and "inf" parse, but are no length of time
        raise ImproperlyConfigured(f"{name} must be a number, like 10 or 2.5, not {value!r}.")
    for most, unit in ((most_seconds, "seconds"), (most_hours, "hours")):
        if most is not None and not 0 < number <= most:
            raise ImproperlyConfigured(f"{name} must be more than 0 and at most {most:g} {unit}, not {number:g}.")
    return number


def envsecret(name: str, default: str = "") -> str:
    """Read NAME, or the contents of the file named by NAME_FILE (container secrets)."""
    path = os.getenv(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE points at {path}, which cannot be read: {exc}.") from None
        except UnicodeDecodeError:  # raw bytes (`openssl rand 32 > file`); the error would quote one of them
            raise ImproperlyConfigured(
                f"{name}_FILE points at {path}, which is not text: write the secret in it as text "
                "(for a keyring, what `python manage.py generate_encryption_key` prints)."
            ) from None
    value = os.getenv(name, "")
    return value if value.strip() else default  # a secret's own spaces are kept


# Unset: development, as `make run` needs. Blank (a line left empty in a production env file): off, the one
# setting whose default is not the safe reading of a blank, so a blank line never turns on the debug pages.
DEBUG = envbool("DEBUG", "True" if os.getenv("DEBUG") is None else "False")
DATA_DIR = Path(envstr("PORTAL_DATA_DIR", str(BASE_DIR / "data")))

SECRET_KEY = envsecret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is not set. Set it to a long random string when DEBUG is off.")
    SECRET_KEY = "development-only-secret-key-do-not-use-in-production"

ALLOWED_HOSTS = [h.strip() for h in os.getenv("ALLOWED_HOSTS", "").split(",") if h.strip()]
if not ALLOWED_HOSTS:
    if not DEBUG:
        # Without it every page and API call is a 400 while /healthz and /readyz (which answer any
        # host) say ok: a load balancer would keep a portal nobody can use.
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS is not set. Set it to the host names the portal is reached by, comma-separated, "
            "like portal.example.com, when DEBUG is off."
        )
    ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
for _host in ALLOWED_HOSTS:
    # Django compares the Host header's name without its port, so an address written like PORTAL_URL or
    # CSRF_TRUSTED_ORIGINS beside it (a scheme, a port, a path) matches no request: every page would be a 400.
    if "/" in _host or ":" in re.sub(r"^\[[^\]]*\]$", "", _host):
        raise ImproperlyConfigured(
            f"ALLOWED_HOSTS holds {_host!r}, which no request's host can match: list host names alone, without "
            "a scheme, port or path, like portal.example.com (an IPv6 address in brackets, like [::1])."
        )
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.getenv("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]
# A refused form gets the portal's page with what to do (JSON under /api/), not Django's bare 403.
CSRF_FAILURE_VIEW = "config.views.csrf_failure"

# The keyring for gateway secrets: comma-separated keys, the first encrypts, all decrypt.
# Checked at start-up by PortalConfig.ready(); see portal/crypto.py for the format.
PORTAL_ENCRYPTION_KEYS = envsecret("PORTAL_ENCRYPTION_KEYS")
# The audit chain's signing keys, in the same format and kept outside the database like the
# vault's: the first signs, all verify. See portal/audit_chain.py.
PORTAL_AUDIT_KEYS = envsecret("PORTAL_AUDIT_KEYS")

# Probes refuse private, loopback and link-local addresses unless this is on.
PROBE_ALLOW_PRIVATE_IPS = envbool("PROBE_ALLOW_PRIVATE_IPS", "False")
# Past ten minutes a probe (or a delivery, NOTIFY_TIMEOUT) holds its thread and its claim longer than a run lasts.
MAX_TIMEOUT_SECONDS = 600
PROBE_CONNECT_TIMEOUT = envfloat("PROBE_CONNECT_TIMEOUT", 5.0, most_seconds=MAX_TIMEOUT_SECONDS)
PROBE_READ_TIMEOUT = envfloat("PROBE_READ_TIMEOUT", 15.0, most_seconds=MAX_TIMEOUT_SECONDS)
PROBE_DEADLINE = envfloat("PROBE_DEADLINE", 30.0, most_seconds=MAX_TIMEOUT_SECONDS)
PROBE_MAX_BYTES = envint("PROBE_MAX_BYTES", 256 * 1024, low=1024)
# Processes sharing the fan-out of manage.py probe (gateways.probes.runner.probe_processes); 0: a thread of its own.
# One per core this process may run on, at most 4: each is a fork of the command, with memory of its
# own as it runs, and a container's CPU quota is not what the host's core count says.
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
PROBE_PROCESSES = envint("PROBE_PROCESSES", min(_CORES, 4), low=0)

# How the portal names itself in what devices print (a live key's helper, the installers):
# "This device was removed from <PORTAL_NAME> by ...".
PORTAL_NAME = os.getenv("PORTAL_NAME", "the portal").strip() or "the portal"

# A config download older than this many days shows as "stale" on the connections page. At most ten
# years, as for the day counts below: a date this far back or ahead must stay inside the calendar.
CONNECTION_STALE_DAYS = envint("CONNECTION_STALE_DAYS", 30, low=1, high=3650)
# A key expiring within this many days is on the dashboard, in a notification and on its holders' My set-up.
EXPIRY_WARNING_DAYS = envint("EXPIRY_WARNING_DAYS", 14, low=1, high=3650)
# Notifications (alerts/): the portal's address for links in messages, and each delivery's time limit.
PORTAL_URL = os.getenv("PORTAL_URL", "").strip().rstrip("/")
if PORTAL_URL and not PORTAL_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(
        f"PORTAL_URL must start with http:// or https://, like https://portal.example.com, not {PORTAL_URL!r}."
    )
# The portal is served at the root of its own host name: its pages, API errors, static files, cookies and install
# links all assume it, so a prefix (https://tools.example.com/llm-portal) would yield links that 404.
if urlsplit(PORTAL_URL).path or urlsplit(PORTAL_URL).query or urlsplit(PORTAL_URL).fragment:
    raise ImproperlyConfigured(
        f"PORTAL_URL must be the address of the portal's own host, like https://portal.example.com, without a path: "
        f"{PORTAL_URL!r} has one. The portal cannot be served under a path prefix; give it a host name of its own."
    )
NOTIFY_TIMEOUT = envfloat("NOTIFY_TIMEOUT", 10.0, most_seconds=MAX_TIMEOUT_SECONDS)
NOTIFY_CONCURRENCY = envint("NOTIFY_CONCURRENCY", 10, low=1)

INSTALLED_APPS = [
    # First: its createsuperuser (the portal's rules for names and addresses) replaces django.contrib.auth's, as the
    # first app naming a command wins. It has no templates or static files of its own to shadow others'.
    "portal",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.forms",  # its templates, for FORM_RENDERER below
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served as the portal's own static files
    "gateways",
    "alerts",
    # After portal: its axes_reset commands (audited, portal.lockouts) replace axes' own of the same names.
    "axes",
]

MIDDLEWARE = [
    "config.middleware.HealthCheckMiddleware",  # first: see its docstring
    "config.middleware.RequestBodyLimitMiddleware",  # before anything reads a body: see its docstring
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.middleware.PrivatePagesMiddleware",  # after whitenoise: static files stay cacheable
    "config.middleware.SecretsScopeMiddleware",
    "config.middleware.RejectNulCharactersMiddleware",
    "config.middleware.DeviceKeyMiddleware",  # a device's key fetch: see its docstring
    "config.middleware.TokenApiMiddleware",  # the API with an access token: see its docstring
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "config.middleware.SignedOutFormMiddleware",  # after messages: see its docstring
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
    "csp.middleware.CSPMiddleware",
    "config.middleware.MethodNotAllowedPageMiddleware",  # last: its page is rendered before CSP's header is set
]

ROOT_URLCONF = "config.urls"
# Forms render with the project's templates, so templates/django/forms/ can give errors role="alert".
FORM_RENDERER = "django.forms.renderers.TemplatesSetting"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.accounts",
            ],
        },
    },
]


def database_from_url(url: str, name: str = "DATABASE_URL") -> dj_database_url.DBConfig:
    """Django's DATABASES entry for DATABASE_URL: SQLite or PostgreSQL, the two the portal is tested on.

    `name` says where the URL came from in a refusal (DATABASE_URL or DATABASE_URL_FILE). Only the scheme is
    ever quoted back: the rest of a URL may hold a password.
    """
    scheme, separator, _ = url.partition("://")
    if scheme.lower() not in ("sqlite", "postgres", "postgresql", "pgsql") or not separator:
        found = f"its scheme is {scheme!r}" if separator else "it has no scheme such as postgres://"
        raise ImproperlyConfigured(
            f"{name} must look like sqlite:////var/lib/portal/portal.sqlite3 or "
            f"postgres://user:password@host:5432/portal; {found}."
        )
    # Connections are kept for DATABASE_CONN_MAX_AGE seconds (0: a new one per request) and checked
    # before reuse: opening a PostgreSQL connection costs more than a config download's own queries.
    max_age = envint("DATABASE_CONN_MAX_AGE", 60, low=0)
    try:
        return dj_database_url.parse(url, conn_max_age=max_age, conn_health_checks=True)
    except ValueError:  # dj_database_url.ParseError: urllib could not split it (a stray '#', '@' or '/', a bad port)
        raise ImproperlyConfigured(
            f"{name} is not a URL the portal can read: percent-encode special characters in the user name and "
            "password (# as %23, @ as %40, / as %2F, : as %3A, % as %25) and check that the port is a number "
            "from 1 to 65535."
        ) from None


# gunicorn's processes (config/gunicorn.conf.py): gunicorn parses WEB_CONCURRENCY itself before reading its
# config file, so a word or a negative number there is its own traceback; checked here too, the image's
# `manage.py migrate` (run before gunicorn) stops first with a sentence.
envint("WEB_CONCURRENCY", 2, low=1, high=1000)

# An empty DATABASE_URL (a blank line in an env file) means the default, as for every other setting.
# A secret like the others: it holds the database's password (DATABASE_URL_FILE).
DATABASES = {
    "default": database_from_url(
        envsecret("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'portal.sqlite3'}",
        "DATABASE_URL_FILE" if os.getenv("DATABASE_URL_FILE") else "DATABASE_URL",
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent writers queue instead of failing with "database is locked": WAL lets reads run beside
    # the one writer, BEGIN IMMEDIATE takes the write lock when a transaction starts (a lock upgrade
    # half-way cannot wait, it fails), and a writer waits up to 20 s for the lock.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        **DATABASES["default"].get("OPTIONS", {}),
    }
    # Made on first start, 0600 in a 0700 folder: only the portal's user may read the database.
    private_sqlite_file(DATABASES["default"]["NAME"])
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend, with a health check that polls the socket before it sends SELECT 1 (config/postgresql).
    DATABASES["default"]["ENGINE"] = "config.postgresql"
    # Parameters bound by the server, so psycopg prepares a statement run 5 times on a connection:
    # the hot paths' joins then skip PostgreSQL's planner (0.55 of the key fetch's 0.85 ms read).
    # Off behind a pooler in transaction mode (PgBouncer < 1.21), where prepared statements break.
    _server_side_binding = envbool("DATABASE_SERVER_SIDE_BINDING", "True")
    DATABASES["default"]["OPTIONS"] = {
        "server_side_binding": _server_side_binding,
        "prepare_threshold": 5 if _server_side_binding else None,
        **DATABASES["default"].get("OPTIONS", {}),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def cache_from_url(url: str) -> dict:
    """Django's CACHES entry for CACHE_URL: locmem://, db://<table>, redis://host:port/db, memcached://host:port."""
    scheme, _, rest = url.partition("://")
    backends = {
        "locmem": "django.core.cache.backends.locmem.LocMemCache",
        "db": "django.core.cache.backends.db.DatabaseCache",
        "redis": "django.core.cache.backends.redis.RedisCache",
        "rediss": "django.core.cache.backends.redis.RedisCache",
        "memcached": "django.core.cache.backends.memcached.PyMemcacheCache",
    }
    if scheme not in backends or (not rest and scheme not in ("locmem", "db")):
        raise ImproperlyConfigured(
            f"CACHE_URL must look like locmem://, db://portal_cache, redis://host:6379/0 or memcached://host:11211, "
            f"not {url!r}."
        )
    if scheme == "locmem":
        return {"BACKEND": backends[scheme], "LOCATION": rest or "portal"}
    if scheme == "db":
        return {"BACKEND": backends[scheme], "LOCATION": rest or "portal_cache"}
    if scheme == "memcached":
        return {"BACKEND": backends[scheme], "LOCATION": [host for host in rest.split(",") if host]}
    return {"BACKEND": backends[scheme], "LOCATION": url}


def require_cache_client(url: str) -> None:
    """Redis and memcached need a client package requirements.txt leaves out: say so at start-up, not at first use."""
    scheme = url.partition("://")[0]
    package = {"redis": "redis", "rediss": "redis", "memcached": "pymemcache"}.get(scheme)
    if package and importlib.util.find_spec(package) is None:
        raise ImproperlyConfigured(
            f"CACHE_URL names a {scheme}:// cache, whose client is not installed: "
            f"pip install {package} (requirements.txt leaves it out, as one server needs no shared cache)."
        )


# One server may keep its cache in its own memory; several behind a load balancer share one (README, Alerts).
_cache_url = envsecret("CACHE_URL", "locmem://").strip()  # read once; lower case: not a setting of its own
CACHES = {"default": cache_from_url(_cache_url)}
require_cache_client(_cache_url)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "portal.lockouts.LockOutBackend",  # axes' lock on password guessing, before the real check
    "django.contrib.auth.backends.ModelBackend",
]
# After AXES_FAILURE_LIMIT failed sign-ins for one user name from one address, further tries are
# refused for AXES_COOLOFF_HOURS; `manage.py axes_reset` lifts a lock early.
AXES_FAILURE_LIMIT = envint("AXES_FAILURE_LIMIT", 10, low=1)
# 0 or less would turn the lock-out off without a word; past a year, axes' timedelta overflows at a failure.
AXES_COOLOFF_TIME = envfloat("AXES_COOLOFF_HOURS", 1.0, most_hours=8760)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# The client's address as the audit trail resolves it (behind a trusted proxy, the address the proxy
# reports, not REMOTE_ADDR): otherwise everyone behind one proxy shares one lock per user name.
AXES_CLIENT_IP_CALLABLE = "portal.audit.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
# A failed try's form is kept (AccessAttempt.post_data, shown in the admin) with these fields masked: a
# wrong password at a sudo prompt comes with the action's own fields, such as a key's new secret. Every
# field portal.sudo never carries into a page is here (tests/test_page_friction.py checks it).
AXES_SENSITIVE_PARAMETERS = ["sudo_password", "secret", "old_password", "new_password1", "new_password2", "otp_token"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
try:
    ZoneInfo(TIME_ZONE)  # Django only finds out at the first time it writes
except (ZoneInfoNotFoundError, ValueError, OSError):
    raise ImproperlyConfigured(
        f"TIME_ZONE must name a zone of the tz database, like UTC or Europe/Berlin, not {TIME_ZONE!r}."
    ) from None
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Request bodies (forms, and the API's JSON) up to 1 MiB: nothing here needs more. The whole body, file parts
# included: config.middleware.RequestBodyLimitMiddleware refuses a longer one before it is read.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 1024 * 1024, low=1024)
# No page or API takes a file: a file part is read and dropped, never kept in memory or written to a temporary file.
FILE_UPLOAD_HANDLERS: list[str] = []

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.authentication.AccessTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["portal.api.parsers.BoundedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Every list answers {"results": [...], "next": <url or null>}, cut by keyset (config/pagination.py).
    "DEFAULT_PAGINATION_CLASS": "config.pagination.KeysetPagination",
    "EXCEPTION_HANDLER": "config.handlers.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # ?format= is an ordinary query parameter, ignored like any unknown one; DRF's default made any
    # endpoint a bare 404 with it. The schema alone reads it (portal.api.views.SchemaView).
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Gateway portal API",
    "DESCRIPTION": "Teams, gateway keys, Claude Code configurations, probes and the audit trail.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],  # why: README, "Choices"
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Every operation's refusals, in the one shape config.handlers gives them (config/schema.py).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "config.schema.add_error_responses"],
    "ENUM_NAME_OVERRIDES": {
        "ProbeModeEnum": "gateways.models.ProbeMode",
        "ChannelKindEnum": "alerts.models.ChannelKind",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Deep links put a link inside each operation's toggle button, which screen readers cannot use.
    "SWAGGER_UI_SETTINGS": {"deepLinking": False},
}

# Pages load only the portal's own script and stylesheet: no inline code, no third party.
# The Django admin keeps its inline scripts, so it is left out.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/admin/"],
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", str(not DEBUG))
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "False")
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0, low=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", "False")
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "False")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if envbool("USE_X_FORWARDED_PROTO", "False") else None
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Re-authentication ("sudo mode") lasts this long before a sensitive action asks again.
SUDO_MODE_SECONDS = envint("SUDO_MODE_SECONDS", 15 * 60, low=60, high=24 * 3600)
# A new access token expires after this many days unless its maker chooses (up to 3650).
ACCESS_TOKEN_DEFAULT_DAYS = envint("ACCESS_TOKEN_DEFAULT_DAYS", 90, low=1, high=3650)

# Django's error page and error e-mails, with every key in reach removed, DEBUG on or off.
DEFAULT_EXCEPTION_REPORTER = "portal.redaction.SecretSafeExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "portal.redaction.SecretSafeExceptionReporterFilter"

# --- Accounts (issue 13): e-mail, invitations, single sign-on (OIDC), two-factor -----------------------------
# Kept in one block on purpose: it only adds to the lists above and reads its own variables.
INSTALLED_APPS += ["django_otp", "django_otp.plugins.otp_totp", "django_otp.plugins.otp_static"]
_auth_at = MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1
# OTPMiddleware marks a session verified by a second factor; ours then holds back whoever still owes one.
MIDDLEWARE[_auth_at:_auth_at] = ["django_otp.middleware.OTPMiddleware", "portal.two_factor.TwoFactorMiddleware"]
AUTHENTICATION_BACKENDS += ["portal.oidc.SSOBackend"]  # answers only the OIDC callback


# A host name: letters, digits and inner hyphens in each dot-separated label (after IDNA), one label or more.
DOMAIN_LABELS = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*", re.I)


def envsender(name: str, default: str) -> str:
    """A sender address a mail server takes: one address, with an optional name, and nothing else.

    Django reads it only at the first mail, so a value with the quotes a docker --env-file keeps, or a name
    with no address, would start and then have every mail refused (501 at MAIL FROM). The address's domain may
    be written in Unicode or its xn-- form (Django sends the xn-- form); its local part must be ASCII, as no
    server that lacks SMTPUTF8 takes any other.
    """
    value = envstr(name, default)
    sender = email_policy.default.header_factory("From", value)
    try:
        [address] = sender.addresses
        # Django's validator for the local part; the domain by its labels, since a one-label domain
        # (noreply@intranet), which Django's validator refuses, is a sender mail servers take.
        validate_email(f"{address.username}@example.com")
        if not DOMAIN_LABELS.fullmatch(address.domain.encode("idna").decode("ascii")):
            raise ValueError(address.domain)
    except (ValueError, ValidationError, UnicodeError):
        address = None
    # A period in the name ("J. Smith") is only obsolete syntax to the parser, and sent as it is: not refused.
    invalid = [defect for defect in sender.defects if isinstance(defect, email_errors.InvalidHeaderDefect)]
    if address is None or invalid or not address.username.isascii():
        raise ImproperlyConfigured(
            f"{name} must be one e-mail address, like portal@example.com, or a name and an address, like "
            f"Gateway Portal <portal@example.com> (no quotes around the whole value), not {value!r}."
        )
    return value


def parse_email_url(url: str) -> dict:
    """Django's EMAIL_* settings from one URL: smtp:// (STARTTLS with ?tls=true), smtps:// (TLS), console://."""
    parts = urlsplit(url)
    if parts.scheme == "console":
        return {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}
    ports = {"smtp": 25, "submission": 587, "smtps": 465}
    if parts.scheme not in ports or not parts.hostname:
        raise ImproperlyConfigured(
            f"EMAIL_URL must look like smtp://user:password@host:587?tls=true or smtps://host:465, not {parts.scheme}://..."
        )
    query = parse_qs(parts.query)
    tls = query.get("tls", ["false"])[0].lower() in ("1", "true", "yes", "on") or parts.scheme == "submission"
    if tls and parts.scheme == "smtps":
        # Refused, not ignored: smtps:// speaks TLS from the first byte (port 465) and ?tls=true asks for STARTTLS
        # on a plain connection (587); Django refuses both at the first mail, and only the operator knows which.
        raise ImproperlyConfigured(
            "EMAIL_URL asks for TLS twice: smtps:// is TLS from the start (usually port 465) and ?tls=true is "
            "STARTTLS (usually port 587). Use smtps://host:465 without ?tls=true, or smtp://host:587?tls=true."
        )
    try:
        port = parts.port or ports[parts.scheme]
    except ValueError:
        raise ImproperlyConfigured("EMAIL_URL has a port that is not a number.") from None
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": parts.hostname,
        "EMAIL_PORT": port,
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_TLS": tls,
        "EMAIL_USE_SSL": parts.scheme == "smtps",
    }


# Mail goes out through EMAIL_URL, or Django's own EMAIL_HOST/EMAIL_PORT/...; with neither, it is printed to the
# console in development and dropped in production, and pages show the links a mail would carry.
EMAIL_URL = envsecret("EMAIL_URL")
EMAIL_HOST = os.getenv("EMAIL_HOST", "")
EMAIL_PORT = envint("EMAIL_PORT", 25, low=1, high=65535)
EMAIL_HOST_USER = os.getenv("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = envsecret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "False")
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", "False")
EMAIL_BACKEND = os.getenv("EMAIL_BACKEND", "")  # a Django mail backend by its dotted path, if you need another
EMAIL_CONFIGURED = bool(EMAIL_URL or EMAIL_HOST or EMAIL_BACKEND)
if EMAIL_BACKEND:
    # Django imports it only at the first mail, after the invitation or reset it reports is saved: a misspelt
    # path would fail every mail, one log line each. Its module is looked up now (not run: it may read settings).
    _module, _, _name = EMAIL_BACKEND.rpartition(".")
    try:
        _found = bool(_module) and _name.isidentifier() and importlib.util.find_spec(_module) is not None
    except (ImportError, ValueError):
        _found = False
    if not _found:
        raise ImproperlyConfigured(
            f"EMAIL_BACKEND is {EMAIL_BACKEND!r}, which names no module that can be imported. Give a Django mail "
            "backend's dotted path, like django.core.mail.backends.smtp.EmailBackend, or unset it and use EMAIL_URL."
        )
if EMAIL_URL:
    globals().update(parse_email_url(EMAIL_URL))
elif not EMAIL_BACKEND:
    quiet = f"django.core.mail.backends.{'console' if DEBUG else 'dummy'}.EmailBackend"
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else quiet
# Both are refused by Django only at the first mail, after the invitation or reset it reports is saved: say so now.
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured(
        "EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be True: set EMAIL_USE_SSL for a server that speaks TLS from "
        "the start (usually port 465), or EMAIL_USE_TLS for STARTTLS (usually port 587)."
    )
# smtplib sends the user name and password of every AUTH method (PLAIN, LOGIN, CRAM-MD5) as ASCII only, so such a
# password could never sign in: every mail would fail. The message names no character of it.
_smtp = EMAIL_BACKEND == "django.core.mail.backends.smtp.EmailBackend"
if _smtp and not (EMAIL_HOST_USER + EMAIL_HOST_PASSWORD).isascii():
    raise ImproperlyConfigured(
        "The SMTP user name or password (EMAIL_URL, or EMAIL_HOST_USER and EMAIL_HOST_PASSWORD) has a character "
        "outside ASCII, which Python's smtplib cannot send: the mail server would never accept a mail. Choose an "
        "ASCII password for the portal's mail account."
    )
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = envsender("DEFAULT_FROM_EMAIL", "gateway-portal@localhost")
# A reset link works for at least an hour (0 would make every link dead on arrival), at most a year.
PASSWORD_RESET_TIMEOUT = envint("PASSWORD_RESET_HOURS", 24, low=1, high=365 * 24) * 3600

# An invitation link works once, for this many days.
INVITATION_DAYS = envint("INVITATION_DAYS", 7, low=1, high=3650)

# Single sign-on with OpenID Connect (authorization code with PKCE); endpoints come from the issuer's discovery
# document. mozilla-django-oidc does the protocol; portal/oidc.py reads these names and adds discovery, issuer and
# audience checks, account matching and the team groups.
OIDC_ISSUER = os.getenv("OIDC_ISSUER", "").strip().rstrip("/")
OIDC_CLIENT_ID = os.getenv("OIDC_CLIENT_ID", "").strip()
OIDC_CLIENT_SECRET = envsecret("OIDC_CLIENT_SECRET")
OIDC_GROUPS_CLAIM = os.getenv("OIDC_GROUPS_CLAIM", "").strip() or "groups"
OIDC_SCOPES = os.getenv("OIDC_SCOPES", "").strip() or "openid email profile"
OIDC_ONLY = envbool("OIDC_ONLY", "False")
OIDC_REQUIRE_EMAIL_VERIFIED = envbool("OIDC_REQUIRE_EMAIL_VERIFIED", "True")
# The most one answer of the identity provider (discovery, keys, token, userinfo) may take, whole (portal/oidc.py).
OIDC_DEADLINE_SECONDS = envfloat("OIDC_DEADLINE_SECONDS", 10.0, most_seconds=120)
if OIDC_ISSUER and not (OIDC_CLIENT_ID and OIDC_CLIENT_SECRET):
    raise ImproperlyConfigured("OIDC_ISSUER is set, so OIDC_CLIENT_ID and OIDC_CLIENT_SECRET must be set too.")
if OIDC_ISSUER and not DEBUG and not OIDC_ISSUER.startswith("https://"):
    raise ImproperlyConfigured(f"OIDC_ISSUER must be an https:// address when DEBUG is off, not {OIDC_ISSUER!r}.")
if OIDC_ONLY and not OIDC_ISSUER:
    raise ImproperlyConfigured("OIDC_ONLY hides password sign-in, so it needs OIDC_ISSUER (and its client) set.")

# Staff and team admins must enrol a second factor (TOTP) before they can do anything else.
REQUIRE_2FA_FOR_ADMINS = envbool("REQUIRE_2FA_FOR_ADMINS", "False")
OTP_TOTP_ISSUER = "Gateway portal"  # the name authenticator apps show
# django-otp's own admin pages would show each user's authenticator secret and recovery codes to superusers.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
# --- end of accounts ------------------------------------------------------------------------------------------

_log_level = envstr("LOG_LEVEL", "INFO")
LOG_LEVEL = _log_level.upper()
if LOG_LEVEL not in logging.getLevelNamesMapping():
    raise ImproperlyConfigured(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {_log_level!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # When, how bad and from where: the operator on call reads only these lines. gunicorn's own error and
    # access lines keep their formats (config/gunicorn.conf.py): its loggers do not reach the root.
    "formatters": {"portal": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "portal"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Through the root's handler only: Django's own console handler printed each record a second time.
        "django": {"handlers": [], "level": LOG_LEVEL},
        "django.db.backends": {"level": "WARNING"},
        # httpx logs every request at INFO; probes are recorded as ProbeResults instead.
        "httpx": {"level": "WARNING"},
        # httpcore's DEBUG traces print each answer's headers (a receiver's Location, a gateway's cookies).
        "httpcore": {"level": "WARNING"},
    },
}

# Behind a reverse proxy, take the client address from X-Forwarded-For (audit rows record it):
# the entry TRUSTED_PROXY_COUNT places from the right, which the proxies in front appended.
USE_X_FORWARDED_FOR = envbool("USE_X_FORWARDED_FOR", "False")
TRUSTED_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 1, low=1)
