"""The outbound client: every host name verified on its own TLS connection, even when two share an
address, and answers read within their byte limit, compressed or not."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import threading
import tracemalloc
import zlib
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alerts.delivery import EXCERPT, Outgoing, _post
from gateways.probes.outbound import SafeClient
from gateways.probes.probe import ProbeTarget, _send, run_probe
from tests.tls_server import certificate_authority, running_tls_server


def target(base_url: str, secret: str) -> ProbeTarget:
    return ProbeTarget(base_url=base_url, auth_scheme="x-api-key", secret=secret, model="m", mode="reachability")


@pytest.fixture
def localhost_only(tmp_path):
    """A TLS server whose certificate names localhost, and a client context that trusts its CA."""
    ca, certificate, key = certificate_authority(tmp_path)
    with running_tls_server(certificate, key) as server:
        yield server, ssl.create_default_context(cafile=str(ca))


def test_a_certificate_is_checked_for_each_gateway_sharing_an_address(localhost_only):
    """As behind a CDN or an SNI-routing proxy: gateway B's key must not ride A's verified connection."""
    server, trusted = localhost_only
    a = target(f"https://localhost:{server.port}", "sk-gateway-a-0123456789")
    b = target(f"https://127.0.0.1:{server.port}", "sk-gateway-b-0123456789")  # the certificate does not name it

    async def probe_both():
        async with SafeClient(allow_private=True, verify=trusted, max_connections=2) as client:
            return await run_probe(a, client), await run_probe(b, client)

    first, second = asyncio.run(probe_both())
    assert first.verdict == "ok"
    assert second.verdict == "tls_error"
    sent = [headers.get("X-Api-Key") or headers.get("x-api-key") for _, headers, _ in server.seen]
    assert "sk-gateway-b-0123456789" not in sent and "sk-gateway-a-0123456789" in sent


def test_one_gateway_keeps_its_connection_alive_across_requests(localhost_only):
    """A pool per host name still reuses connections for the same name."""
    server, trusted = localhost_only

    async def twice():
        async with SafeClient(allow_private=True, verify=trusted) as client:
            for _ in range(2):
                async with client.stream("GET", f"https://localhost:{server.port}/v1/models") as response:
                    await response.aread()

    asyncio.run(twice())
    assert len(server.seen) == 2
    assert len({client_port for _, _, client_port in server.seen}) == 1  # one connection, kept alive


# 64 MiB of zeros in 64 KiB of gzip: one network read of it would unpack to the whole 64 MiB at once.
BOMB = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
TEXT = b'{"error": {"message": "' + b"x" * 300_000 + b'"}}'
_raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
RAW_DEFLATE = _raw.compress(TEXT) + _raw.flush()  # "deflate" as some servers send it: no zlib header


@contextmanager
def answering(body: bytes, encoding: str):
    """A server on 127.0.0.1 that answers every POST with `body`, labelled with Content-Encoding `encoding`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.server.asked.append(self.headers.get("accept-encoding"))
            self.send_response(200)
            self.send_header("content-encoding", encoding)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            with suppress(OSError):  # the client stopped reading at its limit
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.asked = []
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def traced(awaitable):
    """Its result and the peak of memory Python allocated while it ran (the client made before, not counted)."""
    tracemalloc.start()
    try:
        result = await awaitable
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_compressed_answer_is_unpacked_only_up_to_the_probe_limit():
    limit = 256 * 1024

    async def probe(url):
        async with SafeClient(allow_private=True, max_bytes=limit) as client:
            return await traced(_send(client, "POST", f"{url}/v1/messages", content=b"{}"))

    with answering(BOMB, "gzip") as url:
        answer, peak = asyncio.run(probe(url))
    assert answer.truncated and answer.body == b"\0" * limit
    assert peak < 8 * limit, f"{peak / 2**20:.1f} MiB held to keep {limit // 1024} KiB"


@pytest.mark.parametrize(
    ("body", "encoding"),
    [(zlib.compress(TEXT), "deflate"), (RAW_DEFLATE, "deflate"), (gzip.compress(TEXT), "gzip"), (TEXT, "identity")],
    ids=["deflate", "raw-deflate", "gzip", "plain"],
)
def test_each_encoding_the_client_asks_for_reads_the_same(body, encoding):
    async def probe(url):
        async with SafeClient(allow_private=True, max_bytes=1000) as client:
            return await _send(client, "POST", f"{url}/v1/messages", content=b"{}")

    with answering(body, encoding) as url:
        answer = asyncio.run(probe(url))
    assert answer.body == TEXT[:1000] and answer.truncated


def test_a_webhook_receivers_compressed_answer_costs_its_excerpt_not_its_size():
    """A team admin chooses the receiver; the delivery keeps an excerpt of what it answers."""

    async def deliver(url):
        async with SafeClient(allow_private=True) as client:
            return await traced(_post(client, Outgoing(1, "webhook", f"{url}/hook", "test", body=b"{}")))

    with answering(BOMB, "gzip") as url:
        (status, excerpt), peak = asyncio.run(deliver(url))
    assert status == 200 and excerpt == "\ufffd" * EXCERPT  # NUL, as stored
    assert peak < 2 * 1024 * 1024, f"{peak / 2**20:.1f} MiB held for a {EXCERPT}-byte excerpt"
