"""Probes against the emulator, a real HTTP server on 127.0.0.1: one test per verdict and more."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest
from django.core.management import call_command

from gateways.config.builder import build_config
from gateways.models import Gateway, GatewayKey, ProbeResult
from gateways.probes.classifier import classify_response
from gateways.probes.outbound import SafeClient
from gateways.probes.probe import Answer, ProbeFailure, ProbeTarget, run_probe, send_request
from gateways.probes.runner import probe_key
from gateways.services import store_key
from portal.models import AuditEvent
from tests.conftest import ROOT, TOKAIFY_SECRET, TOKENBAY_SECRET
from tests.gateway_emulator import GatewayRules, running_emulator

SECRET = "sk-probe-0123456789"


def probe(base_url: str, *, scheme: str = "x-api-key", secret: str = SECRET, deadline: float = 5, **kwargs):
    """One probe with the test settings' limits (conftest): roomy on a busy machine; timing tests pass their own."""
    model = kwargs.pop("model", "claude-sonnet-4.6")
    target = ProbeTarget(base_url=base_url, auth_scheme=scheme, secret=secret, model=model, **kwargs)

    async def go():
        async with SafeClient(allow_private=True, deadline=deadline, read_timeout=3, max_bytes=64 * 1024) as client:
            return await run_probe(target, client)

    return asyncio.run(go())


def probe_against(rules: GatewayRules, **kwargs):
    rules.keys = rules.keys or {SECRET}
    with running_emulator(rules) as gw:
        outcome = probe(gw.base_url, scheme=rules.auth_scheme, **kwargs)
        return outcome, gw


def test_ok_sends_what_claude_code_sends():
    outcome, gw = probe_against(GatewayRules())
    assert outcome.verdict == "ok"
    assert outcome.status_code == 200
    assert outcome.latency_ms is not None and outcome.ttfb_ms is not None
    [call] = gw.message_requests()
    assert call.headers["x-api-key"] == SECRET
    assert "authorization" not in call.headers
    assert call.headers["anthropic-version"] == "2023-06-01"
    assert call.headers["anthropic-beta"].startswith("claude-code-")
    assert call.body["stream"] is True
    assert call.body["max_tokens"] <= 16
    assert "context_management" in call.body
    # What the interactive CLI sends (measured), so a gateway that locks keys to Claude Code lets it in.
    assert call.headers["user-agent"] == "claude-cli/2.1.330 (external, cli)"
    assert call.headers["x-app"] == "cli"
    assert call.body["system"][0]["text"] == "You are Claude Code, Anthropic's official CLI for Claude."
    user_id = json.loads(call.body["metadata"]["user_id"])
    assert set(user_id) == {"device_id", "account_uuid", "session_id"}
    assert len(user_id["device_id"]) == 64 and int(user_id["device_id"], 16) >= 0
    assert user_id["session_id"] == call.headers["x-claude-code-session-id"]


def test_the_probe_claims_the_claude_code_version_the_tests_run():
    import re

    from gateways.probes.probe import CLAUDE_CODE_VERSION

    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^CLAUDE_CODE_VERSION := (\S+)$", makefile, re.M).group(1) == CLAUDE_CODE_VERSION


@pytest.mark.parametrize("mode, stream", [("inference", True), ("inference", False), ("reachability", True)])
def test_a_key_locked_to_claude_code_passes_the_probe(mode, stream):
    outcome, gw = probe_against(GatewayRules(claude_code_only=True), mode=mode, stream=stream, deadline=10)
    assert outcome.verdict == "ok", outcome
    assert gw.seen and all(request.headers["user-agent"].startswith("claude-cli/") for request in gw.seen)


def test_client_validation_error_is_its_own_verdict_not_a_dead_key():
    body = '{"error": {"type": "client_validation_error", "message": "This endpoint only accepts requests from Claude Code CLI"}}'
    assert classify_response(403, {}, body)[0] == "client_restricted"
    assert (
        classify_response(403, {}, '{"error": {"type": "permission_error", "message": "disabled"}}')[0] == "forbidden"
    )


def test_bearer_gateway_gets_bearer_and_no_x_api_key():
    outcome, gw = probe_against(GatewayRules(auth_scheme="bearer"))
    assert outcome.verdict == "ok"
    [call] = gw.message_requests()
    assert call.headers["authorization"] == f"Bearer {SECRET}"
    assert "x-api-key" not in call.headers


def test_non_streamed_option():
    outcome, gw = probe_against(GatewayRules(), stream=False)
    assert outcome.verdict == "ok"
    assert gw.message_requests()[0].body["stream"] is False


@pytest.mark.parametrize(
    "behaviour, verdict, words",
    [
        ("401", "auth_failed", "sk- prefix"),
        ("403", "forbidden", "out of balance"),
        ("403_client", "client_restricted", "valid but locked to Claude Code"),
        ("404_path", "wrong_base_url", "without /v1"),
        ("404_model", "model_not_found", "dotted"),
        ("400", "bad_request", "rejected the request"),
        ("429", "rate_limited", "rate-limiting"),
        ("500", "gateway_error", "its side"),
        ("html", "wrong_base_url", "without /v1"),
        ("redirect_loop", "wrong_base_url", "without /v1"),
        ("error_200", "bad_response", "not with a Messages answer"),
        ("stream_cut", "bad_response", "not with a Messages answer"),
        ("stream_empty", "bad_response", "not with a Messages answer"),
        ("reset", "bad_response", "not with a Messages answer"),
        ("huge", "bad_response", "not with a Messages answer"),
    ],
)
def test_each_misbehaviour_gets_its_verdict_and_the_guides_hint(behaviour, verdict, words):
    outcome, _ = probe_against(GatewayRules(behaviour=behaviour))
    assert outcome.verdict == verdict, outcome
    assert words in outcome.hint
    assert SECRET not in json.dumps(outcome.details) + outcome.error_excerpt


def test_a_gateway_echoing_the_key_does_not_put_it_in_the_result():
    outcome, _ = probe_against(GatewayRules(behaviour="401_echo"))
    assert outcome.verdict == "auth_failed"
    assert "[secret removed]" in outcome.error_excerpt
    assert SECRET not in outcome.error_excerpt + json.dumps(outcome.details)


def test_custom_headers_of_the_key_reach_the_gateway():
    _, gw = probe_against(GatewayRules(), custom_headers={"X-Team": "web"})
    assert gw.message_requests()[0].headers["x-team"] == "web"


def test_rate_limit_reports_retry_after():
    outcome, _ = probe_against(GatewayRules(behaviour="429"))
    assert "Retry after 7 s" in outcome.error_excerpt


def test_redirect_is_reported_not_followed():
    outcome, gw = probe_against(GatewayRules(behaviour="redirect_loop"))
    assert "redirects (302)" in outcome.error_excerpt
    assert len(gw.message_requests()) == 1


def test_huge_body_is_cut_at_the_byte_limit():
    outcome, _ = probe_against(GatewayRules(behaviour="huge"))
    assert "cut at" in outcome.error_excerpt or "larger than" in outcome.error_excerpt


@pytest.mark.parametrize("behaviour", ["slow_drip", "hang"])
def test_slow_drip_and_hang_cannot_hold_the_probe_past_its_deadline(behaviour):
    import time

    started = time.monotonic()
    outcome, _ = probe_against(GatewayRules(behaviour=behaviour), deadline=1.5)
    assert outcome.verdict == "timeout"
    assert time.monotonic() - started < 5


def test_base_url_ending_in_v1_is_a_wrong_base_url():
    with running_emulator(GatewayRules(keys={SECRET})) as gw:
        outcome = probe(gw.base_url + "/v1")
    assert outcome.verdict == "wrong_base_url"
    assert "/v1 twice" in outcome.error_excerpt


def test_wrong_bearer_key_gets_the_bearer_guides_advice():
    outcome, _ = probe_against(GatewayRules(auth_scheme="bearer", keys={"sk-other"}))
    assert outcome.verdict == "auth_failed"
    assert 'ANTHROPIC_API_KEY must be "" (empty)' in outcome.hint


def test_model_the_gateway_does_not_serve():
    outcome, _ = probe_against(GatewayRules(models={"claude-sonnet-4.6"}), model="claude-sonnet-4-6")
    assert outcome.verdict == "model_not_found"


def test_rejected_betas_are_retried_without_context_management():
    outcome, gw = probe_against(GatewayRules(reject_context_management=True))
    assert outcome.verdict == "ok"
    assert outcome.betas_fixed
    assert "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS=1" in outcome.warning
    first, second = gw.message_requests()[:2]
    assert "context_management" in first.body
    assert "context_management" not in second.body


def test_without_the_retry_rejected_betas_are_the_verdict():
    outcome, gw = probe_against(GatewayRules(reject_context_management=True), retry_without_betas=False)
    assert outcome.verdict == "betas_rejected"
    assert "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS=1" in outcome.hint
    assert "Extra inputs are not permitted" in outcome.error_excerpt
    assert len(gw.message_requests()) == 1


def test_probe_api_can_leave_the_keys_config_alone(api, emulated, tokenbay_key, alice):
    emulated("tokenbay", tokenbay_rules(reject_context_management=True))
    response = api(alice).post(f"/api/v1/keys/{tokenbay_key.id}/probes/?retry_betas=false")
    assert response.json()["verdict"] == "betas_rejected"
    assert GatewayKey.objects.get(pk=tokenbay_key.pk).disable_experimental_betas is None
    assert not AuditEvent.objects.filter(action="probe.changed_setting").exists()


def test_unserved_model_aliases_are_reported_and_models_listed():
    rules = GatewayRules(models={"claude-sonnet-4.6", "claude-opus-4.8"})
    aliases = {"opus": "claude-opus-4.8", "sonnet": "claude-sonnet-4.6", "haiku": "claude-haiku-4.5"}
    outcome, _ = probe_against(rules, alias_models=aliases)
    assert outcome.verdict == "ok"
    assert outcome.details["missing_models"] == {"haiku": "claude-haiku-4.5"}
    assert outcome.details["models"] == ["claude-opus-4.8", "claude-sonnet-4.6"]
    assert "haiku (claude-haiku-4.5)" in outcome.warning


def test_aliases_are_tried_one_by_one_without_a_models_list():
    rules = GatewayRules(models={"claude-sonnet-4.6"}, serve_models_list=False)
    outcome, gw = probe_against(rules, alias_models={"sonnet": "claude-sonnet-4.6", "haiku": "claude-haiku-4.5"})
    assert outcome.details["missing_models"] == {"haiku": "claude-haiku-4.5"}
    assert gw.message_requests()[-1].body["max_tokens"] == 1


def test_reachability_mode_sends_no_message():
    outcome, gw = probe_against(GatewayRules(models={"claude-sonnet-4.6"}), mode="reachability")
    assert outcome.verdict == "ok"
    assert outcome.kind == "reachability"
    assert "Reachability and auth only" in outcome.warning
    assert gw.message_requests() == []


def test_reachability_mode_still_catches_a_bad_key():
    outcome, _ = probe_against(GatewayRules(keys={"sk-other"}), mode="reachability")
    assert outcome.verdict == "auth_failed"


def test_connection_refused_is_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outcome = probe(f"http://127.0.0.1:{port}")
    assert outcome.verdict == "unreachable"


def transport(url: str, *, allow_private: bool = True):
    """One request through the probe's transport, as run_probe sends it."""

    async def go():
        async with SafeClient(allow_private=allow_private, deadline=2, read_timeout=1) as client:
            return await send_request(client, "GET", url, client.deadline)

    return asyncio.run(go())


def test_the_transport_answers_or_raises_a_failure_that_carries_its_verdict():
    with running_emulator(GatewayRules(keys={SECRET})) as gw:
        answer = transport(f"{gw.base_url}/v1/models")
        assert isinstance(answer, Answer) and answer.status == 401  # an answer, even a refusal, is classified
        with pytest.raises(ProbeFailure) as refused:
            transport(f"{gw.base_url}/v1/models", allow_private=False)
    assert refused.value.verdict == "refused" and "PROBE_ALLOW_PRIVATE_IPS" in refused.value.detail
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ProbeFailure) as unreachable:
        transport(f"http://127.0.0.1:{port}/v1/models")
    assert unreachable.value.verdict == "unreachable"
    assert unreachable.value.__suppress_context__  # the transport's own error, which may quote a header, stays out


def test_plain_http_server_behind_https_is_a_tls_error():
    with running_emulator(GatewayRules(keys={SECRET})) as gw:
        outcome = probe(gw.base_url.replace("http://", "https://"))
    assert outcome.verdict == "tls_error"


def test_private_addresses_are_refused_unless_allowed():
    async def go():
        async with SafeClient(allow_private=False) as client:
            target = ProbeTarget(base_url="http://127.0.0.1:9", auth_scheme="x-api-key", secret=SECRET, model="m")
            return await run_probe(target, client)

    outcome = asyncio.run(go())
    assert outcome.verdict == "refused"
    assert "PROBE_ALLOW_PRIVATE_IPS" in outcome.error_excerpt


@pytest.mark.parametrize(
    "status, body, verdict",
    [
        (200, '{"type": "message", "content": []}', "ok"),
        (200, '{"hello": "world"}', "bad_response"),
        (200, "not json", "bad_response"),
        (
            400,
            '{"error": {"type": "invalid_request_error", "message": "context_management: Extra inputs are not permitted"}}',
            "betas_rejected",
        ),
        (400, '{"error": {"message": "model claude-x does not exist"}}', "model_not_found"),
        (404, '{"error": {"type": "not_found_error", "message": "Not Found"}}', "wrong_base_url"),
        (503, "", "gateway_error"),
    ],
)
def test_classifier_table(status, body, verdict):
    assert classify_response(status, {"content-type": "application/json"}, body, streamed=False)[0] == verdict


def test_mock_transport_unit_check_of_headers():
    """A unit test without sockets: the outbound client connects to the checked address with the right Host."""
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = json.dumps({"type": "message", "content": [{"type": "text", "text": "pong"}]}).encode()
        return httpx.Response(200, headers={"content-type": "application/json"}, stream=httpx.ByteStream(body))

    async def go():
        async with SafeClient(allow_private=True, transport=httpx.MockTransport(handler)) as client:
            target = ProbeTarget(
                base_url="http://localhost:8080", auth_scheme="bearer", secret=SECRET, model="m", stream=False
            )
            return await run_probe(target, client)

    assert asyncio.run(go()).verdict == "ok"
    assert seen[0].url.host in ("127.0.0.1", "::1")
    assert seen[0].headers["host"] == "localhost:8080"


def test_a_gzipped_error_is_read_decoded():
    import gzip

    def handler(request: httpx.Request) -> httpx.Response:
        body = gzip.compress(
            json.dumps({"error": {"type": "authentication_error", "message": "invalid x-api-key"}}).encode()
        )
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        return httpx.Response(401, headers=headers, stream=httpx.ByteStream(body))

    async def go():
        async with SafeClient(allow_private=True, transport=httpx.MockTransport(handler)) as client:
            return await run_probe(
                ProbeTarget(base_url="http://localhost:1", auth_scheme="x-api-key", secret=SECRET, model="m"), client
            )

    outcome = asyncio.run(go())
    assert outcome.verdict == "auth_failed"
    assert "invalid x-api-key" in outcome.error_excerpt


# --- Through the database: the runner, the API and the command ------------------------------------


@pytest.fixture
def emulated(tokenbay, tokaify):
    """Start an emulator and point a gateway at it: `with emulated("tokenbay", rules) as gw:`."""

    def start(slug: str, rules: GatewayRules):
        gateway = {"tokenbay": tokenbay, "tokaify": tokaify}[slug]
        server = running_emulator(rules)
        gw = server.__enter__()
        gateway.base_url = gw.base_url
        gateway.save()
        return server, gw

    started = []

    class Starter:
        def __call__(self, slug, rules):
            server, gw = start(slug, rules)
            started.append(server)
            return gw

    yield Starter()
    for server in started:
        server.__exit__(None, None, None)


def tokenbay_rules(**kwargs) -> GatewayRules:
    return GatewayRules(
        auth_scheme="bearer",
        keys={TOKENBAY_SECRET},
        models={"claude-opus-4.8", "claude-sonnet-4.6", "claude-haiku-4.5"},
        **kwargs,
    )


def test_probe_that_finds_rejected_betas_switches_the_keys_config(emulated, tokenbay_key, alice):
    emulated("tokenbay", tokenbay_rules(reject_context_management=True))
    result = probe_key(tokenbay_key, trigger="web", user=alice)
    assert result.verdict == "ok"
    key = GatewayKey.objects.get(pk=tokenbay_key.pk)
    assert key.disable_experimental_betas is True
    assert key.last_probe_verdict == "ok"
    env = build_config(key.gateway, key, TOKENBAY_SECRET).env
    assert env["CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS"] == "1"
    change = AuditEvent.objects.get(action="probe.changed_setting")
    assert change.details["setting"] == "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS"
    assert AuditEvent.objects.filter(action="probe.run").count() == 1


def test_probe_api_runs_now_and_lists_results(api, emulated, tokenbay_key, alice, dave):
    emulated("tokenbay", tokenbay_rules())
    response = api(alice).post(f"/api/v1/keys/{tokenbay_key.id}/probes/")
    assert response.status_code == 201
    body = response.json()
    assert body["verdict"] == "ok"
    assert body["status_code"] == 200
    assert body["latency_ms"] is not None
    assert body["hint"]
    assert TOKENBAY_SECRET not in response.content.decode()
    listed = api(dave).get("/api/v1/probes/").json()["results"]
    assert [p["id"] for p in listed] == [body["id"]]
    # Auditors read probe results but cannot start probes.
    assert api(dave).post(f"/api/v1/keys/{tokenbay_key.id}/probes/").status_code == 403


def test_an_echoed_key_never_reaches_the_database_or_the_api(api, emulated, tokenbay_key, alice):
    emulated("tokenbay", tokenbay_rules(behaviour="401_echo"))
    response = api(alice).post(f"/api/v1/keys/{tokenbay_key.id}/probes/")
    assert response.json()["verdict"] == "auth_failed"
    stored = json.dumps(list(ProbeResult.objects.values()), default=str)
    assert TOKENBAY_SECRET not in response.content.decode() + stored


def texts(value) -> list[str]:
    """Every string in a value, inside dicts and lists too."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in texts(k) + texts(v)]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in texts(item)]
    return []


def test_a_gateway_answering_with_a_nul_is_probed_stored_and_listed(api, emulated, tokenbay_key, alice):
    """PostgreSQL's text and jsonb columns refuse NUL: the result keeps a replacement character instead."""
    emulated("tokenbay", tokenbay_rules(behaviour="401_nul"))
    response = api(alice).post(f"/api/v1/keys/{tokenbay_key.id}/probes/")
    assert response.status_code == 201, response.content
    assert response.json()["verdict"] == "auth_failed"
    stored = ProbeResult.objects.get()
    assert "invalid\ufffdkey" in stored.error_excerpt
    assert not any("\x00" in text for text in texts(list(ProbeResult.objects.values())))


@pytest.mark.parametrize(
    ("query", "field", "says"),
    [
        ({"verdict": "bogus"}, "verdict", "verdict must be one of ok, "),
        ({"key": "xyz"}, "key", "key must be a key's id, a UUID like 00000000-0000-0000-0000-000000000000, not 'xyz'."),
    ],
)
def test_the_probe_list_names_a_filter_it_cannot_use(api, alice, query, field, says):
    response = api(alice).get("/api/v1/probes/", query)
    assert response.status_code == 400
    assert response.json()["field"] == field and says in response.json()["detail"]


def test_probe_command_summarises_and_exits_non_zero_on_failure(emulated, tokenbay_key, tokaify_key, capsys):
    emulated("tokenbay", tokenbay_rules())
    emulated("tokaify", GatewayRules(keys={"sk-someone-else"}))
    with pytest.raises(SystemExit) as exit_info:
        call_command("probe", "--concurrency", "2")
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "auth_failed" in out and "ok" in out
    assert "1 ok, 1 failing, 2 probed." in out
    assert ProbeResult.objects.filter(trigger="command").count() == 2


def test_probe_command_json_and_success_exit(emulated, tokenbay_key, capsys):
    emulated("tokenbay", tokenbay_rules())
    call_command("probe", "--gateway", "tokenbay", "--json")
    [line] = capsys.readouterr().out.strip().splitlines()
    row = json.loads(line)
    assert row["verdict"] == "ok"
    assert row["gateway"] == "tokenbay"
    assert TOKAIFY_SECRET not in line and TOKENBAY_SECRET not in line


def test_probe_command_with_an_unknown_team_says_so(db):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="No usable keys match"):
        call_command("probe", "--team", "nope")


@pytest.mark.parametrize("as_json", [False, True])
def test_probe_command_with_no_usable_key_says_so_and_fails_nothing(db, web, capsys, as_json):
    """A portal with no key yet, or a team whose keys are all disabled: nothing failed, so cron sees exit 0."""
    call_command("probe", "--team", web.slug, *(["--json"] if as_json else []))
    out, err = capsys.readouterr()
    if as_json:  # stdout holds JSON lines only, none here
        assert out == "" and "No usable key matches: nothing was probed." in err
    else:
        assert "No usable key matches: nothing was probed." in out


# --- Which credential headers a gateway accepts (shared/claude-code-facts.md, gateway table) ----------

# (header mode, auth scheme) -> what the probe must record.
HEADER_FACTS = {
    ("", "x-api-key"): {"x_api_key": True, "bearer": False, "same_key_in_both": True, "mismatch_refused": False},
    ("", "bearer"): {"bearer": True, "x_api_key": False, "same_key_in_both": True, "mismatch_refused": True},
    ("x-api-key-first", "x-api-key"): {
        "x_api_key": True,
        "bearer": True,
        "same_key_in_both": True,
        "mismatch_refused": False,
    },
    ("x-api-key-first", "bearer"): {
        "bearer": True,
        "x_api_key": True,
        "same_key_in_both": True,
        "mismatch_refused": True,
    },
    ("bearer-first", "x-api-key"): {
        "x_api_key": True,
        "bearer": True,
        "same_key_in_both": True,
        "mismatch_refused": True,
    },
    ("bearer-first", "bearer"): {
        "bearer": True,
        "x_api_key": True,
        "same_key_in_both": True,
        "mismatch_refused": False,
    },
    ("strict", "x-api-key"): {"x_api_key": True, "bearer": True, "same_key_in_both": True, "mismatch_refused": True},
    ("strict", "bearer"): {"bearer": True, "x_api_key": True, "same_key_in_both": True, "mismatch_refused": True},
}


@pytest.mark.parametrize(("mode", "scheme"), list(HEADER_FACTS))
def test_the_probe_records_which_credential_headers_each_kind_of_gateway_accepts(mode, scheme):
    rules = GatewayRules(auth_scheme=scheme, header_mode=mode, claude_code_only=True)
    outcome, gw = probe_against(rules, check_credential_headers=True, deadline=10)  # roomy: not a timing test
    assert outcome.verdict == "ok", outcome
    assert outcome.details["credential_headers"] == HEADER_FACTS[(mode, scheme)]
    # The header checks are auth-only: one billable message in all, the probe's own.
    assert sum(1 for r in gw.message_requests() if r.body and "max_tokens" in r.body) == 1


def test_without_the_check_the_probe_sends_only_its_own_header():
    outcome, gw = probe_against(GatewayRules(header_mode="strict"))
    assert "credential_headers" not in outcome.details
    assert all("authorization" not in r.headers for r in gw.seen)


def test_a_key_refused_in_its_scheme_header_but_taken_in_the_other_means_the_scheme_is_wrong():
    with running_emulator(GatewayRules(auth_scheme="bearer", keys={SECRET})) as gw:
        outcome = probe(gw.base_url, scheme="x-api-key", check_credential_headers=True, deadline=10)
    assert outcome.verdict == "auth_failed"
    assert outcome.details["credential_headers"] == {"x_api_key": False, "bearer": True}
    assert "the gateway's auth scheme is wrong, not the key" in outcome.warning


def test_a_key_refused_in_both_headers_teaches_nothing_about_the_gateway():
    outcome, _ = probe_against(GatewayRules(keys={"sk-someone-else"}), check_credential_headers=True, deadline=10)
    assert outcome.verdict == "auth_failed"
    assert "credential_headers" not in outcome.details


def test_a_probe_stores_the_gateways_credential_headers_and_configs_warn_on_a_contradiction(
    emulated, tokaify_key, alice
):
    from gateways.models import Gateway
    from gateways.probes.probe import DECOY_KEY

    # A gateway entered as x-api-key that only takes Bearer tokens.
    gw = emulated("tokaify", GatewayRules(auth_scheme="bearer", keys={TOKAIFY_SECRET}))
    result = probe_key(tokaify_key, trigger="web", user=alice)
    assert result.verdict == "auth_failed"
    gateway = Gateway.objects.get(slug="tokaify")
    assert gateway.credential_headers["x_api_key"] is False and gateway.credential_headers["bearer"] is True
    assert gateway.credential_headers["probe"] == result.pk
    key = GatewayKey.objects.get(pk=tokaify_key.pk)
    [warning] = build_config(gateway, key, TOKAIFY_SECRET).warnings
    assert "set the gateway's auth scheme to Bearer token" in warning
    assert not any(DECOY_KEY in str(r.headers) for r in gw.seen)  # the key was never good: no stale-key test


def test_credential_headers_are_checked_again_only_when_due(emulated, tokenbay_key, alice):
    from gateways.models import Gateway
    from gateways.probes.probe import DECOY_KEY

    gw = emulated("tokenbay", tokenbay_rules(header_mode="strict"))

    def decoys() -> int:
        return sum(1 for r in gw.seen if DECOY_KEY in str(r.headers))

    assert probe_key(tokenbay_key, trigger="web", user=alice).verdict == "ok"
    seen = Gateway.objects.get(slug="tokenbay").credential_headers
    assert seen["mismatch_refused"] is True and seen["seen_at"]
    assert decoys() == 1
    probe_key(GatewayKey.objects.select_related("gateway").get(pk=tokenbay_key.pk), trigger="web", user=alice)
    assert decoys() == 1  # a made-up key is sent at most daily: gateways count failed keys
    Gateway.objects.filter(slug="tokenbay").update(credential_headers={**seen, "seen_at": "2020-01-01T00:00:00+00:00"})
    probe_key(GatewayKey.objects.select_related("gateway").get(pk=tokenbay_key.pk), trigger="web", user=alice)
    assert decoys() == 2


def test_moving_a_gateway_to_another_address_forgets_what_probes_saw(tokenbay, alice):
    from gateways.services import update_gateway

    tokenbay.credential_headers = {"bearer": True, "seen_at": "2026-01-01T00:00:00+00:00"}
    tokenbay.save()
    update_gateway(gateway=tokenbay, changes={"notes": "x"}, actor=alice)
    assert tokenbay.credential_headers["bearer"] is True
    update_gateway(gateway=tokenbay, changes={"base_url": "https://elsewhere.example.com"}, actor=alice)
    tokenbay.refresh_from_db()
    assert tokenbay.credential_headers == {}


# --- A probe never raises: every failure is a verdict, on every door ---------------------------------


def test_a_header_value_http_cannot_carry_is_refused_at_input(api, alice, tokenbay_key):
    body = {"custom_headers": {"X-Team": "café€"}}
    response = api(alice).patch(f"/api/v1/keys/{tokenbay_key.id}/", body, format="json")
    assert response.status_code == 400
    assert "printable ASCII" in response.json()["detail"]


def test_a_fullwidth_host_is_refused_at_input(api, staff):
    body = {"base_url": "https://\uff11\uff12\uff17.\uff10.\uff10.\uff11:18443"}
    response = api(staff).patch("/api/v1/gateways/tokenbay/", body, format="json")
    assert response.status_code == 400
    assert "host name" in response.json()["detail"]


def test_a_stored_header_value_http_cannot_carry_is_a_verdict_not_a_500(api, client, emulated, tokenbay_key, alice):
    emulated("tokenbay", tokenbay_rules())
    GatewayKey.objects.filter(pk=tokenbay_key.pk).update(custom_headers={"X-Team": "café€"})
    response = api(alice).post(f"/api/v1/keys/{tokenbay_key.id}/probes/")
    assert response.status_code == 201
    assert response.json()["verdict"] == "refused"
    # The config builder refuses the stored header before any request is built, and names the field.
    said = response.json()["hint"] + response.json()["error_excerpt"]
    assert "custom_headers" in said or "custom headers" in said
    client.force_login(alice)
    page = client.post(f"/keys/{tokenbay_key.id}/probe/", HTTP_ACCEPT="application/json")
    assert page.status_code == 200
    assert page.json()["verdict"] == "refused"


def test_a_stored_base_url_http_cannot_parse_is_a_verdict_not_a_500(api, tokenbay, tokenbay_key, alice):
    Gateway.objects.filter(pk=tokenbay.pk).update(base_url="https://\uff11\uff12\uff17.\uff10.\uff10.\uff11:18443")
    response = api(alice).post(f"/api/v1/keys/{tokenbay_key.id}/probes/")
    assert response.status_code == 201
    assert response.json()["verdict"] == "refused"
    # Refused before anything is sent: the config's builder checks the stored root again.
    assert "the gateway's base_url setting breaks the portal's rules" in response.json()["hint"]


@pytest.fixture
def three_keys(emulated, tokenbay_key, tokaify_key, web, tokenbay, alice):
    emulated("tokenbay", tokenbay_rules())
    emulated("tokaify", GatewayRules(keys={TOKAIFY_SECRET}))
    third = store_key(
        team=web, gateway=tokenbay, label="Carol laptop", secret="sk-tokenbay-carol-0123456789", actor=alice
    )
    return [tokenbay_key, tokaify_key, third]


def test_probe_command_records_every_key_when_one_has_a_header_http_cannot_carry(three_keys):
    bad = three_keys[2]
    GatewayKey.objects.filter(pk=bad.pk).update(custom_headers={"X-Team": "café€"})
    with pytest.raises(SystemExit):
        call_command("probe", "--concurrency", "2")
    results = {r.key_id: r.verdict for r in ProbeResult.objects.filter(trigger="command")}
    assert results == {three_keys[0].pk: "ok", three_keys[1].pk: "ok", bad.pk: "refused"}


def test_probe_command_records_every_key_when_one_probe_fails_unexpectedly(three_keys, monkeypatch):
    import gateways.probes.runner

    real_run_probe = gateways.probes.runner.run_probe

    async def failing_for_carol(target, client, cache=None):
        if target.secret == "sk-tokenbay-carol-0123456789":
            raise RuntimeError("a bug deep inside the probe")
        return await real_run_probe(target, client, cache)

    monkeypatch.setattr(gateways.probes.runner, "run_probe", failing_for_carol)
    with pytest.raises(SystemExit):
        call_command("probe", "--concurrency", "1")
    results = {r.key_id: r for r in ProbeResult.objects.filter(trigger="command")}
    assert len(results) == 3
    assert [results[k.pk].verdict for k in three_keys] == ["ok", "ok", "refused"]
    assert "unexpected error" in results[three_keys[2].pk].hint


@pytest.mark.parametrize("due", [False, True])
def test_a_probe_run_with_a_keyring_lacking_the_stored_keys_key_touches_no_key_and_tells_no_team(
    settings, web, tokaify_key, due
):
    """After a restore with the wrong PORTAL_ENCRYPTION_KEYS, the fault is the portal's: cron's `probe --due`
    must not record every key as failing and send every team a failing notice."""
    from django.core.management import CommandError

    from alerts.models import Notification
    from alerts.services import create_channel
    from portal import crypto

    create_channel(team=web, kind="email", target="ops@example.com", actor=None)
    settings.PORTAL_ENCRYPTION_KEYS = crypto.generate_key()
    with pytest.raises(CommandError, match=f"lacks key {tokaify_key.secret_key_id}.*Nothing was probed"):
        call_command("probe", *(["--due"] if due else []))
    tokaify_key.refresh_from_db()
    assert (tokaify_key.last_probe_verdict, ProbeResult.objects.count()) == ("", 0)
    assert not Notification.objects.exists()


def test_an_alias_the_gateway_answers_is_served_though_its_list_names_only_dated_ids():
    # Anthropic lists claude-sonnet-4-5-20250929 and takes claude-sonnet-4-5 too, the form Claude Code's ids take.
    dated = {"claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"}
    rules = GatewayRules(models=dated | {"claude-sonnet-4-5", "claude-haiku-4-5"}, listed_models=dated)
    aliases = {"sonnet": "claude-sonnet-4-5", "haiku": "claude-haiku-4-5", "opus": "claude-opus-4-5"}
    outcome, gw = probe_against(rules, model="claude-sonnet-4-5", alias_models=aliases)
    assert outcome.verdict == "ok", outcome.hint
    assert outcome.details["models"] == sorted(dated)
    # Only what the gateway refused is "not served"; the probe's own model answered and is not asked again.
    assert outcome.details["missing_models"] == {"opus": "claude-opus-4-5"}
    asked = [call.body["model"] for call in gw.message_requests()]
    assert asked.count("claude-sonnet-4-5") == 1
    assert sorted(set(asked)) == ["claude-haiku-4-5", "claude-opus-4-5", "claude-sonnet-4-5"]


def test_a_model_several_aliases_name_is_asked_for_once():
    # Gateways often map opus, sonnet and haiku to one model of theirs; each ask is a message billed to the team.
    rules = GatewayRules(models={"claude-sonnet-4.6", "glm-4.6"}, listed_models={"claude-sonnet-4.6-20250929"})
    aliases = {"opus": "glm-4.6", "sonnet": "glm-4.6", "haiku": "glm-4.6"}
    outcome, gw = probe_against(rules, alias_models=aliases)
    assert outcome.verdict == "ok", outcome.hint
    assert "missing_models" not in outcome.details
    asked = [call.body["model"] for call in gw.message_requests() if call.body.get("max_tokens") == 1]
    assert asked == ["glm-4.6"]


def test_an_ask_the_gateway_answers_with_a_429_does_not_call_the_model_not_served():
    dated = {"claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"}
    rules = GatewayRules(
        models=dated | {"claude-sonnet-4-5", "claude-haiku-4-5"}, listed_models=dated, busy_models={"claude-haiku-4-5"}
    )
    aliases = {"sonnet": "claude-sonnet-4-5", "haiku": "claude-haiku-4-5"}
    outcome, _ = probe_against(rules, model="claude-sonnet-4-5", alias_models=aliases)
    assert outcome.verdict == "ok", outcome.hint
    assert "missing_models" not in outcome.details, outcome.warning  # a 429 says nothing about the model


def test_reachability_mode_does_not_pass_a_key_whose_balance_is_spent():
    # The empty body's 400 means the key got through; Anthropic's 400 for a spent balance means it did not.
    outcome, _ = probe_against(GatewayRules(behaviour="400_no_credit"), mode="reachability")
    assert outcome.verdict == "forbidden"
    assert "balance" in outcome.hint
