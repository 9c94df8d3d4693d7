"""gunicorn's settings for the portal: `gunicorn -c config/gunicorn.conf.py config.wsgi`.

A process per core runs the Python; each serves requests on 2 threads (`gthread`), so that a probe
waiting on a gateway does not hold a whole worker. More threads were measured to cost throughput
(bench.http_load, 2 cores): a download is CPU, not waiting, and with 8 threads the one holding
the database's write lock (SQLite) or the audit chain's head waits for the interpreter lock behind
the others. 2 threads served 2 x the downloads of 8 on SQLite (433 against 217 per second) and
a quarter fewer key fetches (855 against 1,137); on PostgreSQL 134 against 107 downloads and about
as many key fetches (514 against 484). Each thread keeps its own database connection
(DATABASE_CONN_MAX_AGE), so PostgreSQL sees WEB_CONCURRENCY x WEB_THREADS connections at most.
A long probe holds one thread, not the worker's heartbeat, so `timeout` does not cut it short.

One thread per process, two processes per core (WEB_THREADS=1 WEB_CONCURRENCY=4 on 2 cores) served
more: about 1.08 x the downloads on SQLite and 1.2 x on PostgreSQL (three interleaved rounds, 2026-11-24),
as no request waits for the interpreter lock held by another thread of its process. It is not the
default because a probe started from a page (up to PROBE_DEADLINE) then holds a whole process, and
the requests that process has accepted wait behind it; it suits a portal whose probes run from cron.

Each process listens on its own socket (`reuse_port`, WEB_REUSE_PORT), so the kernel spreads new
connections evenly over the processes. On one shared socket the process that wakes first takes a
connection, so kept-alive connections opened together (a reverse proxy's, a load generator's) can all
go to one process. Measured on 2 cores (2026-11-24), 16 connections opened at once, 20 times: on one
shared socket 2 times all 16 went to one process and 2 times 15; with a socket per process the most
uneven was 13 and 3. Under load (bench.http_load's scenarios on PostgreSQL) 5 of 20 measurements on
a shared socket left 38 to 40 % of the cores idle and served half the requests (/healthz 2,104
against 5,785 per second, key fetches 940 against 2,020); with a socket per process none of 15 did.
Turn it off (WEB_REUSE_PORT=false) where gunicorn is handed its socket (systemd socket activation),
which it would otherwise not use, or to have a second server on the same port fail with "address
already in use" instead of sharing it.
"""

from __future__ import annotations

import os
import re

from gunicorn.glogging import Logger


def _text(name: str, default: str) -> str:
    """NAME, or the default when it is unset or blank (a blank line in an env file), as in config/settings.py."""
    return os.getenv(name, "").strip() or default


def _whole(value: str, low: int, high: int) -> int | None:
    """VALUE as a whole number from `low` to `high`, else None; ASCII digits only ("²" is a digit to str.isdigit)."""
    if not re.fullmatch(r"[0-9]{1,9}", value) or not low <= int(value) <= high:
        return None
    return int(value)


def _count(name: str, default: int, high: int) -> int:
    """A number of processes or threads, stopped here with a sentence rather than by gunicorn with a traceback."""
    value = _text(name, "")
    if not value:
        return default
    number = _whole(value, 1, high)
    if number is None:
        raise SystemExit(f"{name} must be a whole number from 1 to {high}, not {value!r}.")
    return number


def _address(name: str, default: str) -> str:
    """host:port, [IPv6]:port, a host alone (port 8000) or unix:/path; a port gunicorn cannot bind stops start-up here."""
    value = _text(name, default)
    if value.startswith(("unix:", "fd://")):
        return value
    shape = re.fullmatch(r"(?:tcp://)?(\[[^\]]*\]|[^:\[\]/]*):(.*)", value)
    if shape and _whole(shape.group(2), 1, 65535) is None:
        raise SystemExit(
            f"{name}'s port must be a whole number from 1 to 65535, not {shape.group(2)!r} "
            f"({name} is host:port, like 0.0.0.0:8000, or unix:/path/to.sock)."
        )
    return value


def _on(name: str, default: str) -> bool:
    value = _text(name, default).lower()
    if value not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise SystemExit(f"{name} must be true or false, not {value!r}.")
    return value in ("1", "true", "yes", "on")


bind = _address("BIND", "0.0.0.0:8000")
# A word or a negative number in WEB_CONCURRENCY stops gunicorn before it reads this file (it parses the
# variable itself); config/settings.py checks it too, so the image's `manage.py migrate` stops with a sentence.
workers = _count("WEB_CONCURRENCY", max(2, os.cpu_count() or 1), high=1000)
worker_class = "gthread"
# Fewer threads than a process's connections (worker_connections, 1000): with as many, gunicorn keeps none alive.
worker_connections = 1000
threads = _count("WEB_THREADS", 2, high=worker_connections - 1)
timeout = 60
graceful_timeout = 30
keepalive = 5
# A socket per process where the kernel can spread connections over them (TCP); a unix socket or a socket
# handed over (fd://) has one address only, which each process could not bind again.
reuse_port = _on("WEB_REUSE_PORT", "true") and not bind.startswith(("unix:", "fd://"))
# No control socket (gunicornc): gunicorn 25+ makes one in $HOME/.gunicorn/, which the image's user cannot
# write (HOME=/app, owned by root), and logged an error at every start. Signals still reload and stop it.
control_socket_disable = True
accesslog = "-"

# Addresses that carry a one-time secret in their path: an invitation, a password reset, an e-mail
# confirmation, a device's install link. Each works until it is used (days, for an invitation), and
# gunicorn writes the request line after the portal's own log redaction has ended: it keeps the path.
ONE_TIME_PATH = re.compile(
    r"(/invitations/(?!accept/)|/reset/[^/?#\s]+/(?!set-password/)|/account/confirm-email/|/api/v1/device/install/)"
    r"[^/?#\s]+"
)
HIDDEN = "[one-time code hidden]"


class AccessLogger(Logger):
    """gunicorn's logger with the one-time codes of ONE_TIME_PATH hidden in the access line (and its Referer)."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name in ("r", "U", "f", "{referer}i"):
            if isinstance(atoms.get(name), str):
                atoms[name] = ONE_TIME_PATH.sub(rf"\g<1>{HIDDEN}", atoms[name])
        return atoms


logger_class = AccessLogger
# The heartbeat file in memory: on a container's overlay file system a write can stall a worker.
# (gunicorn makes it with mkstemp: a private file of a random name.)
if os.path.isdir("/dev/shm"):  # noqa: S108
    worker_tmp_dir = "/dev/shm"  # noqa: S108


def post_worker_init(worker) -> None:
    """Say at start, once (the first process, where Django is loaded), what to run when no page can render.

    With DEBUG off and `collectstatic` never run, every page fails on its stylesheet's link and the log
    said only "Missing staticfiles manifest entry". It is a warning, not a refusal: the API and the
    devices' key fetches need no static files, and /readyz answers 503 naming "static" meanwhile.
    """
    if worker.age != 1:
        return
    from config.views import static_not_collected

    if (static := static_not_collected()) is not None:
        worker.log.warning(static)
