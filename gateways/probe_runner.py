"""Run probes for stored keys and record what they found.

The network part (gateways.probe) knows nothing of the database; this module turns keys into
probe targets, runs them (one, or many concurrently with a bound), and stores each outcome
with its audit event. A probe that finds the gateway rejecting `context_management` switches
the key's configs to CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS=1, and says so in the audit trail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from gateways.config import build_config
from gateways.models import GatewayKey, ProbeResult
from gateways.outbound import SafeClient
from gateways.probe import ProbeOutcome, ProbeTarget, hint_for, resolve_model, run_probe
from portal import audit
from portal.crypto import DecryptionError
from portal.models import Action


@sensitive_variables("secret", "config")
def target_for(key: GatewayKey, *, stream: bool = True) -> ProbeTarget:
    gateway = key.gateway
    secret = key.reveal_secret()
    config = build_config(gateway, key, secret)
    env = config.env
    return ProbeTarget(
        base_url=gateway.base_url,
        auth_scheme=gateway.auth_scheme,
        secret=secret,
        model=resolve_model(env, gateway.probe_model),
        prompt=gateway.probe_prompt,
        mode=gateway.probe_mode,
        stream=stream,
        send_context_management=env.get("CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS") != "1",
        alias_models={
            "opus": env.get("ANTHROPIC_DEFAULT_OPUS_MODEL", ""),
            "sonnet": env.get("ANTHROPIC_DEFAULT_SONNET_MODEL", ""),
            "haiku": env.get("ANTHROPIC_DEFAULT_HAIKU_MODEL", ""),
        },
        custom_headers=dict(key.custom_headers or {}),
    )


def _unusable_outcome(key: GatewayKey, reason: str) -> ProbeOutcome:
    return ProbeOutcome("refused", hint=reason, kind=key.gateway.probe_mode)


async def _probe_one(key: GatewayKey, client: SafeClient, stream: bool) -> ProbeOutcome:
    if not key.is_usable:
        return _unusable_outcome(key, f"The key is {key.state}; the portal does not probe it.")
    try:
        target = target_for(key, stream=stream)
    except DecryptionError as exc:
        return _unusable_outcome(key, str(exc))
    outcome = await run_probe(target, client)
    outcome.hint = outcome.hint or hint_for(outcome.verdict, key.gateway.auth_scheme)
    return outcome


async def probe_keys_async(
    keys: Iterable[GatewayKey],
    *,
    concurrency: int = 20,
    stream: bool = True,
    on_done: Callable[[GatewayKey, ProbeOutcome], None] | None = None,
    client: SafeClient | None = None,
) -> list[tuple[GatewayKey, ProbeOutcome]]:
    """Probe keys with at most `concurrency` in flight; results come back in the keys' order."""
    semaphore = asyncio.Semaphore(concurrency)
    owned = client is None
    client = client or SafeClient(max_connections=concurrency)

    async def one(key: GatewayKey) -> tuple[GatewayKey, ProbeOutcome]:
        async with semaphore:
            outcome = await _probe_one(key, client, stream)
        if on_done:
            on_done(key, outcome)
        return key, outcome

    try:
        return await asyncio.gather(*(one(key) for key in keys))
    finally:
        if owned:
            await client.__aexit__(None, None, None)


@transaction.atomic
def save_outcome(
    key: GatewayKey, outcome: ProbeOutcome, *, trigger: str, user=None, request: HttpRequest | None = None
) -> ProbeResult:
    result = ProbeResult.objects.create(
        key=key,
        gateway=key.gateway,
        verdict=outcome.verdict,
        status_code=outcome.status_code,
        ttfb_ms=outcome.ttfb_ms,
        latency_ms=outcome.latency_ms,
        model=outcome.model,
        hint=outcome.hint,
        warning=outcome.warning,
        error_excerpt=outcome.error_excerpt,
        kind=outcome.kind,
        trigger=trigger,
        started_by=user if user and user.is_authenticated else None,
        details=outcome.details,
    )
    now = timezone.now()
    updates = {"last_probe_verdict": outcome.verdict, "last_probe_at": now}
    if outcome.betas_fixed and key.disable_experimental_betas is not True:
        updates.update(disable_experimental_betas=True, config_changed_at=now)
        audit.record(
            Action.PROBE_CHANGED_SETTING,
            actor=user,
            request=request,
            team=key.team,
            gateway_slug=key.gateway.slug,
            target=key.short_fingerprint,
            details={"setting": "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS", "to": "1", "probe": result.pk},
        )
    GatewayKey.objects.filter(pk=key.pk).update(**updates)
    for name, value in updates.items():
        setattr(key, name, value)
    audit.record(
        Action.PROBE_RUN,
        actor=user,
        request=request,
        team=key.team,
        gateway_slug=key.gateway.slug,
        target=key.short_fingerprint,
        details={"verdict": outcome.verdict, "status": outcome.status_code, "trigger": trigger, "probe": result.pk},
    )
    return result


def probe_key(
    key: GatewayKey, *, trigger: str, user=None, request: HttpRequest | None = None, stream: bool = True
) -> ProbeResult:
    """Probe one key now and store the result (used by the web page and the API)."""
    [(key, outcome)] = asyncio.run(probe_keys_async([key], concurrency=1, stream=stream))
    return save_outcome(key, outcome, trigger=trigger, user=user, request=request)
