"""Probe a gateway key the way Claude Code would, and say what is wrong in the guide's words.

Two parts:
- `classify_response()` is pure: status, headers and a bounded body excerpt in, a verdict out.
- `run_probe()` sends the requests through `outbound.SafeClient`, which refuses private
  addresses unless allowed, connects to the address it checked, follows no redirects, reads
  at most a fixed number of bytes and stops at a deadline.

Nothing here touches the database; gateways.probes.runner stores the outcome.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx

from gateways.probes.outbound import OutboundRefused, SafeClient

CLAUDE_CODE_VERSION = "2.1.330"
USER_AGENT = f"claude-cli/{CLAUDE_CODE_VERSION} (external, sdk-cli) gateway-portal-probe"
ANTHROPIC_VERSION = "2023-06-01"
BETAS = "claude-code-20250219,interleaved-thinking-2025-05-14"
CONTEXT_MANAGEMENT_BETA = "context-management-2025-06-27"
CONTEXT_MANAGEMENT = {"edits": [{"type": "clear_tool_uses_20250919"}]}
# What Claude Code asks for when no model is configured (measured on 2.1.330).
CLAUDE_CODE_DEFAULT_MODEL = "claude-opus-5-5"
EXCERPT_BYTES = 300

HINTS = {
    "ok": "The gateway answered like Claude Code expects.",
    "auth_failed": "The gateway refused the key (401). Check that the key is the full secret with its sk- prefix, "
    "copied in one piece from the gateway's console.",
    "forbidden": "The gateway knows the key but refuses it (403): it may be disabled, expired or out of balance, "
    "the model may not be allowed for this key, or an IP restriction may block the request.",
    "model_not_found": "The gateway does not serve this model. Check the model id and its spelling (TokenBay wants "
    "dotted versions like claude-sonnet-4.6), or pick a model the gateway lists.",
    "wrong_base_url": "The base URL does not lead to a Messages API. Use the gateway's API root, without /v1: "
    "Claude Code appends /v1/messages itself.",
    "betas_rejected": "The gateway rejects Claude Code's experimental context_management field (400 Extra inputs "
    "are not permitted). Set CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS=1; the key is not the problem.",
    "bad_request": "The gateway rejected the request (400). Read the excerpt: it names the field it does not accept.",
    "rate_limited": "The gateway is rate-limiting this key (429). Wait, or ask the gateway for a higher limit.",
    "gateway_error": "The gateway failed on its side (5xx). Try again later; if it lasts, contact the gateway.",
    "timeout": "The gateway did not answer within the probe's time limits (PROBE_READ_TIMEOUT, PROBE_DEADLINE). "
    "It may be down or overloaded: check its status page. If it is only slow, the portal's operator can raise "
    "those two limits.",
    "unreachable": "The gateway cannot be reached: the host name does not resolve or the connection is refused. "
    "Check the base URL.",
    "tls_error": "The TLS connection failed: the gateway's certificate is not valid for this host name.",
    "bad_response": "The gateway answered 200 but not with a Messages answer Claude Code can use.",
    "refused": "The portal refused to contact this address: it is private, loopback or link-local.",
}
# The bearer guide's own advice for auth trouble: a leftover key is the usual cause.
BEARER_AUTH_HINT = (
    "The gateway refused the Bearer token (401). Check that the key is the full sk- secret. On developers' machines, "
    'ANTHROPIC_API_KEY must be "" (empty): a leftover key is sent too and wins; then /logout once and restart claude.'
)


@dataclass(frozen=True)
class ProbeTarget:
    base_url: str
    auth_scheme: str
    secret: str = field(repr=False)
    model: str
    prompt: str = "Reply with the single word: pong"
    mode: str = "inference"  # or "reachability"
    stream: bool = True
    send_context_management: bool = True
    alias_models: dict[str, str] = field(default_factory=dict)
    custom_headers: dict[str, str] = field(default_factory=dict)
    max_tokens: int = 16
    # Retry without context_management when a gateway rejects it (and let the runner switch the
    # key's configs to CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS=1). Off: report betas_rejected as is.
    retry_without_betas: bool = True


@dataclass
class ProbeOutcome:
    verdict: str
    status_code: int | None = None
    ttfb_ms: int | None = None
    latency_ms: int | None = None
    model: str = ""
    hint: str = ""
    warning: str = ""
    error_excerpt: str = ""
    kind: str = "inference"
    details: dict = field(default_factory=dict)
    betas_fixed: bool = False  # context_management was rejected and the retry without it worked


@dataclass(frozen=True)
class Answer:
    """What came back from one request, already bounded."""

    status: int
    headers: httpx.Headers
    body: bytes
    ttfb_ms: int
    latency_ms: int
    truncated: bool = False

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def auth_headers(auth_scheme: str, secret: str) -> dict[str, str]:
    """The header Claude Code sends: x-api-key, or Bearer with no x-api-key at all."""
    if auth_scheme == "bearer":
        return {"authorization": f"Bearer {secret}"}
    return {"x-api-key": secret}


def excerpt(text: str, secret: str = "") -> str:
    """A short, single-line piece of an answer, with the secret blanked should a gateway echo it."""
    if secret:
        text = text.replace(secret, "[secret]")
    return " ".join(text.split())[:EXCERPT_BYTES]


def _error_message(text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return text
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return f"{error.get('type', '')}: {error.get('message', '')}"
        if isinstance(error, str):
            return error
        if isinstance(body.get("message"), str):
            return body["message"]
        if isinstance(body.get("detail"), str):
            return body["detail"]
    return text


def parse_sse(text: str) -> list[tuple[str, dict | None]]:
    """Server-sent events as (event name, JSON data or None)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data_lines = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data_lines.append(line[5:].strip())
        if not data_lines and name == "message":
            continue
        try:
            data = json.loads("\n".join(data_lines)) if data_lines else None
        except ValueError:
            data = None
        events.append((name, data))
    return events


def _looks_like_model_problem(message: str) -> bool:
    lowered = message.lower()
    return "model" in lowered and any(
        w in lowered for w in ("not found", "not exist", "unknown", "invalid", "not supported", "unsupported")
    )


def classify_response(
    status: int, headers: httpx.Headers | dict, text: str, *, path: str = "/v1/messages", streamed: bool = True
) -> tuple[str, str]:
    """Turn one answer into (verdict, detail). Pure: no I/O."""
    headers = httpx.Headers(headers)
    content_type = headers.get("content-type", "").lower()
    message = _error_message(text)
    if "/v1/v1/" in path:
        return "wrong_base_url", "The request path has /v1 twice: the base URL must not end in /v1."
    if 300 <= status < 400:
        location = headers.get("location", "")
        return (
            "wrong_base_url",
            f"The gateway redirects ({status}) to {location or 'another address'}; use the address it points to as the base URL.",
        )
    if status == 401:
        return "auth_failed", message
    if status == 403:
        return "forbidden", message
    if status == 404:
        if _looks_like_model_problem(message):
            return "model_not_found", message
        return "wrong_base_url", f"{path} was not found (404)."
    if status == 400:
        if "context_management" in message and "extra inputs" in message.lower():
            return "betas_rejected", message
        if _looks_like_model_problem(message):
            return "model_not_found", message
        return "bad_request", message
    if status == 429:
        retry = headers.get("retry-after")
        return "rate_limited", f"Retry after {retry} s." if retry else message
    if status >= 500:
        return "gateway_error", message
    if status != 200:
        return "bad_request", message
    if "text/html" in content_type or text.lstrip()[:15].lower().startswith(("<!doctype", "<html")):
        return "wrong_base_url", "The gateway answered with a web page, not the API: the base URL points at a website."
    if streamed and "text/event-stream" in content_type:
        return _classify_stream(text)
    try:
        body = json.loads(text)
    except ValueError:
        return "bad_response", "The 200 answer is not JSON."
    if isinstance(body, dict) and body.get("error"):
        verdict = "model_not_found" if _looks_like_model_problem(_error_message(text)) else "bad_response"
        return verdict, f"The 200 answer carries an error: {_error_message(text)}"
    if not isinstance(body, dict) or body.get("type") != "message" or not isinstance(body.get("content"), list):
        return "bad_response", "The 200 answer is not a Messages answer (no type=message with content)."
    return "ok", ""


def _classify_stream(text: str) -> tuple[str, str]:
    events = parse_sse(text)
    names = [name for name, _ in events]
    for name, data in events:
        if name == "error" or (isinstance(data, dict) and data.get("type") == "error"):
            error = (data or {}).get("error", {}) if isinstance(data, dict) else {}
            message = f"{error.get('type', '')}: {error.get('message', '')}" if isinstance(error, dict) else str(error)
            if "overloaded" in message or "api_error" in message:
                return "gateway_error", f"The stream carried an error: {message}"
            if _looks_like_model_problem(message):
                return "model_not_found", f"The stream carried an error: {message}"
            return "bad_response", f"The stream carried an error: {message}"
    if "message_start" not in names:
        return "bad_response", "The stream has no message_start event: it is not a Messages stream."
    has_content = any(
        name == "content_block_delta" or (name == "content_block_start" and isinstance(data, dict))
        for name, data in events
    )
    if not has_content:
        return "bad_response", "The stream has no content: the gateway sent no text."
    if "message_stop" not in names:
        return "bad_response", "The stream stopped before message_stop: the gateway cut the answer short."
    return "ok", ""


def hint_for(verdict: str, auth_scheme: str) -> str:
    if verdict == "auth_failed" and auth_scheme == "bearer":
        return BEARER_AUTH_HINT
    return HINTS[verdict]


def _messages_body(target: ProbeTarget, model: str, *, context_management: bool, stream: bool, max_tokens: int) -> dict:
    body = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": target.prompt}],
        "stream": stream,
    }
    if context_management:
        body["context_management"] = CONTEXT_MANAGEMENT
    return body


def _headers(target: ProbeTarget, *, context_management: bool) -> dict[str, str]:
    betas = BETAS + (f",{CONTEXT_MANAGEMENT_BETA}" if context_management else "")
    return {
        **target.custom_headers,
        "anthropic-version": ANTHROPIC_VERSION,
        "anthropic-beta": betas,
        "user-agent": USER_AGENT,
        "content-type": "application/json",
        "accept": "text/event-stream" if target.stream else "application/json",
        **auth_headers(target.auth_scheme, target.secret),
    }


async def _send(client: SafeClient, method: str, url: str, **kwargs) -> Answer:
    started = time.perf_counter()
    async with client.stream(method, url, **kwargs) as response:
        ttfb = int((time.perf_counter() - started) * 1000)
        body = bytearray()
        truncated = False
        # Decoded bytes: gateways behind a CDN often gzip their answers. The limit applies after
        # decoding, so a small compressed body cannot unpack into an unbounded one.
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= client.max_bytes:
                truncated = True
                del body[client.max_bytes :]
                break
    latency = int((time.perf_counter() - started) * 1000)
    return Answer(response.status_code, response.headers, bytes(body), ttfb, latency, truncated)


def _failure(exc: Exception) -> tuple[str, str]:
    """A transport failure as (verdict, detail); anything that is not one is re-raised."""
    if isinstance(exc, OutboundRefused):
        return "refused", str(exc)
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return "timeout", "No complete answer before the deadline."
    if isinstance(exc, httpx.ConnectError):
        text = str(exc)
        if "ssl" in text.lower() or "certificate" in text.lower():
            return "tls_error", text[:200]
        return "unreachable", text[:200] or "Connection refused."
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return "bad_response", f"The connection broke off mid-answer ({type(exc).__name__})."
    if isinstance(exc, httpx.HTTPError):
        return "unreachable", f"{type(exc).__name__}: {str(exc)[:200]}"
    raise exc


async def _call(client: SafeClient, method: str, url: str, deadline: float, **kwargs) -> Answer | tuple[str, str]:
    try:
        async with asyncio.timeout(deadline):
            return await _send(client, method, url, **kwargs)
    except Exception as exc:  # classified below; anything unexpected is re-raised by _failure
        return _failure(exc)


def alias_models(env: dict[str, str]) -> dict[str, str]:
    """The models Claude Code's opus, sonnet and haiku aliases stand for in this environment."""
    return {
        "opus": env.get("ANTHROPIC_DEFAULT_OPUS_MODEL", ""),
        "sonnet": env.get("ANTHROPIC_DEFAULT_SONNET_MODEL", ""),
        "haiku": env.get("ANTHROPIC_DEFAULT_HAIKU_MODEL", ""),
    }


def resolve_model(env: dict[str, str], probe_model: str = "") -> str:
    """The model id Claude Code would send: aliases resolve through ANTHROPIC_DEFAULT_*_MODEL."""
    model = probe_model or env.get("ANTHROPIC_MODEL", "")
    aliases = alias_models(env)
    if model in aliases:
        return aliases[model] or model
    return model or CLAUDE_CODE_DEFAULT_MODEL


async def run_probe(target: ProbeTarget, client: SafeClient, models_cache: dict | None = None) -> ProbeOutcome:
    """Probe one key: one message (or reachability check), the betas retry, then the model aliases.

    `models_cache` lets a batch of probes list each gateway's models once instead of once per key.
    """
    url = f"{target.base_url}/v1/messages"
    if target.mode == "reachability":
        return await _reachability(target, client)
    outcome = await _message(target, client, url, context_management=target.send_context_management)
    if outcome.verdict == "betas_rejected" and target.retry_without_betas:
        retry = await _message(target, client, url, context_management=False)
        if retry.verdict == "ok":
            retry.warning = (
                "The gateway rejects context_management; without it the key works. "
                "Configs now set CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS=1."
            )
            retry.betas_fixed = True
            retry.details["first_attempt"] = {"verdict": outcome.verdict, "excerpt": outcome.error_excerpt}
        outcome = retry
    if outcome.verdict == "ok":
        await _check_models(target, client, outcome, {} if models_cache is None else models_cache)
    return outcome


async def _message(target: ProbeTarget, client: SafeClient, url: str, *, context_management: bool) -> ProbeOutcome:
    body = _messages_body(
        target, target.model, context_management=context_management, stream=target.stream, max_tokens=target.max_tokens
    )
    answer = await _call(
        client, "POST", url, client.deadline, json=body, headers=_headers(target, context_management=context_management)
    )
    return _outcome(target, answer, path=httpx.URL(url).path, streamed=target.stream)


def _outcome(target: ProbeTarget, answer, *, path: str, streamed: bool, kind: str = "inference") -> ProbeOutcome:
    if isinstance(answer, tuple):
        verdict, detail = answer
        return ProbeOutcome(
            verdict,
            model=target.model,
            hint=hint_for(verdict, target.auth_scheme),
            error_excerpt=excerpt(detail, target.secret),
            kind=kind,
        )
    verdict, detail = classify_response(answer.status, answer.headers, answer.text, path=path, streamed=streamed)
    if answer.truncated and verdict == "ok":
        verdict, detail = (
            "bad_response",
            f"The answer was larger than {len(answer.body)} bytes; the probe stopped reading.",
        )
    elif answer.truncated and verdict == "bad_response":
        detail = f"The answer was cut at {len(answer.body)} bytes. {detail}"
    outcome = ProbeOutcome(
        verdict,
        status_code=answer.status,
        ttfb_ms=answer.ttfb_ms,
        latency_ms=answer.latency_ms,
        model=target.model,
        hint=hint_for(verdict, target.auth_scheme),
        error_excerpt=excerpt(detail if verdict != "ok" else "", target.secret) if verdict != "ok" else "",
        kind=kind,
    )
    if verdict != "ok" and answer.text and detail != answer.text:
        outcome.details["body"] = excerpt(answer.text, target.secret)
    return outcome


async def _reachability(target: ProbeTarget, client: SafeClient) -> ProbeOutcome:
    """No message is sent: list models, or post an empty body that a gateway must reject after checking auth."""
    headers = _headers(target, context_management=False)
    answer = await _call(client, "GET", f"{target.base_url}/v1/models", client.deadline, headers=headers)
    if not isinstance(answer, tuple) and answer.status == 200 and "json" in answer.headers.get("content-type", ""):
        outcome = ProbeOutcome(
            "ok", answer.status, answer.ttfb_ms, answer.latency_ms, target.model, kind="reachability"
        )
        outcome.details["models"] = _model_ids(answer.text)[:50]
    elif not isinstance(answer, tuple) and answer.status in (401, 403):
        outcome = _outcome(target, answer, path="/v1/models", streamed=False, kind="reachability")
    else:
        answer = await _call(
            client, "POST", f"{target.base_url}/v1/messages", client.deadline, json={}, headers=headers
        )
        if not isinstance(answer, tuple) and answer.status == 400:
            outcome = ProbeOutcome(
                "ok", answer.status, answer.ttfb_ms, answer.latency_ms, target.model, kind="reachability"
            )
        else:
            outcome = _outcome(target, answer, path="/v1/messages", streamed=False, kind="reachability")
    outcome.hint = outcome.hint or hint_for(outcome.verdict, target.auth_scheme)
    if outcome.verdict == "ok":
        outcome.warning = (
            "Reachability and auth only: this gateway opted out of inference probes, so models were not tried."
        )
    return outcome


def _model_ids(text: str) -> list[str]:
    try:
        data = json.loads(text).get("data", [])
        return [str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id")]
    except (ValueError, AttributeError):
        return []


async def _gateway_models(target: ProbeTarget, client: SafeClient, cache: dict) -> list[str]:
    """The gateway's model ids from GET /v1/models, or [] where it offers none; asked once per cache."""
    if target.base_url not in cache:
        request = _call(
            client,
            "GET",
            f"{target.base_url}/v1/models?limit=1000",
            client.deadline,
            headers=_headers(target, context_management=False),
        )
        cache[target.base_url] = asyncio.ensure_future(request)
    answer = await asyncio.shield(cache[target.base_url])
    return _model_ids(answer.text) if not isinstance(answer, tuple) and answer.status == 200 else []


async def _check_models(target: ProbeTarget, client: SafeClient, outcome: ProbeOutcome, cache: dict) -> None:
    """Report configured aliases the gateway does not serve; list its models where it offers them."""
    aliases = {alias: model for alias, model in target.alias_models.items() if model}
    listed = await _gateway_models(target, client, cache)
    if listed:
        outcome.details["models"] = listed[:50]
        missing = {alias: model for alias, model in aliases.items() if model not in listed}
    else:
        missing = {}
        for alias, model in aliases.items():
            if model == target.model:
                continue
            body = _messages_body(target, model, context_management=False, stream=False, max_tokens=1)
            reply = await _call(
                client,
                "POST",
                f"{target.base_url}/v1/messages",
                client.deadline,
                json=body,
                headers=_headers(target, context_management=False),
            )
            if not isinstance(reply, tuple):
                verdict, _ = classify_response(reply.status, reply.headers, reply.text, streamed=False)
                if verdict == "model_not_found":
                    missing[alias] = model
    if missing:
        outcome.details["missing_models"] = missing
        names = ", ".join(f"{alias} ({model})" for alias, model in missing.items())
        note = f"The gateway does not serve these configured models: {names}."
        outcome.warning = f"{outcome.warning} {note}".strip()
