"""Probe fan-out: 1,000 keys against the emulator answering after 200 ms, at concurrency 100.

Prints wall time divided by the ideal ceil(keys / concurrency) x 0.2 s (target: <= 1.3), and
the memory the fan-out holds per key at two sizes: flat means memory does not grow with the
number of keys beyond the results themselves.

    .venv/bin/python -m bench.probe_fanout [--keys 1000] [--concurrency 100]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import subprocess
import sys
import time
import tracemalloc

from bench._setup import ROOT, django_on

DELAY = 0.2


def make_keys(count: int, base_url: str):
    from django.contrib.auth import get_user_model

    from gateways.models import Gateway, GatewayKey
    from gateways.rules import AuthScheme
    from portal.models import Team

    user = get_user_model().objects.create_user(f"bench{count}")
    team = Team.objects.create(name=f"Bench {count}", slug=f"bench-{count}")
    gateway = Gateway.objects.create(
        slug=f"emulator-{count}", name="Emulator", base_url=base_url, auth_scheme=AuthScheme.X_API_KEY
    )
    keys = []
    for i in range(count):
        key = GatewayKey(team=team, gateway=gateway, label=f"key {i}", created_by=user)
        key.set_secret(f"sk-bench-{count}-{i:06d}")
        keys.append(key)
    GatewayKey.objects.bulk_create(keys, batch_size=500)
    return list(GatewayKey.objects.filter(team=team).select_related("gateway", "team"))


def fan_out(keys, concurrency: int, *, trace_memory: bool = False) -> tuple[float, int, list]:
    from gateways.probes.runner import probe_keys_async

    if trace_memory:  # tracemalloc slows Python down: memory runs are not timed
        tracemalloc.start()
    started = time.perf_counter()
    outcomes = asyncio.run(probe_keys_async(keys, concurrency=concurrency))
    wall = time.perf_counter() - started
    peak = 0
    if trace_memory:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return wall, peak, outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    django_on()
    # The gateway is another machine: the emulator runs in its own process, so its threads
    # do not share this interpreter with the probes being measured.
    emulator = subprocess.Popen(
        [sys.executable, "-m", "tests.gateway_emulator", "--delay", str(DELAY), "--any-key"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = emulator.stdout.readline().strip()
        small_keys = make_keys(args.keys // 4, base_url)
        keys = make_keys(args.keys, base_url)
        fan_out(keys[: args.concurrency], args.concurrency)  # warm-up: imports, first connections
        wall, _, outcomes = fan_out(keys, args.concurrency)
        _, small_peak, _ = fan_out(small_keys, args.concurrency, trace_memory=True)
        _, peak, _ = fan_out(keys, args.concurrency, trace_memory=True)
    finally:
        emulator.terminate()
    verdicts = sorted({o.verdict for _, o in outcomes})

    from gateways.probes.runner import save_outcome

    started = time.perf_counter()
    for key, outcome in outcomes:
        save_outcome(key, outcome, trigger="bench")
    saving = time.perf_counter() - started

    ideal = math.ceil(args.keys / args.concurrency) * DELAY
    print(f"keys={args.keys} concurrency={args.concurrency} verdicts={verdicts}")
    print(f"fan-out wall {wall:.2f} s, ideal {ideal:.2f} s, ratio {wall / ideal:.2f} (target <= 1.3)")
    print(f"storing {len(outcomes)} results with their audit events: {saving:.2f} s")
    per_small = small_peak / (args.keys // 4)
    per_large = peak / args.keys
    print(
        f"peak memory per key: {per_small / 1024:.1f} KiB at {args.keys // 4} keys, {per_large / 1024:.1f} KiB at "
        f"{args.keys} keys, ratio {per_large / per_small:.2f} (<= 1.0: no growth beyond the results)"
    )


if __name__ == "__main__":
    main()
