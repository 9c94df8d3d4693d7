"""The image's HEALTHCHECK: GET /healthz where gunicorn listens (BIND, as config/gunicorn.conf.py reads it).

The slim image has no curl, and this runs every 30 s, so it imports neither Django nor the portal: standard
library only. Exit 0 when /healthz answers 200, 1 otherwise (Docker's "unhealthy").
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import sys

DEFAULT_BIND = "0.0.0.0:8000"
TIMEOUT = 4  # the HEALTHCHECK's --timeout is 5 s
# Addresses that mean "every interface": asked on the loopback of the same family.
ANY_ADDRESS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}  # noqa: S104 (read, not bound)


class UnixConnection(http.client.HTTPConnection):
    """An HTTP connection over gunicorn's unix socket (BIND=unix:/path)."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(self.path)


def connection_for(bind: str) -> http.client.HTTPConnection | None:
    """A connection to where BIND listens; None for a socket gunicorn was handed (fd://), which has no address."""
    if bind.startswith("unix:"):
        return UnixConnection(bind.removeprefix("unix:"))
    if bind.startswith("fd://"):
        return None
    shape = re.fullmatch(r"(?:tcp://)?(\[[^\]]*\]|[^:\[\]/]*)(?::(\d+))?", bind)
    host, port = (shape.group(1), int(shape.group(2) or 8000)) if shape else ("127.0.0.1", 8000)
    host = ANY_ADDRESS.get(host, host)
    return http.client.HTTPConnection(host.strip("[]"), port, timeout=TIMEOUT)


def main() -> int:
    connection = connection_for((os.getenv("BIND") or DEFAULT_BIND).strip())
    if connection is None:
        return 0  # nothing to ask: the process manager that handed the socket over watches it
    try:
        connection.request("GET", "/healthz")
        return 0 if connection.getresponse().status == 200 else 1
    except OSError:
        return 1
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
