"""All outbound HTTP of the portal: probes go through this client and nothing else.

It resolves the host itself, refuses private, loopback, link-local and other special
addresses unless PROBE_ALLOW_PRIVATE_IPS is on, then connects to the very address it
checked (the Host header and TLS server name stay the gateway's), so a DNS answer cannot
change between the check and the connection. Redirects are never followed; reads are
bounded by timeouts, a byte limit (applied by the caller) and an overall deadline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import zlib
from contextlib import asynccontextmanager
from functools import partial

import httpx
from django.conf import settings


class OutboundRefused(Exception):
    """The portal will not connect to this address."""


# IPv6 ranges whose last 32 bits are an IPv4 address that a host or a translator may connect to:
# IPv4-compatible and IPv4-mapped (RFC 4291), IPv4-translated (RFC 2765), NAT64 (RFC 6052).
IPV4_IN_LAST_32_BITS = tuple(
    ipaddress.IPv6Network(network) for network in ("::/96", "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96")
)
# Local-use NAT64 (RFC 8215): the IPv4 address may sit anywhere in it, and it is never a public host.
# Site-local (RFC 3879 deprecated it, but old networks still route it): `is_global` calls it public.
NEVER_PUBLIC = (ipaddress.IPv6Network("64:ff9b:1::/48"), ipaddress.IPv6Network("fec0::/10"))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to: the last 32 bits, 6to4's and both of Teredo's."""
    found = []
    if any(ip in network for network in IPV4_IN_LAST_32_BITS):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour:
        found.append(ip.sixtofour)
    if ip.teredo:
        found.extend(ip.teredo)
    return found


def _is_global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast


def is_public(address: str) -> bool:
    """Whether an address is a public host, judging every IPv4 address an IPv6 one wraps as well.

    `is_global` alone is True for `::127.0.0.1`, `64:ff9b::7f00:1` and `2002:7f00:1::`, which reach
    loopback through an IPv4-compatible route, a NAT64 translator or a 6to4 relay.
    """
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in network for network in NEVER_PUBLIC):
            return False
        if not all(_is_global(ipv4) for ipv4 in embedded_ipv4(ip)):
            return False
    return _is_global(ip)


def tls_context() -> ssl.SSLContext:
    """One verifying TLS context, to share between clients (building one costs milliseconds)."""
    return httpx.create_ssl_context()


class SafeClient:
    def __init__(
        self,
        *,
        allow_private: bool | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        deadline: float | None = None,
        max_bytes: int | None = None,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
    ):
        self.allow_private = settings.PROBE_ALLOW_PRIVATE_IPS if allow_private is None else allow_private
        self.deadline = deadline or settings.PROBE_DEADLINE
        self.max_bytes = max_bytes or settings.PROBE_MAX_BYTES
        timeout = httpx.Timeout(
            connect=connect_timeout or settings.PROBE_CONNECT_TIMEOUT,
            read=read_timeout or settings.PROBE_READ_TIMEOUT,
            write=read_timeout or settings.PROBE_READ_TIMEOUT,
            pool=self.deadline,
        )
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._new_client = partial(
            httpx.AsyncClient,
            timeout=timeout,
            follow_redirects=False,
            limits=limits,
            transport=transport,
            trust_env=False,
            verify=verify,
        )
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._resolved: dict[tuple[str, int], str] = {}

    async def __aenter__(self) -> SafeClient:
        return self

    async def __aexit__(self, *exc) -> None:
        for client in self._clients.values():
            await client.aclose()

    def _client_for(self, host: str) -> httpx.AsyncClient:
        """A connection pool per host name.

        httpx pools connections by the address it connects to, which here is the checked IP: one
        pool for two gateways behind one address (a CDN, an SNI-routing proxy) would send the
        second gateway's key over a connection whose certificate was verified for the first.
        """
        if host not in self._clients:
            self._clients[host] = self._new_client()
        return self._clients[host]

    async def resolve(self, host: str, port: int) -> str:
        """The address to connect to, after checking every address the name resolves to."""
        cached = self._resolved.get((host, port))
        if cached:
            return cached
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpx.ConnectError(f"The host name {host} does not resolve ({exc.strerror}).") from None
        addresses = [info[4][0] for info in infos]
        if not self.allow_private:
            for address in addresses:
                if not is_public(address):
                    raise OutboundRefused(
                        f"{host} resolves to {address}, a private, loopback or reserved address; "
                        "the portal only probes public addresses (PROBE_ALLOW_PRIVATE_IPS allows others)."
                    )
        self._resolved[(host, port)] = addresses[0]
        return addresses[0]

    @asynccontextmanager
    async def stream(self, method: str, url: str, *, headers: dict | None = None, **kwargs):
        target = httpx.URL(url)
        port = target.port or (443 if target.scheme == "https" else 80)
        address = await self.resolve(target.host, port)
        # Only encodings read_limited unpacks a bounded piece at a time.
        headers = {"accept-encoding": "gzip, deflate", **(headers or {}), "host": target.netloc.decode("ascii")}
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        async with self._client_for(target.host).stream(
            method, target.copy_with(host=address), headers=headers, extensions=extensions, **kwargs
        ) as response:
            yield response


async def read_limited(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of the decoded body, and whether there was more.

    Gateways behind a CDN often gzip their answers, so the limit applies after decoding; and the
    body is unpacked at most `limit` bytes at a time, since httpx unpacks each network read whole
    (one 64 KiB read of gzip can hold a gigabyte of zeros). An encoding other than gzip or deflate
    (asked for by nobody here) is kept as it came.
    """
    encoding = response.headers.get("content-encoding", "").strip().lower()
    # 32 + MAX_WBITS reads a gzip or a zlib header, as servers label either "deflate"; some send
    # "deflate" with no header at all (raw), which the first bytes tell.
    decoder = zlib.decompressobj(32 + zlib.MAX_WBITS) if encoding in ("gzip", "x-gzip", "deflate") else None
    body = bytearray()
    first = True
    try:
        async for raw in response.aiter_raw():
            if decoder is None:
                body += raw
            else:
                if first and encoding == "deflate" and not _zlib_header(raw):
                    decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                first = first and not raw
                pending = raw
                while pending and len(body) <= limit:
                    body += decoder.decompress(pending, limit + 1 - len(body))
                    pending = decoder.unconsumed_tail
            if len(body) > limit:
                return bytes(body[:limit]), True
    except zlib.error:
        return bytes(body[:limit]), len(body) > limit  # what unpacked before the damage
    return bytes(body), False


def _zlib_header(data: bytes) -> bool:
    """Whether data starts like a zlib stream (RFC 1950: deflate method, header check) or a gzip one."""
    if data[:2] == b"\x1f\x8b":
        return True
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
