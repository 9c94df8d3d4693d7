"""A gateway emulator: a real HTTP server on 127.0.0.1 that enforces a gateway's rules.

It behaves like the seed gateways (x-api-key or Bearer auth, the `ANTHROPIC_API_KEY`
conflict, served model ids, rejecting `context_management`), answers the Messages API
streamed or not, and can misbehave on demand for every verdict a probe gives.

Credential headers (`header_mode`), after what real gateways do (shared/claude-code-facts.md):
- "" (default): the seed guides' rule. Only the `auth_scheme` header carries the key; on a
  Bearer gateway an x-api-key that differs from the token is an auth conflict (401).
- "x-api-key-first" (New API, claude-relay-service, one-hub), "bearer-first" (LiteLLM, sub2api):
  both headers are read, a lone key works in either, and with two different keys the first
  header's key is used.
- "strict" (claude-code-hub): a lone key works in either header; two different keys are refused
  with 401 "multiple conflicting API keys".
Every mode accepts the same key sent in both headers (what `apiKeyHelper` does).

`claude_code_only` is claude-relay-service's key restriction: 403 `client_validation_error`
unless the request looks like Claude Code (see `_client_denial`).

A model it does not serve gets the answer of the gateway named by `model_error` (MODEL_ERRORS), word
for word: Anthropic's 404, or New API's 503 `model_not_found`. `key_models` gives each key its own
models, as New API's per-token model limits do: `/v1/models` lists the asking key's, and another
model is refused with New API's 403. A gateway that serves any model (`models` None) lists none
(`/v1/models` 404); `listed_models` lists other ids than it serves, as Anthropic lists dated ids
(claude-sonnet-4-5-20250929) and takes their undated aliases too.
Used by the probe tests, the Claude Code end-to-end test and bench/probe_fanout.py.
"""

from __future__ import annotations

import base64
import html
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, quote_plus


def _escape_all(text: str, form: str) -> str:
    """Every character that is not a letter or digit written as `form` % its code point."""
    return "".join(ch if ch.isalnum() else form % ord(ch) for ch in text)


def _b64(text: str, *, urlsafe: bool = False, pad: bool = True) -> str:
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(text.encode()).decode()
    return encoded if pad else encoded.rstrip("=")


def _json_text(text: str) -> str:
    return json.dumps(text)[1:-1]


# The key as a careless gateway repeats it inside a 401 JSON message, escaped or encoded its way.
# Each takes the token and the header value it came in (`Bearer <token>`, or the x-api-key).
ECHO_IN_MESSAGE = {
    "json": lambda key, line: _json_text(key),
    "json_slash": lambda key, line: _json_text(key).replace("/", "\\/"),  # PHP writes / as \/
    "json_unicode": lambda key, line: _escape_all(key, "\\u%04x"),
    "percent": lambda key, line: quote(key, safe=""),
    "percent_keep_slash": lambda key, line: quote(key),
    "percent_plus": lambda key, line: quote_plus(key),
    "percent_lower": lambda key, line: _escape_all(key, "%%%02x"),
    "base64": lambda key, line: _b64(key),
    "base64_nopad": lambda key, line: _b64(key, pad=False),
    "base64_urlsafe": lambda key, line: _b64(key, urlsafe=True),
    "base64_urlsafe_nopad": lambda key, line: _b64(key, urlsafe=True, pad=False),
    "base64_header": lambda key, line: _b64(line),
    "html_numeric": lambda key, line: _escape_all(key, "&#%d;"),
    "partial": lambda key, line: _json_text(key[3:15]),
}
# The key elsewhere in an answer: (status, body, content type, headers).
ECHO_ELSEWHERE = {
    "raw": lambda key, line: (401, f"invalid key {line}".encode(), "text/plain", {}),
    "html": lambda key, line: (
        403,
        f"<html><body><p>Key {html.escape(key)} is not valid.</p></body></html>".encode(),
        "text/html",
        {},
    ),
    "header_dump": lambda key, line: (
        400,
        json.dumps({"error": {"message": "bad request", "received": {"authorization": line}}}).encode(),
        "application/json",
        {},
    ),
    "redirect": lambda key, line: (302, b"", "text/plain", {"location": f"/login?key={quote(key, safe='')}"}),
    "retry_after": lambda key, line: (
        429,
        _error("rate_limit_error", "slow down"),
        "application/json",
        {"retry-after": key},
    ),
}
# "models": /v1/models lists the key as a model id; messages are served as normal.
ECHO_MODES = [*ECHO_IN_MESSAGE, *ECHO_ELSEWHERE, "models"]

BEHAVIOURS = {
    "normal",
    "400",
    "400_no_credit",
    "401",
    "401_echo",
    "401_nul",
    "403",
    "403_client",
    "404_path",
    "404_model",
    "429",
    "500",
    "html",
    "redirect_loop",
    "error_200",
    "stream_cut",
    "stream_empty",
    "slow_drip",
    "reset",
    "huge",
    "hang",
    *(f"echo_{mode}" for mode in ECHO_MODES),
}
HEADER_MODES = ("", "x-api-key-first", "bearer-first", "strict")
# claude-relay-service's checks (src/validators/clients/claudeCodeValidator.js), plus the JSON
# form of metadata.user_id that Claude Code 2.1.330 sends (measured).
CLAUDE_CLI_USER_AGENT = re.compile(r"^claude-cli/\d+\.\d+\.\d+", re.IGNORECASE)
LEGACY_USER_ID = re.compile(r"^user_[a-fA-F0-9]{64}_account__session_[\w-]+$")
DEVICE_ID = re.compile(r"^[a-fA-F0-9]{64}$")
CLAUDE_CODE_PROMPT = "You are Claude Code, Anthropic's official CLI for Claude."
# claude-relay-service's answer, word for word: no top-level "type".
CLIENT_VALIDATION_ERROR = json.dumps(
    {
        "error": {
            "type": "client_validation_error",
            "message": "This endpoint only accepts requests from Claude Code CLI",
        }
    }
).encode()


# A model the gateway does not serve, as each answers it: (status, body with {model}).
MODEL_ERRORS = {
    # Anthropic (and relays that pass its answer through, such as claude-relay-service).
    "anthropic": (404, {"type": "error", "error": {"type": "not_found_error", "message": "model: {model}"}}),
    # New API, middleware/distributor.go: no channel serves the model in the token's group.
    "new-api": (
        503,
        {
            "error": {
                "code": "model_not_found",
                "message": "No available channel for model {model} under group default (distributor)",
                "type": "new_api_error",
            }
        },
    ),
}
# New API's refusal of a model outside the token's model limits (distributor.token_model_forbidden).
TOKEN_MODEL_FORBIDDEN = {"error": {"message": "This token has no access to model {model}", "type": "new_api_error"}}


@dataclass
class GatewayRules:
    auth_scheme: str = "x-api-key"  # or "bearer"
    keys: set[str] = field(default_factory=set)
    header_mode: str = ""  # one of HEADER_MODES, see the module docstring
    claude_code_only: bool = False  # 403 client_validation_error unless the request looks like Claude Code
    models: set[str] | None = None  # None: any model is served
    model_error: str = "anthropic"  # whose answer an unserved model gets, one of MODEL_ERRORS
    key_models: dict[str, set[str]] | None = None  # each key's own models (New API's token model limits)
    reject_context_management: bool = False
    serve_models_list: bool = True
    # What /v1/models lists, where it is not what is served (Anthropic lists dated ids).
    listed_models: set[str] | None = None
    busy_models: set[str] = field(default_factory=set)  # served, but a message for one is answered 429 for now
    behaviour: str = "normal"
    delay: float = 0.0  # seconds before answering a message
    reply_text: str = "Claude Code is connected to the emulator."
    accept_any_key: bool = False  # benchmarks: skip the key check


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict | None


def _error(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


def _filled(body: dict, model: str) -> bytes:
    """A model error's body with the model named where the gateway names it."""
    return json.dumps(body).replace("{model}", json.dumps(model)[1:-1]).encode()


def _valid_user_id(user_id: object) -> bool:
    """The old `user_<64 hex>_account__session_<id>` form, or the JSON form Claude Code 2.1.330 sends."""
    if not isinstance(user_id, str):
        return False
    if LEGACY_USER_ID.match(user_id):
        return True
    try:
        parsed = json.loads(user_id)
    except ValueError:
        return False
    return (
        isinstance(parsed, dict)
        and isinstance(parsed.get("device_id"), str)
        and bool(DEVICE_ID.match(parsed["device_id"]))
        and isinstance(parsed.get("session_id"), str)
        and bool(parsed["session_id"])
    )


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def message_events(model: str, text: str) -> list[bytes]:
    return [
        _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_emulator",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 12, "output_tokens": 1},
                },
            },
        ),
        _sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        _sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        ),
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 8},
            },
        ),
        _sse("message_stop", {"type": "message_stop"}),
    ]


class _Handler(BaseHTTPRequestHandler):
    server: EmulatorServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def setup(self) -> None:
        super().setup()
        # Like production servers: small streamed chunks must not wait for Nagle's algorithm.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(
        self, status: int, body: bytes, content_type: str = "application/json", extra: dict | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self) -> dict | None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _handle(self, method: str) -> None:
        rules = self.server.rules
        body = self._read_body() if method == "POST" else None
        path = self.path.split("?")[0]
        self.server.seen.append(SeenRequest(method, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if rules.delay and path == "/v1/messages":
            time.sleep(rules.delay)
        if self._misbehave(rules.behaviour, body):
            return
        if path == "/":
            self._send(200, b"<!doctype html><html><body>Welcome</body></html>", "text/html")
            return
        if path not in ("/v1/messages", "/v1/models", "/v1/messages/count_tokens"):
            self._send(404, _error("not_found_error", f"Not found: {path}"))
            return
        denial = self._auth_denial(rules)
        if denial:
            self._send(401, _error("authentication_error", denial))
            return
        if rules.claude_code_only and self._client_denial(path, body):
            self._send(403, CLIENT_VALIDATION_ERROR)
            return
        if path == "/v1/models":
            if not rules.serve_models_list:
                self._send(404, _error("not_found_error", "Not found: /v1/models"))
                return
            served = rules.listed_models if rules.listed_models is not None else self._served(rules)
            if served is None:  # every model: no list to give, as a gateway that lists none
                self._send(404, _error("not_found_error", "Not found: /v1/models"))
                return
            ids = sorted(served)
            self._send(200, json.dumps({"data": [{"id": i, "type": "model"} for i in ids], "has_more": False}).encode())
            return
        if path == "/v1/messages/count_tokens":
            self._send(200, b'{"input_tokens": 12}')
            return
        self._messages(rules, body)

    def _presented_key(self, rules: GatewayRules) -> str:
        """The key the gateway goes by: the one `_auth_denial` checks first, then the other."""
        bearer = self.headers.get("authorization", "")
        token = bearer[7:] if bearer.lower().startswith("bearer ") else ""
        x_api_key = self.headers.get("x-api-key", "")
        return (token or x_api_key) if rules.header_mode == "bearer-first" else (x_api_key or token)

    def _served(self, rules: GatewayRules) -> set[str] | None:
        """The models this request's key may use: its own under `key_models`, else the gateway's."""
        if rules.key_models is not None:
            return rules.key_models.get(self._presented_key(rules), set())
        return rules.models

    def _auth_denial(self, rules: GatewayRules) -> str:
        x_api_key = self.headers.get("x-api-key")
        bearer = self.headers.get("authorization", "")
        token = bearer[7:] if bearer.lower().startswith("bearer ") else ""
        if rules.accept_any_key:
            return ""
        if rules.header_mode not in HEADER_MODES:
            raise ValueError(f"unknown header mode {rules.header_mode!r}")
        if not rules.header_mode:
            if rules.auth_scheme == "bearer":
                # Like the guide's gateway: an x-api-key header is read first, so a leftover key wins and fails.
                if x_api_key is not None and x_api_key != token:
                    return "invalid x-api-key (auth conflict: send only Authorization: Bearer)"
                return "" if token in rules.keys else "invalid bearer token"
            return "" if x_api_key in rules.keys else "invalid x-api-key"
        if rules.header_mode == "strict" and x_api_key and token and x_api_key != token:
            return "multiple conflicting API keys"
        first, second = (token, x_api_key) if rules.header_mode == "bearer-first" else (x_api_key, token)
        return "" if (first or second) in rules.keys else "invalid api key"

    def _client_denial(self, path: str, body: dict | None) -> str:
        """Why this request does not look like Claude Code, or "" when it does."""
        if not CLAUDE_CLI_USER_AGENT.match(self.headers.get("user-agent", "")):
            return "user-agent is not claude-cli/x.y.z"
        if "messages" not in path:  # like claude-relay-service: other paths need the user agent only
            return ""
        system = body.get("system") if isinstance(body, dict) else None
        texts = [e.get("text", "") for e in system if isinstance(e, dict)] if isinstance(system, list) else []
        if not any(str(text).startswith(CLAUDE_CODE_PROMPT) for text in texts):
            return "no Claude Code system prompt"
        for name in ("x-app", "anthropic-beta", "anthropic-version"):
            if not self.headers.get(name, "").strip():
                return f"missing {name}"
        metadata = body.get("metadata") if isinstance(body, dict) else None
        user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
        return "" if _valid_user_id(user_id) else "invalid metadata.user_id"

    def _messages(self, rules: GatewayRules, body: dict | None) -> None:
        if not isinstance(body, dict) or "max_tokens" not in body or "messages" not in body:
            self._send(400, _error("invalid_request_error", "max_tokens: Field required"))
            return
        if rules.reject_context_management and "context_management" in body:
            self._send(400, _error("invalid_request_error", "context_management: Extra inputs are not permitted"))
            return
        model = str(body.get("model", ""))
        if model in rules.busy_models:
            self._send(429, _error("rate_limit_error", "slow down"), extra={"retry-after": "7"})
            return
        if rules.key_models is not None and model not in self._served(rules):
            self._send(403, _filled(TOKEN_MODEL_FORBIDDEN, model))
            return
        if rules.models is not None and model not in rules.models:
            status, error = MODEL_ERRORS[rules.model_error]
            self._send(status, _filled(error, model))
            return
        if body.get("stream"):
            # Like real gateways: server-sent events in chunks, on a connection that stays open.
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for event in message_events(model, rules.reply_text):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        reply = {
            "id": "msg_emulator",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": rules.reply_text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 12, "output_tokens": 8},
        }
        self._send(200, json.dumps(reply).encode())

    def _misbehave(self, behaviour: str, body: dict | None) -> bool:
        simple = {
            "401": (401, _error("authentication_error", "invalid x-api-key")),
            "403": (403, _error("permission_error", "This token is disabled or out of balance")),
            "403_client": (403, CLIENT_VALIDATION_ERROR),
            "404_path": (404, b'{"message": "Not Found"}'),
            "404_model": (404, _filled(MODEL_ERRORS["anthropic"][1], "claude-nope")),
            "400": (400, _error("invalid_request_error", "messages.0.content: Input should be a valid list")),
            # Anthropic's answer to a key whose organisation has no credit left.
            "400_no_credit": (
                400,
                _error("invalid_request_error", "Your credit balance is too low to access the API."),
            ),
            "500": (502, _error("api_error", "upstream provider failed")),
            "error_200": (200, _error("api_error", "upstream failed")),
            "401_nul": (401, _error("authentication_error", "invalid\x00key")),  # JSON's \u0000
        }
        if behaviour in simple:
            status, payload = simple[behaviour]
            self._send(status, payload)
        elif behaviour == "401_echo":  # a careless gateway that repeats the key it refused
            key = self.headers.get("x-api-key") or self.headers.get("authorization", "")
            self._send(401, _error("authentication_error", f"invalid key {key}"))
        elif behaviour.startswith("echo_"):
            return self._echo(behaviour.removeprefix("echo_"))
        elif behaviour == "429":
            self._send(429, _error("rate_limit_error", "slow down"), extra={"retry-after": "7"})
        elif behaviour == "html":
            self._send(
                200,
                b"<!DOCTYPE html><html><head><title>Gateway</title></head><body>Sign up!</body></html>",
                "text/html",
            )
        elif behaviour == "redirect_loop":
            self._send(302, b"", "text/plain", extra={"location": self.path})
        elif behaviour in ("stream_cut", "stream_empty"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            events = message_events("m", "partial")
            self.wfile.write(b"".join(events[:3] if behaviour == "stream_cut" else [events[0], events[-1]]))
            self.close_connection = True
        elif behaviour == "slow_drip":
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            try:
                while not self.server.stopping.wait(0.2):
                    self.wfile.write(b":")
                    self.wfile.flush()
            except OSError:
                pass
            self.close_connection = True
        elif behaviour == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
        elif behaviour == "huge":
            self._send(200, b'{"padding": "' + b"x" * (5 * 1024 * 1024) + b'"}')
        elif behaviour == "hang":
            self.server.stopping.wait(120)
            self.close_connection = True
        else:
            return False
        return True

    def _echo(self, mode: str) -> bool:
        """Repeat the key it was sent in one of ECHO_MODES; False where the request goes on as normal."""
        line = self.headers.get("x-api-key") or self.headers.get("authorization", "")
        key = line.removeprefix("Bearer ")
        if mode in ECHO_IN_MESSAGE:
            message = f"invalid key {ECHO_IN_MESSAGE[mode](key, line)}"
            self._send(
                401, b'{"type": "error", "error": {"type": "authentication_error", "message": "%s"}}' % message.encode()
            )
            return True
        if mode in ECHO_ELSEWHERE:
            status, body, content_type, extra = ECHO_ELSEWHERE[mode](key, line)
            self._send(status, body, content_type, extra)
            return True
        if mode == "models" and self.path.split("?")[0] == "/v1/models":
            self._send(200, json.dumps({"data": [{"id": key, "type": "model"}], "has_more": False}).encode())
            return True
        return False


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, rules: GatewayRules):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.rules = rules
        self.seen: list[SeenRequest] = []
        self.stopping = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def message_requests(self) -> list[SeenRequest]:
        return [r for r in self.seen if r.path.split("?")[0] == "/v1/messages"]

    def probes_run(self) -> int:
        """How many probes sent their message: not the credential-header checks (auth-only, no max_tokens),
        nor the one-token asks for a set-up's other models (max_tokens 1)."""
        return sum(1 for r in self.message_requests() if r.body and r.body.get("max_tokens", 1) > 1)


class running_emulator:
    """Context manager: start an emulator in a thread, stop it on exit."""

    def __init__(self, rules: GatewayRules):
        self.server = EmulatorServer(rules)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> EmulatorServer:
        self.thread.start()
        return self.server

    def __exit__(self, *exc) -> None:
        self.server.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    """Run an emulator on its own: `python -m tests.gateway_emulator --delay 0.2 --key sk-x`."""
    import argparse

    parser = argparse.ArgumentParser(description="A gateway emulator on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--scheme", default="x-api-key", choices=["x-api-key", "bearer"])
    parser.add_argument("--header-mode", default="", choices=HEADER_MODES)
    parser.add_argument("--claude-code-only", action="store_true")
    parser.add_argument("--any-key", action="store_true", help="Accept every key (for benchmarks).")
    parser.add_argument("--key", action="append", default=[])
    args = parser.parse_args()
    rules = GatewayRules(
        auth_scheme=args.scheme,
        keys=set(args.key),
        delay=args.delay,
        serve_models_list=False,
        header_mode=args.header_mode,
        claude_code_only=args.claude_code_only,
    )
    rules.accept_any_key = args.any_key
    server = EmulatorServer(rules)
    if args.port:
        server.server_close()
        server = EmulatorServer.__new__(EmulatorServer)
        ThreadingHTTPServer.__init__(server, ("127.0.0.1", args.port), _Handler)
        server.rules, server.seen, server.stopping = rules, [], threading.Event()
    print(server.base_url, flush=True)
    server.seen = _Discard()
    server.serve_forever(poll_interval=0.05)


class _Discard(list):
    """A request log that keeps nothing (long benchmark runs)."""

    def append(self, item) -> None:
        pass


if __name__ == "__main__":
    main()
