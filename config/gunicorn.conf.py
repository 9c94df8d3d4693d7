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
"""

from __future__ import annotations

import os

bind = os.getenv("BIND", "0.0.0.0:8000")
workers = int(os.getenv("WEB_CONCURRENCY", str(max(2, os.cpu_count() or 1))))
worker_class = "gthread"
threads = int(os.getenv("WEB_THREADS", "2"))
timeout = 60
graceful_timeout = 30
keepalive = 5
accesslog = "-"
# The heartbeat file in memory: on a container's overlay file system a write can stall a worker.
# (gunicorn makes it with mkstemp: a private file of a random name.)
if os.path.isdir("/dev/shm"):  # noqa: S108
    worker_tmp_dir = "/dev/shm"  # noqa: S108
