"""Probe a gateway key the way Claude Code would, and say what is wrong in the guide's words.

`run_probe()` sends the requests through `outbound.SafeClient`, which refuses private addresses
unless allowed, connects to the address it checked, follows no redirects, reads at most a fixed
number of bytes and stops at a deadline. Each answer goes to the pure classifier
(gateways.probes.classifier); a request that gets no answer raises `ProbeFailure` with its verdict.

Nothing here touches the database; gateways.probes.runner stores the outcome.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from gateways.probes.classifier import CLAUDE_CODE_VERSION, classify_response, hint_for
from gateways.probes.outbound import OutboundRefused, SafeClient, read_limited
from gateways.rules import SCHEME_FACT, SCHEME_HEADER, AuthScheme, fingerprint
from portal.crypto import Secret, reveal
from portal.redaction import Redactor, redact

logger = logging.getLogger(__name__)

# What the interactive Claude Code CLI sends (measured on 2.1.330): gateways that lock a key to
# Claude Code (claude-relay-service) check the user agent, x-app, the beta and version headers,
# metadata.user_id and the system prompt, and answer 403 client_validation_error otherwise.
USER_AGENT = f"claude-cli/{CLAUDE_CODE_VERSION} (external, cli)"
X_APP = "cli"
SYSTEM_PROMPT = "You are Claude Code, Anthropic's official CLI for Claude."
ANTHROPIC_VERSION = "2023-06-01"
BETAS = "claude-code-20250219,interleaved-thinking-2025-05-14"
CONTEXT_MANAGEMENT_BETA = "context-management-2025-06-27"
CONTEXT_MANAGEMENT = {"edits": [{"type": "clear_tool_uses_20250919"}]}
# Claude Code's model aliases and the ids they stand for, measured on 2.1.330 (print mode, requests
# captured on 127.0.0.1): each alias takes the model its ANTHROPIC_DEFAULT_*_MODEL names, else the
# CLI's own id. Matched trimmed and in any case; "best" is opus, "opusplan" is sonnet outside plan
# mode. A "[1m]" suffix (the 1M-context variant) is not part of the id sent.
MODEL_ALIASES = {
    "opus": ("ANTHROPIC_DEFAULT_OPUS_MODEL", "claude-opus-5-5"),
    "sonnet": ("ANTHROPIC_DEFAULT_SONNET_MODEL", "claude-sonnet-5-5"),
    "haiku": ("ANTHROPIC_DEFAULT_HAIKU_MODEL", "claude-haiku-5-5"),
    "best": ("ANTHROPIC_DEFAULT_OPUS_MODEL", "claude-opus-5-5"),
    "opusplan": ("ANTHROPIC_DEFAULT_SONNET_MODEL", "claude-sonnet-5-5"),
}
# What Claude Code asks for when ANTHROPIC_MODEL is unset or empty.
CLAUDE_CODE_DEFAULT_ALIAS = "opus"
ONE_MILLION_SUFFIX = "[1m]"
EXCERPT_BYTES = 300
# What no database column can hold and a gateway may send: a NUL (PostgreSQL's text and jsonb refuse it), and half
# a UTF-16 surrogate pair (JSON "\ud83d", a JavaScript gateway cutting a message inside an emoji), which has no
# UTF-8 for any driver to send or any page to show. Each is stored as U+FFFD.
UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
UNEXPECTED_FAILURE = (
    "The probe stopped on an unexpected error inside the portal ({name}); the portal's log has the details. "
    "Nothing was learned about the gateway."
)
# Sent in the other header to see whether a stale key there breaks the gateway; no gateway issues it.
DECOY_KEY = "sk-portal-probe-not-a-real-key"
# Verdicts that show the gateway took the key (it refused the body, the client or the model after
# checking it), and those that show it refused the key; the rest say nothing about the key.
KEY_ACCEPTED = {"ok", "bad_request", "betas_rejected", "model_not_found", "client_restricted", "bad_response"}
KEY_REFUSED = {"auth_failed", "forbidden"}


@dataclass(frozen=True)
class ProbeTarget:
    base_url: str
    auth_scheme: str
    secret: Secret = field(repr=False)
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
    # Also find out which credential headers the gateway accepts (three more requests, one with a
    # made-up key); the runner asks for it when the gateway's record is missing or old.
    check_credential_headers: bool = False
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def user_id(self) -> str:
        """metadata.user_id in the JSON form Claude Code 2.1.330 sends; the device id names the portal, not a person."""
        device = hashlib.sha256(f"gateway-portal-probe {self.base_url}".encode()).hexdigest()
        identity = {"device_id": device, "account_uuid": "", "session_id": self.session_id}
        return json.dumps(identity, separators=(",", ":"))

    @property
    def auth(self) -> KeyAuth:
        return KeyAuth(self.auth_scheme, self.secret)


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
    # When the runner read the key and gateway it tested (runner.target_for): the settings it speaks for.
    started_at: datetime | None = None


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


def auth_headers(auth_scheme: str, secret: Secret | str) -> dict[str, str]:
    """The header Claude Code sends: x-api-key, or Bearer with no x-api-key at all."""
    if auth_scheme == AuthScheme.BEARER:
        return {"authorization": f"Bearer {reveal(secret)}"}
    return {"x-api-key": reveal(secret)}


class KeyAuth(httpx.Auth):
    """Puts the key's header on a request as httpx sends it: until then the key stays a masked Secret.

    `more` adds keys in other headers: the credential-header checks send the key in both, or a
    made-up key in the other one.
    """

    def __init__(self, auth_scheme: str, secret: Secret, *more: tuple[str, Secret | str]):
        self.auth_scheme = auth_scheme
        self.secret = secret
        self.credentials = [(auth_scheme, secret), *more]

    def auth_flow(self, request: httpx.Request):
        for scheme, secret in self.credentials:
            request.headers.update(auth_headers(scheme, secret))
        yield request


def excerpt(text: str, secret: Secret | str = "") -> str:
    """A short, single-line piece of an answer, with every encoding of the secret removed should a gateway echo it.

    Redaction reads a few times the excerpt's length, so an encoded secret that shrinks to its marker
    cannot pull unread text into view, and a long answer costs no more than a short one.
    """
    flat = " ".join(text.split())[: EXCERPT_BYTES * 4]
    return redact(flat, secret)[:EXCERPT_BYTES]


def _redacted(value, redactor: Callable[[str], str]):
    """Every text in a stored result (strings, and those inside lists and dicts) with the secret removed."""
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, dict):
        return {_redacted(name, redactor): _redacted(item, redactor) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(item, redactor) for item in value]
    return value


def _claude_code_fields(target: ProbeTarget, model: str) -> dict:
    """The body fields that make a request look like Claude Code's, without what makes it billable."""
    return {
        "model": model,
        "system": [{"type": "text", "text": SYSTEM_PROMPT}],
        "metadata": {"user_id": target.user_id},
    }


def _messages_body(target: ProbeTarget, model: str, *, context_management: bool, stream: bool, max_tokens: int) -> dict:
    body = {
        **_claude_code_fields(target, model),
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": target.prompt}],
        "stream": stream,
    }
    if context_management:
        body["context_management"] = CONTEXT_MANAGEMENT
    return body


def _auth_only_body(target: ProbeTarget) -> dict:
    """No messages and no max_tokens: a gateway checks the key (and the client), then must refuse it with a 400."""
    return _claude_code_fields(target, target.model)


def _headers(target: ProbeTarget, *, context_management: bool) -> dict[str, str]:
    betas = BETAS + (f",{CONTEXT_MANAGEMENT_BETA}" if context_management else "")
    return {
        **target.custom_headers,
        "anthropic-version": ANTHROPIC_VERSION,
        "anthropic-beta": betas,
        "user-agent": USER_AGENT,
        "x-app": X_APP,
        "x-claude-code-session-id": target.session_id,
        "content-type": "application/json",
        "accept": "text/event-stream" if target.stream else "application/json",
    }


async def _send(client: SafeClient, method: str, url: str, **kwargs) -> Answer:
    started = time.perf_counter()
    async with client.stream(method, url, **kwargs) as response:
        ttfb = int((time.perf_counter() - started) * 1000)
        body, truncated = await read_limited(response, client.max_bytes)
    latency = int((time.perf_counter() - started) * 1000)
    return Answer(response.status_code, response.headers, body, ttfb, latency, truncated)


class ProbeFailure(Exception):
    """A request got no answer to classify; `verdict` and `detail` say why, like a classified answer."""

    def __init__(self, verdict: str, detail: str):
        super().__init__(verdict, detail)
        self.verdict = verdict
        self.detail = detail


def _failure(exc: Exception) -> ProbeFailure:
    """Any failure to get an answer, with its verdict: whatever went wrong, the probe reports it."""
    if isinstance(exc, OutboundRefused):
        return ProbeFailure("refused", str(exc))
    if isinstance(exc, httpx.InvalidURL):
        return ProbeFailure(
            "refused", f"The base URL cannot be used in a request ({exc}). Edit the gateway's base URL."
        )
    if isinstance(exc, UnicodeError):
        # The message is not shown: the value it names could be any header, the key's included.
        return ProbeFailure(
            "refused",
            "A header value holds characters an HTTP header cannot carry (only printable ASCII). "
            "Edit the key's custom headers.",
        )
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return ProbeFailure("timeout", "No complete answer before the deadline.")
    if isinstance(exc, httpx.ConnectError):
        text = str(exc)
        if "ssl" in text.lower() or "certificate" in text.lower():
            return ProbeFailure("tls_error", text[:200])
        return ProbeFailure("unreachable", text[:200] or "Connection refused.")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return ProbeFailure("bad_response", f"The connection broke off mid-answer ({type(exc).__name__}).")
    if isinstance(exc, httpx.HTTPError):
        return ProbeFailure("unreachable", f"{type(exc).__name__}: {str(exc)[:200]}")
    logger.error("A probe request stopped on an unexpected %s.", type(exc).__name__, exc_info=exc)
    return ProbeFailure("refused", UNEXPECTED_FAILURE.format(name=type(exc).__name__))


async def send_request(client: SafeClient, method: str, url: str, deadline: float, **kwargs: Any) -> Answer:
    """One request's bounded answer; ProbeFailure, with its verdict, when none came back."""
    try:
        async with asyncio.timeout(deadline):
            return await _send(client, method, url, **kwargs)
    except Exception as exc:  # every failure gets a verdict; each caller turns it into the outcome
        raise _failure(exc) from None  # the cause may quote a header value: the verdict says enough


def alias_models(env: dict[str, str]) -> dict[str, str]:
    """The models Claude Code's opus, sonnet and haiku aliases stand for in this environment."""
    return {
        "opus": env.get("ANTHROPIC_DEFAULT_OPUS_MODEL", ""),
        "sonnet": env.get("ANTHROPIC_DEFAULT_SONNET_MODEL", ""),
        "haiku": env.get("ANTHROPIC_DEFAULT_HAIKU_MODEL", ""),
    }


def resolve_model(env: dict[str, str], probe_model: str = "") -> str:
    """The model id Claude Code would send (MODEL_ALIASES): the gateway's probe model, else ANTHROPIC_MODEL, else opus."""
    model = (probe_model or env.get("ANTHROPIC_MODEL", "")).strip() or CLAUDE_CODE_DEFAULT_ALIAS
    alias = MODEL_ALIASES.get(model.lower().removesuffix(ONE_MILLION_SUFFIX))
    if alias:
        variable, own_id = alias
        model = env.get(variable, "").strip() or own_id
    return model.removesuffix(ONE_MILLION_SUFFIX)


async def run_probe(target: ProbeTarget, client: SafeClient, models_cache: dict | None = None) -> ProbeOutcome:
    """Probe one key: one message (or reachability check), the betas retry, the model aliases, the credential headers.

    `models_cache` lets a batch of probes ask once for what they share: each key's model list (asked
    once per key and gateway) and which credential headers a gateway accepts (once per gateway).
    Whatever the gateway sent back (an error, a model list, a redirect) is stored without the secret.
    """
    outcome = await _run_probe(target, client, models_cache)
    redactor = Redactor(target.secret)  # prepared on the first text it gets: an ok answer often has none

    def storable(text: str) -> str:
        return UNSTORABLE.sub("\ufffd", redactor(text))

    for name in ("hint", "warning", "error_excerpt", "model"):
        if name == "model" and outcome.model == target.model:
            continue  # the portal's own setting, not something the gateway said
        setattr(outcome, name, storable(getattr(outcome, name)))
    outcome.details = _redacted(outcome.details, storable)
    return outcome


async def _run_probe(target: ProbeTarget, client: SafeClient, models_cache: dict | None) -> ProbeOutcome:
    cache = {} if models_cache is None else models_cache
    url = f"{target.base_url}/v1/messages"
    if target.mode == "reachability":
        outcome = await _reachability(target, client)
    else:
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
            await _check_models(target, client, outcome, cache)
    if target.check_credential_headers:
        await _check_credential_headers(target, client, outcome, cache)
    return outcome


async def _message(target: ProbeTarget, client: SafeClient, url: str, *, context_management: bool) -> ProbeOutcome:
    body = _messages_body(
        target, target.model, context_management=context_management, stream=target.stream, max_tokens=target.max_tokens
    )
    try:
        answer = await send_request(
            client,
            "POST",
            url,
            client.deadline,
            json=body,
            headers=_headers(target, context_management=context_management),
            auth=target.auth,
        )
    except ProbeFailure as failure:
        return _failed(target, failure)
    return _outcome(target, answer, path=_path(url), streamed=target.stream)


@functools.lru_cache(maxsize=256)
def _path(url: str) -> str:
    """The request's path, for the classifier; a URL httpx cannot parse has already failed as a verdict."""
    try:
        return httpx.URL(url).path
    except httpx.InvalidURL:
        return "/v1/messages"


def _failed(target: ProbeTarget, failure: ProbeFailure, *, kind: str = "inference") -> ProbeOutcome:
    """The outcome of a request that got no answer."""
    return ProbeOutcome(
        failure.verdict,
        model=target.model,
        hint=hint_for(failure.verdict, target.auth_scheme, failure.detail),
        error_excerpt=excerpt(failure.detail, target.secret),
        kind=kind,
    )


def _outcome(
    target: ProbeTarget, answer: Answer, *, path: str, streamed: bool, kind: str = "inference"
) -> ProbeOutcome:
    """The outcome of an answer, as the classifier judges it."""
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
        hint=hint_for(verdict, target.auth_scheme, detail),
        error_excerpt=excerpt(detail if verdict != "ok" else "", target.secret) if verdict != "ok" else "",
        kind=kind,
    )
    if verdict != "ok" and answer.text and detail != answer.text:
        outcome.details["body"] = excerpt(answer.text, target.secret)
    return outcome


async def _reachability(target: ProbeTarget, client: SafeClient) -> ProbeOutcome:
    """No message is sent: list models, or post an empty body that a gateway must reject after checking auth."""
    headers = _headers(target, context_management=False)
    listing: Answer | None
    try:
        listing = await send_request(
            client, "GET", f"{target.base_url}/v1/models", client.deadline, headers=headers, auth=target.auth
        )
    except ProbeFailure:
        listing = None  # nothing to judge yet: the empty message below decides
    if listing is not None and listing.status == 200 and "json" in listing.headers.get("content-type", ""):
        outcome = ProbeOutcome(
            "ok", listing.status, listing.ttfb_ms, listing.latency_ms, target.model, kind="reachability"
        )
        outcome.details["models"] = _model_ids(listing.text)[:50]
    elif listing is not None and listing.status in (401, 403):
        outcome = _outcome(target, listing, path="/v1/models", streamed=False, kind="reachability")
    else:
        try:
            answer = await send_request(
                client,
                "POST",
                f"{target.base_url}/v1/messages",
                client.deadline,
                json=_auth_only_body(target),
                headers=headers,
                auth=target.auth,
            )
        except ProbeFailure as failure:
            outcome = _failed(target, failure, kind="reachability")
        else:
            # The empty body's 400 means the key passed; one that blames the balance means it did not.
            spent = classify_response(answer.status, answer.headers, answer.text, streamed=False)[0] == "forbidden"
            if answer.status == 400 and not spent:
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


async def _key_models(target: ProbeTarget, client: SafeClient, cache: dict, *, per_key: bool) -> list[str]:
    """The model ids GET /v1/models lists, or [] where the gateway offers none; asked once per cache slot.

    `per_key` when the list decides a warning (the set-up names models): New API and the one-api forks
    list the models of the asking token (its model limits, its group), so one key's list says nothing
    about another's. Otherwise the list is only shown ("Models the gateway lists"), and one per gateway
    and batch spares a request per key. The cache holds the key's fingerprint, never the key, and the
    text without the secret.
    """

    async def listed_for_this_key() -> tuple[int, str]:
        answer = await send_request(
            client,
            "GET",
            f"{target.base_url}/v1/models?limit=1000",
            client.deadline,
            headers=_headers(target, context_management=False),
            auth=target.auth,
        )
        return answer.status, redact(answer.text, target.secret)

    slot: tuple = ("models", target.base_url, target.auth_scheme)
    if per_key:
        slot += (fingerprint(reveal(target.secret)),)
    if slot not in cache:
        cache[slot] = asyncio.ensure_future(listed_for_this_key())
    try:
        status, text = await asyncio.shield(cache[slot])
    except ProbeFailure:
        return []  # no list: each configured model is asked for instead
    return _model_ids(text) if status == 200 else []


async def _check_models(target: ProbeTarget, client: SafeClient, outcome: ProbeOutcome, cache: dict) -> None:
    """Report configured aliases the gateway does not serve; list its models where it offers them.

    A model the list names is served. One it does not name may still be: Anthropic lists dated ids
    (claude-sonnet-4-5-20250929) and takes their undated aliases, the form Claude Code's ids take. So
    each configured model the list leaves out, and each one where there is no list, is asked for with a
    one-token message, once per model however many aliases name it (each ask is billed). It is missing
    only when the answer is about the model: "model not found", or, after a list that leaves it out, a
    refusal of the request (New API refuses a model outside the token's limits with a 403). An answer
    that says nothing about the model (no answer, 429, 5xx) reports nothing: the next probe asks again.
    The probe's own model has just answered and is not asked again.
    """
    aliases = {alias: model for alias, model in target.alias_models.items() if model}
    listed = await _key_models(target, client, cache, per_key=bool(aliases))
    if listed:
        outcome.details["models"] = listed[:50]
    refusals = {"model_not_found", "forbidden", "bad_request"} if listed else {"model_not_found"}

    async def verdict_for(model: str) -> str:
        body = _messages_body(target, model, context_management=False, stream=False, max_tokens=1)
        try:
            reply = await send_request(
                client,
                "POST",
                f"{target.base_url}/v1/messages",
                client.deadline,
                json=body,
                headers=_headers(target, context_management=False),
                auth=target.auth,
            )
        except ProbeFailure:
            return ""  # no answer says nothing about the model
        return classify_response(reply.status, reply.headers, reply.text, streamed=False)[0]

    # Asked at once, not in turn: a slow gateway then adds one answer's time to the probe, not one per model.
    asked = [model for model in dict.fromkeys(aliases.values()) if model != target.model and model not in listed]
    verdicts = await asyncio.gather(*(verdict_for(model) for model in asked))
    unserved = {model for model, verdict in zip(asked, verdicts, strict=True) if verdict in refusals}
    missing = {alias: model for alias, model in aliases.items() if model in unserved}
    if missing:
        outcome.details["missing_models"] = missing
        names = ", ".join(f"{alias} ({model})" for alias, model in missing.items())
        note = f"The gateway does not serve these configured models: {names}."
        outcome.warning = f"{outcome.warning} {note}".strip()


def _other_scheme(auth_scheme: str) -> str:
    return AuthScheme.X_API_KEY if auth_scheme == AuthScheme.BEARER else AuthScheme.BEARER


def key_accepted(verdict: str) -> bool | None:
    """Whether an answer shows the gateway took the key: True, False, or None when it does not say."""
    if verdict in KEY_ACCEPTED:
        return True
    if verdict in KEY_REFUSED:
        return False
    return None


async def _accepts(target: ProbeTarget, client: SafeClient, auth: KeyAuth) -> bool | None:
    """Send an auth-only request with these credential headers; did the gateway take the key?"""
    try:
        answer = await send_request(
            client,
            "POST",
            f"{target.base_url}/v1/messages",
            client.deadline,
            json=_auth_only_body(target),
            headers=_headers(target, context_management=False),
            auth=auth,
        )
    except ProbeFailure:
        return None
    return key_accepted(classify_response(answer.status, answer.headers, answer.text, streamed=False)[0])


async def _header_facts(target: ProbeTarget, client: SafeClient) -> dict[str, bool]:
    """With the key known good in its own header: the other header alone, both, and a stale key in the other."""
    own, other = target.auth_scheme, _other_scheme(target.auth_scheme)
    arrangements = {
        SCHEME_FACT[other]: KeyAuth(other, target.secret),
        "same_key_in_both": KeyAuth(own, target.secret, (other, target.secret)),
        "mismatch_refused": KeyAuth(own, target.secret, (other, DECOY_KEY)),
    }
    answers = await asyncio.gather(*(_accepts(target, client, auth) for auth in arrangements.values()))
    facts = {SCHEME_FACT[own]: True}
    for fact, accepted in zip(arrangements, answers, strict=True):
        if accepted is not None:
            facts[fact] = (not accepted) if fact == "mismatch_refused" else accepted
    return facts


async def _check_credential_headers(
    target: ProbeTarget, client: SafeClient, outcome: ProbeOutcome, cache: dict
) -> None:
    """Record which credential headers the gateway accepts, once the key is known to be good in one of them.

    A key refused in its own header (401) is tried alone in the other: accepted there, the gateway's
    auth scheme is wrong, not the key. Refused there too, nothing is learned: the key may be wrong.
    """
    if key_accepted(outcome.verdict):
        slot = ("credential_headers", target.base_url)  # a gateway's facts, found once per batch
        if slot not in cache:
            cache[slot] = asyncio.ensure_future(_header_facts(target, client))
        outcome.details["credential_headers"] = dict(await asyncio.shield(cache[slot]))
    elif outcome.verdict == "auth_failed":
        other = _other_scheme(target.auth_scheme)
        if await _accepts(target, client, KeyAuth(other, target.secret)):
            outcome.details["credential_headers"] = {SCHEME_FACT[target.auth_scheme]: False, SCHEME_FACT[other]: True}
            note = (
                f"The gateway accepts this key as {SCHEME_HEADER[other]} but refuses it as "
                f"{SCHEME_HEADER[target.auth_scheme]}: the gateway's auth scheme is wrong, not the key."
            )
            outcome.warning = f"{outcome.warning} {note}".strip()
