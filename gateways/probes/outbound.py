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
from contextlib import asynccontextmanager

import httpx
from django.conf import settings


class OutboundRefused(Exception):
    """The portal will not connect to this address."""


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


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
        self._client = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, limits=limits, transport=transport, trust_env=False, verify=verify
        )
        self._resolved: dict[tuple[str, int], str] = {}

    async def __aenter__(self) -> SafeClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self._client.aclose()

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
        headers = {**(headers or {}), "host": target.netloc.decode("ascii")}
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        async with self._client.stream(
            method, target.copy_with(host=address), headers=headers, extensions=extensions, **kwargs
        ) as response:
            yield response
