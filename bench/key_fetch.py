"""The live-key fetch under load: GET /api/v1/device/key against /healthz in the same gunicorn.

    .venv/bin/python -m bench.key_fetch [--databases sqlite,postgresql] [--rounds 3] [--seconds 3]

The key-fetch part of bench.http_load (same server, seed, load generator and targets: key fetch
>= 0.6 x /healthz at concurrency 16 with p99, zero errors at 64 across 1,000 distinct devices, flat
worker memory over 10,000 fetches, no audit row written by a fetch that changes nothing), followed
by where one fetch's time goes, measured in-process on the same database (`--breakdown`, which
http_load also runs). Exit status 1 when a target is missed.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import timedelta

from bench import http_load
from bench._setup import ROOT

# As a helper asks, every few minutes: "last seen" is due on nearly every real fetch.
DUE = "the whole fetch_key() seen 2 minutes ago (one UPDATE, compiled once)"


def where_the_time_goes(raw: str, runs: int = 2000) -> list[tuple[str, float]]:
    """Microseconds per step of one fetch, in-process (no HTTP), median of `runs`."""
    from django.test import Client
    from django.utils import timezone

    from gateways.devices import device_for_fetch, fetch_key
    from gateways.models import Device
    from portal.models import TokenScope, token_lookup, token_matches

    lookup_id = token_lookup(raw, TokenScope.KEY_FETCH)
    device = device_for_fetch(lookup_id)
    client = Client(HTTP_HOST="127.0.0.1")

    def seen_two_minutes_ago() -> None:  # untimed: makes the next fetch's "last seen" due
        Device.objects.filter(pk=device.pk).update(last_seen_at=timezone.now() - timedelta(minutes=2))

    steps = {
        "read the device, its key and owner (one SELECT, compiled once)": lambda: device_for_fetch(lookup_id),
        "the same read compiled by the ORM each time (.only())": lambda: list(
            Device.objects.select_related("key", "user")
            .only("token_digest", "key__secret_ciphertext", "user__is_active")
            .filter(token_lookup_id=lookup_id)[:1]
        ),
        "check the token (SHA-256, constant-time compare)": lambda: token_matches(device.token_digest, raw),
        "open the secret (AES-256-GCM)": lambda: device.key.reveal_secret(),
        "the whole fetch_key() (no write: seen within the minute)": lambda: fetch_key(raw_token=raw, request=None),
        DUE: lambda: fetch_key(raw_token=raw, request=None),
        "GET /api/v1/device/key through Django's middleware": lambda: client.get(
            "/api/v1/device/key", HTTP_AUTHORIZATION=f"Bearer {raw}"
        ),
        "GET /healthz through the same middleware": lambda: client.get("/healthz"),
    }
    timings = []
    for label, step in steps.items():
        fetch_key(raw_token=raw, request=None)  # seen within the minute: the next fetch writes nothing
        samples = []
        for _ in range(runs):
            if label == DUE:
                seen_two_minutes_ago()
            started = time.perf_counter()
            step()
            samples.append(time.perf_counter() - started)
        timings.append((label, statistics.median(samples) * 1e6))
    return timings


def breakdown() -> None:
    """Print where one fetch's time goes, on DATABASE_URL, for the device of BENCH_DEVICE_TOKEN."""
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection

    print(f"  where one key fetch's time goes ({connection.vendor}, in-process, median of 2,000):")
    for label, micros in where_the_time_goes(os.environ["BENCH_DEVICE_TOKEN"]):
        print(f"    {micros:8.0f} µs  {label}")


def main() -> None:
    if sys.argv[1:] == ["--breakdown"]:
        breakdown()
        return
    http_load.main(["--only", "keys", *sys.argv[1:]])


if __name__ == "__main__":
    main()
