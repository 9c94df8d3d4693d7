"""The emulator's credential-header modes and Claude-Code-only mode follow the real gateways' code.

The probe and Claude Code tests lean on these rules, so they are pinned here against the table
in shared/claude-code-facts.md.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.gateway_emulator import CLAUDE_CODE_PROMPT, GatewayRules, running_emulator

GOOD, OTHER = "sk-good-key-0001", "sk-stale-key-0002"
BODY = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def status(rules: GatewayRules, *, x_api_key: str | None = None, bearer: str | None = None, **request) -> int:
    headers = request.pop("headers", {})
    if x_api_key is not None:
        headers["x-api-key"] = x_api_key
    if bearer is not None:
        headers["authorization"] = f"Bearer {bearer}"
    with running_emulator(rules) as gw:
        response = httpx.post(f"{gw.base_url}/v1/messages", headers=headers, json=request.pop("body", BODY))
    return response.status_code


# (mode, scheme) -> status for: lone x-api-key, lone Bearer, same key in both, right x-api-key + stale Bearer,
# stale x-api-key + right Bearer.
HEADER_TABLE = {
    ("", "x-api-key"): (200, 401, 200, 200, 401),
    ("", "bearer"): (401, 200, 200, 401, 401),
    ("x-api-key-first", "x-api-key"): (200, 200, 200, 200, 401),
    ("bearer-first", "x-api-key"): (200, 200, 200, 401, 200),
    ("strict", "x-api-key"): (200, 200, 200, 401, 401),
}


@pytest.mark.parametrize(("mode", "scheme"), list(HEADER_TABLE))
def test_each_header_mode_reads_the_credential_headers_like_its_gateway(mode, scheme):
    rules = GatewayRules(auth_scheme=scheme, keys={GOOD}, header_mode=mode)
    seen = (
        status(rules, x_api_key=GOOD),
        status(rules, bearer=GOOD),
        status(rules, x_api_key=GOOD, bearer=GOOD),
        status(rules, x_api_key=GOOD, bearer=OTHER),
        status(rules, x_api_key=OTHER, bearer=GOOD),
    )
    assert seen == HEADER_TABLE[(mode, scheme)]


def test_strict_mode_names_the_conflict():
    with running_emulator(GatewayRules(keys={GOOD}, header_mode="strict")) as gw:
        response = httpx.post(
            f"{gw.base_url}/v1/messages", headers={"x-api-key": GOOD, "authorization": f"Bearer {OTHER}"}, json=BODY
        )
    assert response.status_code == 401
    assert "multiple conflicting API keys" in response.text


CLAUDE_CODE_HEADERS = {
    "user-agent": "claude-cli/2.1.330 (external, cli)",
    "x-app": "cli",
    "anthropic-beta": "claude-code-20250219",
    "anthropic-version": "2023-06-01",
}
USER_ID = json.dumps({"device_id": "a" * 64, "account_uuid": "", "session_id": "5f0c0f9e-1111-2222-3333-444455556666"})
CLAUDE_CODE_BODY = {**BODY, "system": [{"type": "text", "text": CLAUDE_CODE_PROMPT}], "metadata": {"user_id": USER_ID}}


def without(mapping: dict, name: str) -> dict:
    return {k: v for k, v in mapping.items() if k != name}


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (without(CLAUDE_CODE_HEADERS, "user-agent"), CLAUDE_CODE_BODY),
        ({**CLAUDE_CODE_HEADERS, "user-agent": "python-httpx/0.28"}, CLAUDE_CODE_BODY),
        ({**CLAUDE_CODE_HEADERS, "x-app": ""}, CLAUDE_CODE_BODY),
        (without(CLAUDE_CODE_HEADERS, "anthropic-beta"), CLAUDE_CODE_BODY),
        (without(CLAUDE_CODE_HEADERS, "anthropic-version"), CLAUDE_CODE_BODY),
        (CLAUDE_CODE_HEADERS, without(CLAUDE_CODE_BODY, "metadata")),
        (CLAUDE_CODE_HEADERS, {**CLAUDE_CODE_BODY, "metadata": {"user_id": "bob"}}),
        (CLAUDE_CODE_HEADERS, without(CLAUDE_CODE_BODY, "system")),
        (CLAUDE_CODE_HEADERS, {**CLAUDE_CODE_BODY, "system": "You are a helpful assistant."}),
    ],
    ids=[
        "no-user-agent",
        "other-user-agent",
        "empty-x-app",
        "no-beta",
        "no-version",
        "no-metadata",
        "bad-user-id",
        "no-system",
        "other-system",
    ],
)
def test_claude_code_only_refuses_what_does_not_look_like_claude_code(headers, body):
    rules = GatewayRules(keys={GOOD}, claude_code_only=True)
    with running_emulator(rules) as gw:
        response = httpx.post(f"{gw.base_url}/v1/messages", headers={**headers, "x-api-key": GOOD}, json=body)
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "client_validation_error"


@pytest.mark.parametrize(
    "user_id", [USER_ID, "user_" + "b" * 64 + "_account__session_5f0c0f9e-1111"], ids=["json", "legacy"]
)
def test_claude_code_only_answers_a_request_that_looks_like_claude_code(user_id):
    rules = GatewayRules(keys={GOOD}, claude_code_only=True)
    body = {**CLAUDE_CODE_BODY, "metadata": {"user_id": user_id}}
    assert status(rules, x_api_key=GOOD, headers=dict(CLAUDE_CODE_HEADERS), body=body) == 200


def test_claude_code_only_checks_the_key_first():
    rules = GatewayRules(keys={GOOD}, claude_code_only=True)
    assert status(rules, x_api_key=OTHER, headers=dict(CLAUDE_CODE_HEADERS), body=CLAUDE_CODE_BODY) == 401


def test_a_bearer_first_gateway_applies_the_model_limits_of_the_key_it_authenticated():
    # The facts table: LiteLLM and sub2api read Authorization first, and with two different keys use the Bearer's.
    good, stale = "sk-good-key-0001", "sk-stale-key-0002"
    rules = GatewayRules(keys={good}, header_mode="bearer-first", key_models={good: {"claude-sonnet-4.6"}})
    headers = {"x-api-key": stale, "authorization": f"Bearer {good}"}
    body = {"model": "claude-sonnet-4.6", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    with running_emulator(rules) as gw:
        message = httpx.post(f"{gw.base_url}/v1/messages", headers=headers, json=body)
        listing = httpx.get(f"{gw.base_url}/v1/models", headers=headers)
    assert message.status_code == 200, message.text
    assert [m["id"] for m in listing.json()["data"]] == ["claude-sonnet-4.6"]


def test_a_gateway_that_serves_every_model_lists_none_rather_than_one():
    key = "sk-good-key-0001"
    body = {"model": "claude-opus-4-8", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    with running_emulator(GatewayRules(keys={key})) as gw:
        served = httpx.post(f"{gw.base_url}/v1/messages", headers={"x-api-key": key}, json=body)
        listing = httpx.get(f"{gw.base_url}/v1/models", headers={"x-api-key": key})
    assert served.status_code == 200
    assert listing.status_code == 404
