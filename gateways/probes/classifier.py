"""The probe classifier: one gateway answer in, a verdict and the guide's advice out.

Pure: status, headers and a bounded body in, (verdict, detail) out; no network, no database.
gateways.probes.probe sends the requests and hands each answer here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from gateways.rules import AuthScheme

# The Claude Code release the probe imitates (what the interactive CLI sends, measured on it).
CLAUDE_CODE_VERSION = "2.1.330"

HINTS = {
    "ok": "The gateway answered like Claude Code expects.",
    "auth_failed": "The gateway refused the key (401). Check that the key is the full secret with its sk- prefix, "
    "copied in one piece from the gateway's console.",
    "forbidden": "The gateway knows the key but refuses it (403): it may be disabled, expired or out of balance, "
    "the model may not be allowed for this key, or an IP restriction may block the request.",
    "client_restricted": "The key is valid but locked to Claude Code: the gateway answered 403 client_validation_error "
    "because it did not take the probe for Claude Code. Claude Code itself should work with this key; check with a "
    f"short prompt in claude. If it fails too, the gateway may want a newer Claude Code than {CLAUDE_CODE_VERSION}.",
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
    "refused": "The portal refused to send this request: the address is private, loopback or link-local, or the "
    "base URL or a custom header cannot travel in an HTTP request. The excerpt says which.",
}
# The bearer guide's own advice for auth trouble: a leftover key is the usual cause.
BEARER_AUTH_HINT = (
    "The gateway refused the Bearer token (401). Check that the key is the full sk- secret. On developers' machines, "
    'ANTHROPIC_API_KEY must be "" (empty): a leftover key is sent too and wins; then /logout once and restart claude.'
)


def _error_message(text: str) -> str:
    """The sentence an error answer carries, wherever the gateway put it; else the text itself."""
    try:
        body = json.loads(text)
    except ValueError:
        return text
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return f"{error.get('type', '')}: {error.get('message', '')}"
        for said in (error, body.get("message"), body.get("detail")):
            if isinstance(said, str):
                return said
    return text


def parse_sse(text: str) -> list[tuple[str, dict[str, Any] | None]]:
    """Server-sent events as (event name, JSON data or None)."""
    events: list[tuple[str, dict[str, Any] | None]] = []
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
    status: int, headers: Mapping[str, str], text: str, *, path: str = "/v1/messages", streamed: bool = True
) -> tuple[str, str]:
    """Turn one answer into (verdict, detail). Pure: no I/O."""
    headers = httpx.Headers(headers)  # header names in any case
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
        # claude-relay-service's answer to a key locked to Claude Code: the key itself was accepted.
        return ("client_restricted" if "client_validation_error" in message else "forbidden"), message
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
    """The guide's advice for a verdict; bearer gateways have their own for auth trouble."""
    if verdict == "auth_failed" and auth_scheme == AuthScheme.BEARER:
        return BEARER_AUTH_HINT
    return HINTS[verdict]
