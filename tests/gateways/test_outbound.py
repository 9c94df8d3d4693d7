"""The outbound client's address check: IPv6 forms that wrap a private IPv4 address are refused too."""

from __future__ import annotations

import asyncio

import pytest

from gateways.probes.outbound import SafeClient, is_public
from gateways.probes.probe import ProbeTarget, run_probe

# Each wraps 127.0.0.1 (or another private IPv4) in an IPv6 form that `ip.is_global` calls public.
WRAPPED_PRIVATE = [
    "::127.0.0.1",  # IPv4-compatible
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:0:7f00:1",  # IPv4-translated
    "64:ff9b::7f00:1",  # NAT64
    "64:ff9b::a00:1",  # NAT64 to 10.0.0.1
    "64:ff9b:1::7f00:1",  # local-use NAT64
    "2002:7f00:1::",  # 6to4
    "2002:a9fe:a9fe::1",  # 6to4 to 169.254.169.254, the cloud metadata address
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "fec0::1",  # site-local: deprecated, still routed inside old networks
]


@pytest.mark.parametrize("address", WRAPPED_PRIVATE)
def test_ipv6_addresses_wrapping_a_private_ipv4_are_not_public(address):
    assert not is_public(address)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]
)
def test_public_addresses_and_wrapped_public_ipv4_stay_public(address):
    assert is_public(address)


@pytest.mark.parametrize("host", ["[::127.0.0.1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]"])
def test_a_probe_to_a_wrapped_loopback_address_is_refused(host):
    async def go():
        async with SafeClient(allow_private=False, deadline=2) as client:
            target = ProbeTarget(base_url=f"http://{host}:9", auth_scheme="x-api-key", secret="sk-x", model="m")
            return await run_probe(target, client)

    outcome = asyncio.run(go())
    assert outcome.verdict == "refused", outcome
    assert "PROBE_ALLOW_PRIVATE_IPS" in outcome.error_excerpt
