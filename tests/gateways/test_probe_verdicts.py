"""Probe verdicts in the words real gateways use: Anthropic's and New API's unknown-model answers, the
model Claude Code really asks for, per-key model lists, the 401, redirect and TLS advice, and
`manage.py probe --due --json` when nothing is due.

Gateways are the emulator (tests/gateway_emulator.py) or the TLS server (tests/tls_server.py) on
127.0.0.1; the model ids are checked against the pinned Claude Code CLI itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command

from gateways.probes.classifier import classify_response
from gateways.probes.outbound import SafeClient, tls_context
from gateways.probes.probe import ProbeTarget, resolve_model, run_probe
from gateways.probes.runner import probe_keys_async, target_for
from gateways.services import store_key
from tests.conftest import ROOT
from tests.gateway_emulator import GatewayRules, running_emulator

SECRET = "sk-verdicts-0123456789"
CLAUDE_BIN = os.environ.get("CLAUDE_BIN", str(ROOT / ".cache/claude-code/node_modules/.bin/claude"))


def probe(base_url: str, *, client_options: dict | None = None, cache: dict | None = None, **kwargs):
    kwargs.setdefault("model", "claude-sonnet-4.6")
    kwargs.setdefault("secret", SECRET)
    kwargs.setdefault("auth_scheme", "x-api-key")
    target = ProbeTarget(base_url=base_url, **kwargs)

    async def go():
        options = {"allow_private": True, "deadline": 5, "read_timeout": 3, **(client_options or {})}
        async with SafeClient(**options) as client:
            return await run_probe(target, client, cache)

    return asyncio.run(go())


# --- 1. Anthropic's unknown model: 404 not_found_error "model: <id>" ------------------------------


def test_the_emulator_answers_an_unknown_model_exactly_like_anthropic():
    with running_emulator(GatewayRules(keys={SECRET}, models={"claude-sonnet-4.6"})) as gw:
        response = httpx.post(
            f"{gw.base_url}/v1/messages",
            headers={"x-api-key": SECRET},
            json={"model": "claude-sonnet-4-6", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 404
    assert response.json() == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model: claude-sonnet-4-6"},
    }


def test_anthropics_404_for_an_unknown_model_is_model_not_found_not_a_wrong_base_url():
    with running_emulator(GatewayRules(keys={SECRET}, models={"claude-sonnet-4.6"})) as gw:
        outcome = probe(gw.base_url, model="claude-sonnet-4-6")
    assert outcome.verdict == "model_not_found", (outcome.verdict, outcome.hint)
    assert "without /v1" not in outcome.hint
    assert "model: claude-sonnet-4-6" in outcome.error_excerpt


def test_an_alias_anthropic_does_not_serve_is_reported_missing_when_tried_one_by_one():
    rules = GatewayRules(keys={SECRET}, models={"claude-sonnet-4.6"}, serve_models_list=False)
    with running_emulator(rules) as gw:
        outcome = probe(gw.base_url, alias_models={"sonnet": "claude-sonnet-4.6", "haiku": "claude-haiku-9-9"})
    assert outcome.verdict == "ok"
    assert outcome.details.get("missing_models") == {"haiku": "claude-haiku-9-9"}


def test_a_404_that_names_no_model_is_still_a_wrong_base_url():
    body = '{"type":"error","error":{"type":"not_found_error","message":"Not Found"}}'
    assert classify_response(404, {}, body)[0] == "wrong_base_url"


# --- 2. New API's unknown model: 503 code model_not_found ------------------------------------------


def test_new_apis_503_model_not_found_is_model_not_found_not_a_gateway_outage():
    rules = GatewayRules(keys={SECRET}, models={"claude-sonnet-4.6"}, model_error="new-api")
    with running_emulator(rules) as gw:
        outcome = probe(gw.base_url, model="claude-sonnet-4-6")
    assert outcome.status_code == 503
    assert outcome.verdict == "model_not_found", (outcome.verdict, outcome.hint)
    assert "Try again later" not in outcome.hint
    assert "No available channel for model claude-sonnet-4-6" in outcome.error_excerpt


def test_an_alias_new_api_has_no_channel_for_is_reported_missing():
    rules = GatewayRules(keys={SECRET}, models={"claude-sonnet-4.6"}, serve_models_list=False, model_error="new-api")
    with running_emulator(rules) as gw:
        outcome = probe(gw.base_url, alias_models={"sonnet": "claude-sonnet-4.6", "haiku": "claude-haiku-4-5"})
    assert outcome.verdict == "ok"
    assert outcome.details.get("missing_models") == {"haiku": "claude-haiku-4-5"}


@pytest.mark.parametrize(
    "body",
    [
        '{"error":{"code":"model_not_found","message":"Failed to get available channel for model x under group '
        'vip (distributor): no channel","type":"new_api_error"}}',
        '{"error":{"message":"No available channel for model x under group default (distributor)"}}',
    ],
)
def test_new_apis_no_channel_answer_is_recognised_by_its_code_or_its_words(body):
    assert classify_response(503, {"content-type": "application/json"}, body, streamed=False)[0] == "model_not_found"


def test_a_plain_503_is_still_a_gateway_error():
    body = '{"error":{"message":"upstream overloaded","type":"new_api_error"}}'
    assert classify_response(503, {}, body)[0] == "gateway_error"


# --- 3. The model Claude Code asks for -----------------------------------------------------------

# What the pinned CLI sent (captured on 127.0.0.1), and what the probe must send, for each setting.
CLAUDE_CODE_CASES = [
    {},
    {"ANTHROPIC_DEFAULT_OPUS_MODEL": "claude-opus-4.8"},
    {"ANTHROPIC_MODEL": "sonnet"},
    {"ANTHROPIC_MODEL": "haiku"},
    {"ANTHROPIC_MODEL": "Sonnet", "ANTHROPIC_DEFAULT_SONNET_MODEL": "claude-sonnet-4.6"},
    {"ANTHROPIC_MODEL": "opusplan"},
    {"ANTHROPIC_MODEL": "sonnet[1m]"},
    {"ANTHROPIC_MODEL": "claude-sonnet-4.6"},
]


def test_without_anthropic_model_the_probe_asks_for_the_opus_alias_like_claude_code():
    assert resolve_model({"ANTHROPIC_DEFAULT_OPUS_MODEL": "claude-opus-4.8"}) == "claude-opus-4.8"
    assert (
        resolve_model({"ANTHROPIC_MODEL": "", "ANTHROPIC_DEFAULT_OPUS_MODEL": "claude-opus-4.8"}) == "claude-opus-4.8"
    )
    assert resolve_model({}) == "claude-opus-5-5"


def test_an_alias_without_its_default_resolves_to_claude_codes_own_id_not_the_word():
    assert resolve_model({"ANTHROPIC_MODEL": "sonnet"}) == "claude-sonnet-5-5"
    assert resolve_model({"ANTHROPIC_MODEL": "haiku"}) == "claude-haiku-5-5"


def test_the_gateways_probe_model_is_resolved_like_anthropic_model():
    env = {"ANTHROPIC_MODEL": "claude-opus-4.8", "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-haiku-4.5"}
    assert resolve_model(env, "haiku") == "claude-haiku-4.5"
    assert resolve_model(env, "claude-sonnet-4.6") == "claude-sonnet-4.6"


def test_a_tokaify_key_with_only_an_opus_model_is_probed_with_that_model(tokaify_key):
    tokaify_key.opus_model = "claude-opus-4-8"
    tokaify_key.save()
    assert target_for(tokaify_key).model == "claude-opus-4-8"


@pytest.mark.e2e
@pytest.mark.parametrize(
    "env", CLAUDE_CODE_CASES, ids=lambda env: ",".join(f"{k}={v}" for k, v in env.items()) or "unset"
)
def test_the_probe_asks_for_the_model_the_real_claude_code_asks_for(env, tmp_path):
    if not Path(CLAUDE_BIN).exists():
        pytest.fail(f"The Claude Code CLI is not at {CLAUDE_BIN}; `make test` installs it (make claude-cli).")
    with running_emulator(GatewayRules(keys={SECRET})) as gw:
        done = subprocess.run(
            [CLAUDE_BIN, "-p", "Reply with the single word: pong"],
            env={
                "HOME": str(tmp_path),
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "DISABLE_AUTOUPDATER": "1",
                "CLAUDE_CODE_MAX_RETRIES": "0",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "ANTHROPIC_BASE_URL": gw.base_url,
                "ANTHROPIC_API_KEY": SECRET,
                **env,
            },
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        sent = [r.body["model"] for r in gw.message_requests() if r.body and r.body.get("messages")]
    assert done.returncode == 0, done.stdout + done.stderr
    assert sent and sent[0] == resolve_model(env), sent


# --- 4. Each key's own model list ------------------------------------------------------------------


def test_each_key_is_checked_against_the_models_its_own_token_may_use():
    wide, narrow = "sk-wide-0123456789", "sk-narrow-0123456789"
    rules = GatewayRules(
        keys={wide, narrow},
        key_models={wide: {"claude-haiku-4.5", "claude-sonnet-4.6"}, narrow: {"claude-sonnet-4.6"}},
    )
    aliases = {"sonnet": "claude-sonnet-4.6", "haiku": "claude-haiku-4.5"}
    cache: dict = {}
    with running_emulator(rules) as gw:
        first = probe(gw.base_url, secret=wide, alias_models=aliases, cache=cache)
        second = probe(gw.base_url, secret=narrow, alias_models=aliases, cache=cache)
        again = probe(gw.base_url, secret=narrow, alias_models=aliases, cache=cache)
        listings = [r for r in gw.seen if r.path.startswith("/v1/models")]
    assert first.details.get("missing_models") is None
    assert second.details.get("missing_models") == {"haiku": "claude-haiku-4.5"}, second.details
    assert second.details["models"] == ["claude-sonnet-4.6"]
    assert again.details.get("missing_models") == {"haiku": "claude-haiku-4.5"}
    assert len(listings) == 2  # once per key in a batch, not once per probe


def test_a_batch_asks_each_key_for_its_models_once(web, tokaify, alice):
    keys = []
    for n, models in enumerate(({"claude-sonnet-4.6", "claude-haiku-4.5"}, {"claude-sonnet-4.6"})):
        secret = f"sk-batch-{n}-0123456789"
        key = store_key(team=web, gateway=tokaify, label=f"batch {n}", secret=secret, actor=alice)
        key.model, key.haiku_model, key.sonnet_model = "claude-sonnet-4.6", "claude-haiku-4.5", "claude-sonnet-4.6"
        key.save()
        keys.append((key, secret, models))
    rules = GatewayRules(keys={s for _, s, _ in keys}, key_models={s: m for _, s, m in keys})
    with running_emulator(rules) as gw:
        tokaify.base_url = gw.base_url
        tokaify.save()
        outcomes = asyncio.run(probe_keys_async([k for k, _, _ in keys], concurrency=2))
    missing = [outcome.details.get("missing_models") for _, outcome in outcomes]
    assert missing == [None, {"haiku": "claude-haiku-4.5"}]


# --- 5. The 401 advice on an x-api-key gateway -----------------------------------------------------


def test_a_401_on_an_x_api_key_gateway_gets_the_guides_whole_401_advice():
    with running_emulator(GatewayRules(keys={"sk-someone-else"})) as gw:
        outcome = probe(gw.base_url)
    assert outcome.verdict == "auth_failed"
    for words in ("sk- prefix", "disabled", "expired", "balance", "model", "IP restriction"):
        assert words in outcome.hint, (words, outcome.hint)


# --- 6. A redirect's advice ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location, root",
    [
        ("https://api.example.com/v1/messages", "https://api.example.com"),
        ("https://api.example.com/v1/messages/?beta=true", "https://api.example.com"),
        ("https://gw.example.com/anthropic/v1/messages", "https://gw.example.com/anthropic"),
    ],
)
def test_a_redirect_suggests_the_root_it_leads_to_not_the_messages_url(location, root):
    verdict, detail = classify_response(301, {"location": location}, "", path="/v1/messages", streamed=True)
    assert verdict == "wrong_base_url"
    assert f"use {root} as the base URL" in detail, detail


@pytest.mark.parametrize("location", ["https://example.com/login", "http://[broken/v1/messages"])
def test_a_redirect_to_a_page_that_is_no_api_is_not_offered_as_a_base_url(location):
    verdict, detail = classify_response(302, {"location": location}, "", path="/v1/messages")
    assert verdict == "wrong_base_url"
    assert "as the base URL" not in detail and location in detail


def test_a_relative_redirect_suggests_the_path_on_the_same_host():
    _, detail = classify_response(308, {"location": "/anthropic/v1/messages"}, "", path="/v1/messages")
    assert "use /anthropic on the same host as the base URL" in detail, detail


def test_the_emulators_redirect_is_reported_with_the_root_it_leads_to():
    with running_emulator(GatewayRules(keys={SECRET}, behaviour="redirect_loop")) as gw:
        outcome = probe(gw.base_url)
    assert outcome.verdict == "wrong_base_url"
    assert "redirects (302)" in outcome.error_excerpt


# --- 7. probe --due --json with nothing due --------------------------------------------------------


def test_probe_due_json_prints_only_json_on_stdout_when_nothing_is_due(db, capsys):
    call_command("probe", "--due", "--json")
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    assert rows == []  # JSON lines, one per probed key: none
    assert "No key is due for a probe." in captured.err


def test_probe_due_without_json_still_says_nothing_is_due_on_stdout(db, capsys):
    call_command("probe", "--due")
    assert "No key is due for a probe." in capsys.readouterr().out


# --- 8. TLS failures told apart --------------------------------------------------------------------


@pytest.fixture
def localhost_certificate(tmp_path):
    from tests.tls_server import certificate_authority, running_tls_server

    ca, certificate, key = certificate_authority(tmp_path)
    with running_tls_server(certificate, key) as server:
        yield server, ca


def test_an_untrusted_certificate_is_not_called_a_host_name_mismatch(localhost_certificate):
    server, _ = localhost_certificate
    outcome = probe(f"https://localhost:{server.port}")
    assert outcome.verdict == "tls_error"
    assert "host name" not in outcome.hint
    assert "does not trust" in outcome.hint and "SSL_CERT_FILE" in outcome.hint, outcome.hint


def test_the_ca_the_untrusted_hint_names_is_trusted_through_ssl_cert_file(localhost_certificate, monkeypatch):
    """What the hint tells the operator to do works: the batch's TLS context reads SSL_CERT_FILE."""
    server, ca = localhost_certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    outcome = probe(f"https://localhost:{server.port}", client_options={"verify": tls_context()})
    assert outcome.verdict != "tls_error", outcome.error_excerpt


def test_a_certificate_for_another_name_is_called_a_host_name_mismatch(localhost_certificate):
    server, ca = localhost_certificate
    trusted = ssl.create_default_context(cafile=str(ca))
    outcome = probe(f"https://127.0.0.1:{server.port}", client_options={"verify": trusted})
    assert outcome.verdict == "tls_error"
    assert "not valid for this host name" in outcome.hint, outcome.hint


def test_plain_http_behind_https_is_called_not_tls():
    with running_emulator(GatewayRules(keys={SECRET})) as gw:
        outcome = probe(gw.base_url.replace("http://", "https://"))
    assert outcome.verdict == "tls_error"
    assert "does not speak TLS" in outcome.hint and "host name" not in outcome.hint, outcome.hint


@pytest.mark.parametrize(
    "error, words",
    [
        (
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired (_ssl.c:1006)",
            "expired",
        ),
        (
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate (_ssl.c:1006)",
            "does not trust",
        ),
        ("[SSL: TLSV1_ALERT_INTERNAL_ERROR] tlsv1 alert internal error (_ssl.c:1006)", "excerpt"),
    ],
)
def test_each_tls_failure_gets_the_hint_for_its_cause(error, words):
    from gateways.probes.classifier import hint_for

    hint = hint_for("tls_error", "x-api-key", error)
    assert words in hint, hint
