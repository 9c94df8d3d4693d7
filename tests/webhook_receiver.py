"""Webhook receivers: a real HTTP server on 127.0.0.1 whose paths answer as told.

Each path has a behaviour a test can change while it runs: "ok" (204), "fail" (500),
"nul" (400 with a NUL byte in its answer), "hang" (no answer until the server stops), "redirect"
(302 elsewhere). Every request is kept
with its headers and raw body, so a test can check the signature the way a receiver would.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int | None  # the status this server answered with; None: it hung

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    server: ReceiverServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        behaviour = self.server.behaviour.get(self.path, "ok")
        status = {"ok": 204, "fail": 500, "nul": 400, "redirect": 302, "hang": None, "echo404": 404}[behaviour]
        self.server.record(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, status))
        if status is None:
            self.server.stopping.wait(60)
            return
        if self.server.delay:
            time.sleep(self.server.delay)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "https://elsewhere.example/hook")
        # 404: Express's default page, which repeats the path it was sent to (a webhook's secret, for Slack).
        payload = {
            500: b'{"error": "receiver is down"}',
            400: b"bad\x00request",
            404: f"<pre>Cannot POST {self.path}</pre>".encode(),
        }.get(status, b"")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, delay: float = 0.0):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour: dict[str, str] = {}
        self.received: list[Received] = []
        self.stopping = threading.Event()
        self.delay = delay
        self._lock = threading.Lock()

    def record(self, item: Received) -> None:
        with self._lock:
            self.received.append(item)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


class running_receiver:
    """Context manager: a receiver in a thread; `behaviour` maps a path to ok, fail, hang or redirect."""

    def __init__(self, behaviour: dict[str, str] | None = None, delay: float = 0.0):
        self.server = ReceiverServer(delay)
        self.server.behaviour.update(behaviour or {})
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> ReceiverServer:
        self.thread.start()
        return self.server

    def __exit__(self, *exc) -> None:
        self.server.stopping.set()
        self.server.shutdown()
        self.server.server_close()
