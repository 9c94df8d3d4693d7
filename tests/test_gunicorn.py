"""config/gunicorn.conf.py: each process listens on its own socket, so connections spread over the processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench._setup import worker_pids
from tests.conftest import ROOT
from tests.test_concurrency import free_port
from tests.test_health import PRODUCTION, start_production_gunicorn

LISTEN, ESTABLISHED = "0A", "01"


def sockets_on(port: int, state: str) -> set[int]:
    """The inodes of the IPv4 TCP sockets on this machine whose local port is `port`, in `state` (/proc/net/tcp)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
            inodes.add(int(fields[9]))
    return inodes


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def listening_in_every_process(master: int, port: int, workers: int) -> bool:
    """Whether all `workers` processes have booted and each holds a listening socket on `port`."""
    pids = worker_pids(master)
    listening = sockets_on(port, LISTEN)
    return len(pids) == workers and all(socket_inodes(pid) & listening for pid in pids)


def healthz(connection: socket.socket) -> bytes:
    connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
        chunk = connection.recv(4096)
        assert chunk, f"the connection closed after {answer!r}"
        answer += chunk
    return answer


@pytest.fixture
def serve(tmp_path):
    """Start gunicorn as the image does, with settings added, and wait until each process listens."""
    servers = []

    def start(**extra: str) -> tuple[subprocess.Popen, int]:
        port = free_port()
        server = start_production_gunicorn(tmp_path, port, **extra)
        servers.append(server)
        workers = int(extra.get("WEB_CONCURRENCY", "1"))
        deadline = time.monotonic() + 30
        while not listening_in_every_process(server.pid, port, workers):
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "gunicorn's processes did not all start within 30 s"
            time.sleep(0.1)
        return server, port

    yield start
    for server in servers:
        server.terminate()
        server.wait(timeout=30)


def test_each_gunicorn_process_listens_on_its_own_socket_and_takes_its_share_of_kept_connections(serve):
    server, port = serve(WEB_CONCURRENCY="2")
    workers = worker_pids(server.pid)
    listening = sockets_on(port, LISTEN)
    assert len(listening) == 2
    assert all(len(socket_inodes(pid) & listening) == 1 for pid in workers)

    # 16 kept-alive connections opened together, as a reverse proxy's or a load generator's: the kernel
    # spreads them by address, so each process holds some (all on one: a chance of 2 in 65,536).
    connections = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(16)]
    try:
        for connection in connections:
            assert healthz(connection).startswith(b"HTTP/1.1 200")
        established = sockets_on(port, ESTABLISHED)
        held = {pid: len(socket_inodes(pid) & established) for pid in workers}
        assert sum(held.values()) == 16
        assert all(held.values()), f"connections per process: {held}"
    finally:
        for connection in connections:
            connection.close()


def test_the_processes_share_one_socket_when_reuse_port_is_off(serve):
    server, port = serve(WEB_CONCURRENCY="2", WEB_REUSE_PORT="false")
    listening = sockets_on(port, LISTEN)
    assert len(listening) == 1
    assert all(socket_inodes(pid) & listening for pid in worker_pids(server.pid))


def test_a_reuse_port_setting_that_is_not_true_or_false_stops_gunicorn_with_a_sentence():
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "--check-config", "config.wsgi"],
        cwd=ROOT,
        env={**PRODUCTION, "WEB_REUSE_PORT": "maybe"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "WEB_REUSE_PORT must be true or false, not 'maybe'." in done.stdout + done.stderr
