"""The probe classifier: one gateway answer in, a verdict and the guide's advice out.

Pure: status, headers and a bounded body in, (verdict, detail) out; no network, no database.
gateways.probes.probe sends the requests and hands each answer here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from gateways.rules import AuthScheme

# The Claude Code release the probe imitates (what the interactive CLI sends, measured on it).
CLAUDE_CODE_VERSION = "2.1.330"

HINTS = {
    "ok": "The gateway answered like Claude Code expects.",
    # The x-api-key guide's (Tokaify's) whole advice for a 401 or 403; New API answers 401 for a token that
    # is disabled, expired or out of quota, not only for a wrong one.
    "auth_failed": "The gateway refused the key (401). Check that the key is the full secret with its sk- prefix, "
    "copied in one piece from the gateway's console; whether the key is disabled, expired or out of balance (or "
    "quota) on the gateway; whether the model is allowed for this key; and whether an IP restriction blocks the "
    "request.",
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
    "tls_error": "The TLS connection failed: the gateway's certificate may come from an authority the portal "
    "does not trust, have expired, or name another host, or the address may not speak TLS at all. The excerpt "
    "says which.",
    "bad_response": "The gateway answered 200 but not with a Messages answer Claude Code can use.",
    "refused": "The portal refused to send this request: the address is private, loopback or link-local, or the "
    "base URL or a custom header cannot travel in an HTTP request. The excerpt says which.",
}
# TLS failures told apart by the words of the TLS library's error; the first match wins, else HINTS["tls_error"].
TLS_HINTS = (
    (
        ("unable to get local issuer", "self-signed", "self signed", "unable to verify the first"),
        "The TLS connection failed: the gateway's certificate comes from an authority the portal does not trust "
        "(self-signed, or a company's private CA). Check that the base URL is the gateway's public address; if the "
        "private CA is right, the portal's operator can trust it by setting SSL_CERT_FILE to a PEM bundle that holds "
        "it and the public authorities.",
    ),
    (
        ("certificate has expired", "certificate is not yet valid"),
        "The TLS connection failed: the gateway's certificate has expired (or is not yet valid). The gateway must "
        "renew it; if it looks current, check the portal server's clock.",
    ),
    (
        ("hostname mismatch", "ip address mismatch", "not valid for"),
        "The TLS connection failed: the gateway's certificate is not valid for this host name. Use the host name "
        "the gateway documents, not an IP address or another alias.",
    ),
    (
        ("wrong version number", "record layer failure", "packet length too long", "unknown protocol", "http request"),
        "The TLS connection failed: the address does not speak TLS; it probably serves plain HTTP on this port. "
        "Check the base URL's scheme (https://) and port.",
    ),
)
# A Bearer gateway's 401 to the probe: the probe sent the key alone as Bearer, so no leftover key caused it and the
# gateway-side causes come first (the x-api-key guide's list); the bearer guide's laptop advice follows, for a
# developer who still gets 401 once the probe passes.
BEARER_AUTH_HINT = (
    "The gateway refused the key (401). The probe sent it alone as Bearer, so check the gateway first: that the key "
    "is the full secret with its sk- prefix, copied in one piece from the gateway's console; whether the key is "
    "disabled, expired or out of balance (or quota) on the gateway; whether the model is allowed for this key; and "
    "whether an IP restriction blocks the request. If the probe passes but a developer still gets 401, on their "
    'machine ANTHROPIC_API_KEY must be "" (empty): a leftover key is sent too and wins; then /logout once and '
    "restart claude."
)
# An answer that blames the key's balance, credit or quota, whatever its 4xx status: Anthropic's 400 "Your credit
# balance is too low…", New API's 401 "该令牌额度已用尽" (its token exhausted), 403 pre_consume_token_quota_failed
# ("token quota is not enough", "令牌额度不足"), 402 insufficient_user_quota, OpenAI's 429 insufficient_quota.
BALANCE_WORDS = (
    "credit balance",
    "balance is too low",
    "insufficient balance",
    "insufficient_quota",
    "insufficient quota",
    "insufficient_user_quota",
    "insufficient user quota",
    "quota is not enough",
    "quota not enough",
    "quota_exhausted",
    "quota exhausted",
    "exceeded your current quota",
    "pre_consume_token_quota_failed",
    "tokenstatusexhausted",
    "payment required",
    "余额",
    "额度",
    "配额不足",
)
BALANCE_HINT = (
    "The gateway refused the request for the key's balance: its credit, balance or quota on the gateway is used up "
    "or too low. Top it up or raise the key's quota in the gateway's console (or ask whoever pays for the gateway); "
    "neither the key's secret nor the developers' set-ups are the cause."
)


def _error_fields(text: str) -> tuple[str, str, str]:
    """(type, code, message) of an error answer, wherever the gateway put them; else ("", "", the text)."""
    try:
        body = json.loads(text)
    except ValueError:
        return "", "", text
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("type") or ""), str(error.get("code") or ""), str(error.get("message") or "")
        for said in (error, body.get("message"), body.get("detail")):
            if isinstance(said, str):
                return "", "", said
    return "", "", text


def _error_message(text: str) -> str:
    """The sentence an error answer carries, with its type or code (OpenAI-shaped gateways send a code)."""
    kind, code, message = _error_fields(text)
    label = kind or code
    return f"{label}: {message}" if label else message


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


def _mentions_balance(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in BALANCE_WORDS)


def _looks_like_model_problem(message: str) -> bool:
    lowered = message.lower()
    return "model" in lowered and any(
        w in lowered for w in ("not found", "not exist", "unknown", "invalid", "not supported", "unsupported")
    )


def _model_not_served(text: str) -> bool:
    """The exact answers of gateways for a model they do not serve, whatever the status.

    Anthropic: 404 not_found_error "model: <id>". New API: 503 code model_not_found, "No available
    channel for model <id> under group <group> (distributor)" (middleware/distributor.go).
    """
    kind, code, message = _error_fields(text)
    if kind == "not_found_error" and message.startswith("model:"):
        return True
    return code == "model_not_found" or "no available channel for model" in message.lower()


# The paths the probe appends to the base URL: a redirect to one of them points at the API root before it.
API_PATHS = ("/v1/messages/count_tokens", "/v1/messages", "/v1/models")


def _redirect_detail(status: int, location: str) -> str:
    """Where a redirect leads, and the base URL it suggests: the Location without the API path the probe asked for."""
    if not location:
        return f"The gateway redirects ({status}) to another address; the base URL is not the gateway's API root."
    try:
        parts = urlsplit(location)
    except ValueError:  # a Location no URL parser takes (an unclosed [ in the host): nothing to suggest
        parts = None
    path = parts.path.rstrip("/") if parts else ""
    for api_path in API_PATHS:
        if parts and path.endswith(api_path):
            root = urlunsplit((parts.scheme, parts.netloc, path.removesuffix(api_path), "", ""))
            if not parts.netloc:
                root = f"{root or '/'} on the same host"
            return (
                f"The gateway redirects ({status}) to {location}: use {root} as the base URL "
                "(Claude Code appends /v1/messages itself)."
            )
    return (
        f"The gateway redirects ({status}) to {location}, which is not its Messages API: the base URL is not the "
        "gateway's API root."
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
        return "wrong_base_url", _redirect_detail(status, headers.get("location", ""))
    # Before the status branches: New API says it with a 503, which is no outage, Anthropic with a 404.
    if status >= 400 and status not in (401, 403) and _model_not_served(text):
        return "model_not_found", message
    if status == 401:
        return "auth_failed", message
    # A spent balance in any other 4xx: the gateway knows the key and refuses it, whatever status it picked (the
    # code, which the message may leave out, counts too). Not a rejected field, and waiting does not end it.
    if 400 <= status < 500 and (status == 402 or _mentions_balance(text)):
        said = message if _mentions_balance(message) else f"payment required ({status}): {message}"
        return "forbidden", said
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
        model_problem = _model_not_served(text) or _looks_like_model_problem(_error_message(text))
        verdict = "model_not_found" if model_problem else "bad_response"
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
            if _model_not_served(json.dumps(data)) or _looks_like_model_problem(message):
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


def hint_for(verdict: str, auth_scheme: str, detail: str = "") -> str:
    """The guide's advice for a verdict; bearer gateways have their own for auth trouble.

    `detail` (what went wrong, in the words of the answer or the error) picks the advice for a
    refusal that names the key's balance, and for a TLS failure's cause where it names one.
    """
    if verdict in ("auth_failed", "forbidden") and _mentions_balance(detail):
        return BALANCE_HINT
    if verdict == "auth_failed" and auth_scheme == AuthScheme.BEARER:
        return BEARER_AUTH_HINT
    if verdict == "tls_error":
        lowered = detail.lower()
        for needles, hint in TLS_HINTS:
            if any(needle in lowered for needle in needles):
                return hint
    return HINTS[verdict]
