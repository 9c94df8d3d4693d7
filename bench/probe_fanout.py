"""Probe fan-out: the whole `manage.py probe` over 1,000 keys, saves included, against a gateway answering in 200 ms.

For each database (a fresh SQLite file, a fresh PostgreSQL database), rounds interleave the
command (`call_command("probe", "--concurrency", "100")`: the key query, the fan-out, the results,
key updates and audit events saved, the table printed) with a bare asyncio reference that sends
the same 1,000 streamed requests to the same emulator at the same concurrency and does nothing else.
Both are divided by the ideal ceil(keys / concurrency) x 0.2 s; min / median / max over the rounds.
The command runs as configured (PROBE_PROCESSES: its probes shared by a process per core); each
round also times it with its probes in a thread of its own (PROBE_PROCESSES=0), for comparison.

Memory: the peak the command allocates (tracemalloc, probes in a thread so that it sees them) for
250, 1,000 and 4,000 keys; the growth per key from one size to the next must stay under
PER_KEY_LIMIT_KIB and must not grow with the size.

    .venv/bin/python -m bench.probe_fanout [--databases sqlite,postgresql] [--keys 1000] [--rounds 3]

Targets: command <= 1.3 x ideal (median); memory per key bounded and flat.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import os
import ssl
import statistics
import subprocess
import sys
import time
import tracemalloc

from bench._setup import ROOT, database_kinds, django_on, machine, postgres_url_default, scratch_database, spread

DELAY = 0.2
TARGET = 1.3
MEMORY_SIZES = (250, 1000, 4000)
# What one probed key may add to the command's peak: its key, outcome, result row, audit event and
# table line (a few KiB). A copy of each answer's body (up to PROBE_MAX_BYTES) or a leak shows as more.
PER_KEY_LIMIT_KIB = 24
FLAT_TOLERANCE = 1.25  # growth per key from 1,000 to 4,000 at most this times that from 250 to 1,000


def make_keys(count: int, base_url: str, slug: str) -> None:
    from django.contrib.auth import get_user_model

    from gateways.models import Gateway, GatewayKey
    from gateways.rules import AuthScheme
    from portal.models import Team

    user = get_user_model().objects.get_or_create(username="bench")[0]
    team = Team.objects.create(name=f"Bench {slug}", slug=slug)
    gateway = Gateway.objects.get_or_create(
        slug="emulator", defaults={"name": "Emulator", "base_url": base_url, "auth_scheme": AuthScheme.X_API_KEY}
    )[0]
    keys = []
    for i in range(count):
        key = GatewayKey(team=team, gateway=gateway, label=f"key {i:05d}", created_by=user)
        key.set_secret(f"sk-bench-{slug}-{i:06d}-0123456789")
        keys.append(key)
    GatewayKey.objects.bulk_create(keys, batch_size=500)


def run_command(team: str, concurrency: int, *, all_ok: bool = True) -> float:
    """Wall time of `manage.py probe --team TEAM`; timed runs need every key to come back ok."""
    from django.core.management import call_command

    out = io.StringIO()
    started = time.perf_counter()
    try:
        call_command("probe", "--team", team, "--concurrency", str(concurrency), stdout=out, stderr=io.StringIO())
    except SystemExit:
        if all_ok:
            failing = [line for line in out.getvalue().splitlines() if " ok " not in line][:5]
            raise SystemExit(f"the probe command found failing keys: {failing}") from None
    return time.perf_counter() - started


async def bare_reference(count: int, concurrency: int, base_url: str) -> None:
    """The same streamed requests with httpx and asyncio alone: no database, no keys, no classification."""
    import httpx

    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Reply with the single word: pong"}],
        "stream": True,
    }
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)
    context = ssl.create_default_context()  # made once: loading the CA store costs more than a request

    async def worker() -> None:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=2), verify=context) as client:
            while not queue.empty():
                n = queue.get_nowait()
                headers = {"x-api-key": f"sk-reference-{n}", "anthropic-version": "2023-06-01"}
                async with client.stream("POST", f"{base_url}/v1/messages", json=body, headers=headers) as answer:
                    async for _ in answer.aiter_bytes():
                        pass
                    assert answer.status_code == 200, answer.status_code

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))


def timed_reference(count: int, concurrency: int, base_url: str) -> float:
    started = time.perf_counter()
    asyncio.run(bare_reference(count, concurrency, base_url))
    return time.perf_counter() - started


def peak_kib(team: str, concurrency: int) -> float:
    """The most memory the command held at once beyond what was held before it (tracemalloc, untimed).

    tracemalloc sees one process, so the probes run in a thread of this one (PROBE_PROCESSES=0):
    the same fan-out code as in the child processes of a timed run, its memory counted with the saves'.
    """
    from django.test import override_settings

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    with override_settings(PROBE_PROCESSES=0):
        run_command(team, concurrency, all_ok=False)  # tracemalloc slows Python down: a probe may time out
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - before) / 1024


def one_database(args) -> bool:
    django_on()
    from django.conf import settings
    from django.db import connection
    from django.test import override_settings

    from gateways.probes.runner import probe_processes

    emulator = subprocess.Popen(
        [sys.executable, "-m", "tests.gateway_emulator", "--delay", str(DELAY), "--any-key"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = emulator.stdout.readline().strip()
        for size in {args.keys, *MEMORY_SIZES, args.concurrency}:
            make_keys(size, base_url, f"bench-{size}")
        run_command(f"bench-{args.concurrency}", args.concurrency)  # warm-up: imports, connections, caches
        timed_reference(args.concurrency, args.concurrency, base_url)
        ideal = math.ceil(args.keys / args.concurrency) * DELAY
        portal, in_thread, reference = [], [], []
        for _ in range(args.rounds):
            portal.append(run_command(f"bench-{args.keys}", args.concurrency) / ideal)
            reference.append(timed_reference(args.keys, args.concurrency, base_url) / ideal)
            with override_settings(PROBE_PROCESSES=0):
                in_thread.append(run_command(f"bench-{args.keys}", args.concurrency) / ideal)
        peaks = {size: peak_kib(f"bench-{size}", args.concurrency) for size in MEMORY_SIZES}
    finally:
        emulator.terminate()
    ratio = [p / r for p, r in zip(portal, reference, strict=True)]
    passed = statistics.median(portal) <= TARGET
    print(
        f"== {connection.vendor}: {args.keys} keys, concurrency {args.concurrency}, ideal {ideal:.1f} s, {args.rounds} rounds; "
        f"probes in {probe_processes(args.keys, args.concurrency)} processes (PROBE_PROCESSES={settings.PROBE_PROCESSES})"
    )
    print(f"  manage.py probe / ideal      {spread(portal)}   target <= {TARGET}  {'PASS' if passed else 'FAIL'}")
    print(f"  bare asyncio / ideal         {spread(reference)}")
    print(f"  probes in a thread / ideal   {spread(in_thread)}   (PROBE_PROCESSES=0)")
    print(f"  manage.py probe / bare       {spread(ratio)}")
    small, middle, large = MEMORY_SIZES
    first = (peaks[middle] - peaks[small]) / (middle - small)
    second = (peaks[large] - peaks[middle]) / (large - middle)
    flat = second <= max(first, 1.0) * FLAT_TOLERANCE and max(first, second) <= PER_KEY_LIMIT_KIB
    print(
        f"  peak memory (KiB)            {', '.join(f'{s} keys {peaks[s]:,.0f}' for s in MEMORY_SIZES)}; per key "
        f"{small}→{middle}: {first:.1f}, {middle}→{large}: {second:.1f}   "
        f"target <= {PER_KEY_LIMIT_KIB} and not growing  {'PASS' if flat else 'FAIL'}"
    )
    return passed and flat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=postgres_url_default())
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # run on DATABASE_URL in this process
    args = parser.parse_args()
    if args.one:
        raise SystemExit(0 if one_database(args) else 1)
    print(machine())
    ok = True
    for kind in database_kinds(args.databases):
        # Django binds to one database per process: each runs in its own, on a scratch database.
        with scratch_database(kind, args.postgres_url) as env:
            flags = ["--keys", str(args.keys), "--concurrency", str(args.concurrency), "--rounds", str(args.rounds)]
            command = [sys.executable, "-m", "bench.probe_fanout", "--one", *flags]
            ok &= subprocess.run(command, cwd=ROOT, env={**os.environ, **env}).returncode == 0
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
