"""gunicorn's settings for the portal: `gunicorn -c config/gunicorn.conf.py config.wsgi`.

Requests spend most of their time waiting on the database (and a probe on a gateway), so each
worker process serves several requests at once on threads (`gthread`): a process per core for
the Python work, threads to overlap the waits. Each thread keeps its own database connection
(DATABASE_CONN_MAX_AGE), so PostgreSQL sees WEB_CONCURRENCY x WEB_THREADS connections at most.
A long probe holds one thread, not the worker's heartbeat, so `timeout` does not cut it short.
"""

from __future__ import annotations

import os

bind = os.getenv("BIND", "0.0.0.0:8000")
workers = int(os.getenv("WEB_CONCURRENCY", str(max(2, os.cpu_count() or 1))))
worker_class = "gthread"
threads = int(os.getenv("WEB_THREADS", "8"))
timeout = 60
graceful_timeout = 30
keepalive = 5
accesslog = "-"
# The heartbeat file in memory: on a container's overlay file system a write can stall a worker.
# (gunicorn makes it with mkstemp: a private file of a random name.)
if os.path.isdir("/dev/shm"):  # noqa: S108
    worker_tmp_dir = "/dev/shm"  # noqa: S108
