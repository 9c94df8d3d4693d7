"""What the support desk hears about: a key the gateway no longer takes, and a device left with old settings.

The probe's advice must name the causes at the gateway; My set-up (and /api/v1/me/configs/) must tell a
developer what the portal already knows, so they stop re-downloading in vain.
"""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from django.utils import timezone

from gateways.models import GatewayKey
from gateways.probes.classifier import classify_response, hint_for
from gateways.probes.runner import probe_key
from gateways.services import update_key_settings
from portal.times import written_time
from tests.conftest import TOKENBAY_SECRET
from tests.gateway_emulator import GatewayRules, running_emulator
from tests.gateways.test_device_reinstall_and_ps_extra_env import later, live_device
from tests.gateways.test_probe import probe

JSON = {"content-type": "application/json"}


def openai_error(message: str, code: str, kind: str = "new_api_error") -> str:
    return json.dumps({"error": {"message": message, "type": kind, "code": code}})


def anthropic_error(kind: str, message: str) -> str:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}})


def banners(html: str) -> dict[str, str]:
    """My set-up's notices by kind, as a developer reads them."""
    return dict(re.findall(r'<p class="banner[^"]*" data-notice="(\w+)"[^>]*>(.*?)</p>', html, re.S))


def setup_page(user) -> str:
    page = Client()
    page.force_login(user)
    return page.get("/setup/").content.decode()


def config_notice(api, user) -> dict | None:
    [config] = api(user).get("/api/v1/me/configs/").json()["results"]
    return config["notice"]


# --- 1. A Bearer gateway refusing the probe's own key -------------------------------------------------------


def test_bearer_gateway_refusing_the_probes_key_names_the_gateway_side_causes_first():
    rules = GatewayRules(auth_scheme="bearer", keys={"sk-some-other-key-000000"})  # ours expired at the gateway
    with running_emulator(rules) as gw:
        outcome = probe(gw.base_url, scheme="bearer")
        [call] = gw.message_requests()
    assert "x-api-key" not in call.headers  # the probe sent the key alone: no leftover key can be the cause
    assert outcome.verdict == "auth_failed"
    hint = outcome.hint
    for cause in ("disabled", "expired", "out of balance"):
        assert cause in hint, hint
    # The laptop's advice stays, after the gateway's causes, for a developer who still gets 401.
    assert hint.index("expired") < hint.index('ANTHROPIC_API_KEY must be "" (empty)') < hint.index("/logout")
    assert "probe passes" in hint


# --- 2. A spent balance is not a rejected field ------------------------------------------------------------

ANTHROPIC_NO_CREDIT = anthropic_error(
    "invalid_request_error",
    "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or "
    "purchase credits.",
)


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (400, ANTHROPIC_NO_CREDIT, "forbidden"),
        # New API: an exhausted token at authentication (401), a token or user without quota at pre-consume.
        (401, openai_error("该令牌额度已用尽", ""), "auth_failed"),
        (
            403,
            openai_error("token quota is not enough, token remain quota: $0.1", "pre_consume_token_quota_failed"),
            "forbidden",
        ),
        (403, openai_error("令牌额度不足", "pre_consume_token_quota_failed"), "forbidden"),
        (402, openai_error("user quota is not enough", "insufficient_user_quota"), "forbidden"),
        (403, openai_error("用户余额不足", ""), "forbidden"),
        # OpenAI-shaped gateways answer a spent plan with 429 insufficient_quota: waiting does not help.
        (
            429,
            openai_error(
                "You exceeded your current quota, please check your plan.", "insufficient_quota", "insufficient_quota"
            ),
            "forbidden",
        ),
        (402, "Payment Required", "forbidden"),
    ],
)
def test_a_spent_balance_is_named_as_the_balance_at_the_gateway(status, body, verdict):
    got, detail = classify_response(status, JSON, body)
    hint = hint_for(got, "x-api-key", detail)
    assert got == verdict, (got, detail)
    assert "field" not in hint, hint
    assert "balance" in hint and "gateway" in hint, hint


@pytest.mark.parametrize("scheme", ["x-api-key", "bearer"])
def test_a_spent_balance_gets_the_balance_advice_on_both_auth_schemes(scheme):
    verdict, detail = classify_response(401, JSON, openai_error("该令牌额度已用尽", ""))
    hint = hint_for(verdict, scheme, detail)
    assert hint.startswith("The gateway refused the request for the key's balance"), hint
    assert "ANTHROPIC_API_KEY" not in hint  # no laptop can fix a spent balance


def test_a_rejected_field_and_a_rate_limit_keep_their_own_advice():
    verdict, detail = classify_response(400, JSON, anthropic_error("invalid_request_error", "thinking: Extra inputs"))
    assert verdict == "bad_request" and "names the field" in hint_for(verdict, "x-api-key", detail)
    verdict, _ = classify_response(429, JSON, anthropic_error("rate_limit_error", "Number of requests exceeded."))
    assert verdict == "rate_limited"


# --- 3. My set-up tells the holder when the gateway refuses their key ----------------------------------------


def probe_through(rules: GatewayRules, key: GatewayKey) -> str:
    with running_emulator(rules) as gw:
        key.gateway.base_url = gw.base_url
        key.gateway.save()
        return probe_key(key, trigger="web").verdict


ACCEPTS_KEY = GatewayRules(auth_scheme="bearer", keys={TOKENBAY_SECRET})
KEY_EXPIRED = GatewayRules(auth_scheme="bearer", keys={"sk-another-valid-key-0000"})


@pytest.mark.django_db
def test_my_setup_tells_the_holder_the_gateway_refuses_their_key_and_since_when(api, bob, tokenbay_key, bob_assignment):
    with later(5):
        assert probe_through(ACCEPTS_KEY, tokenbay_key) == "ok"
    with later(10):
        assert probe_through(KEY_EXPIRED, tokenbay_key) == "auth_failed"
        first_refusal = GatewayKey.objects.get(pk=tokenbay_key.pk).last_probe_at
    with later(20):
        assert probe_through(KEY_EXPIRED, tokenbay_key) == "auth_failed"
        html = setup_page(bob)
        notice = config_notice(api, bob)
    sentence = banners(html)["failing"]
    assert 'data-notice="failing" role="alert"' in html
    assert "gateway refuses the key Bob laptop" in sentence
    assert f"Since {written_time(first_refusal)}" in sentence  # the first refusal after the last passing probe
    assert "not your set-up" in sentence and "team admin" in sentence
    assert TOKENBAY_SECRET not in html and TOKENBAY_SECRET[-8:] not in sentence
    assert "Download" not in sentence  # downloading again cannot help
    assert notice == {"kind": "failing", "sentence": re.sub(r"\s+", " ", notice["sentence"])}
    assert notice["sentence"].startswith(f"Since {written_time(first_refusal)}, the gateway refuses the key")


@pytest.mark.django_db
@pytest.mark.parametrize("verdict", ["ok", "unreachable", "timeout", "gateway_error", "rate_limited", "tls_error"])
def test_no_failing_notice_when_the_probe_does_not_say_the_key_is_refused(
    api, bob, tokenbay_key, bob_assignment, verdict
):
    # A passing key (with or without a warning) or a probe that did not reach the key says nothing about the key.
    with later(5):
        tokenbay_key.last_probe_verdict, tokenbay_key.last_probe_at = verdict, timezone.now()  # as the runner writes
        tokenbay_key.save()
        assert tokenbay_key.current_probe_verdict == verdict
        assert "failing" not in banners(setup_page(bob))
        assert config_notice(api, bob) is None


@pytest.mark.django_db
def test_a_settings_change_after_the_refusal_takes_the_failing_notice_away(alice, bob, tokenbay_key, bob_assignment):
    with later(5):
        assert probe_through(KEY_EXPIRED, tokenbay_key) == "auth_failed"
        assert "failing" in banners(setup_page(bob))
    with later(6):
        update_key_settings(key=tokenbay_key, changes={"model": "opus"}, actor=alice)  # the probe tested something else
        assert "failing" not in banners(setup_page(bob))


# --- 4. A live-only holder hears that their device must run the install command again -----------------------


@pytest.mark.django_db
def test_my_setup_tells_a_live_only_holder_to_run_the_install_command_again(api, alice, bob, bob_assignment):
    device, _ = live_device(bob_assignment)  # bob never downloaded a static set-up
    with later(5):
        update_key_settings(key=bob_assignment.key, changes={"model": "opus"}, actor=alice)
    device.refresh_from_db()
    assert device.needs_reinstall
    with later(6):
        html = setup_page(bob)
        notice = config_notice(api, bob)
    sentence = banners(html)["changed"]
    assert "Run the install command again on that device" in sentence and "My devices" in sentence
    assert "Download" not in sentence and "/download" not in sentence  # bob has no static copy to download again
    assert notice is not None and notice["kind"] == "changed" and "install command again" in notice["sentence"]


@pytest.mark.django_db
def test_a_holder_who_downloaded_after_the_change_gets_no_download_button_for_an_old_device(alice, bob, bob_assignment):
    live_device(bob_assignment)  # installed before the change below
    with later(5):
        update_key_settings(key=bob_assignment.key, changes={"model": "opus"}, actor=alice)
    page = Client()
    page.force_login(bob)
    with later(6):
        assert page.get(f"/setup/{bob_assignment.id}/zsh").status_code == 200  # the static copy is current
        sentence = banners(page.get("/setup/").content.decode())["changed"]
    assert "install command again" in sentence
    assert "Download zsh again" not in sentence


@pytest.mark.django_db
def test_a_holder_with_a_current_device_hears_nothing(alice, bob, bob_assignment):
    with later(5):
        update_key_settings(key=bob_assignment.key, changes={"model": "opus"}, actor=alice)
    with later(6):
        live_device(bob_assignment)  # installed after the change: its settings.json is current
    with later(7):
        assert banners(setup_page(bob)) == {}


@pytest.mark.django_db
def test_since_names_the_first_refusal_not_an_outage_before_it(api, bob, tokenbay_key, bob_assignment):
    outage = GatewayRules(auth_scheme="bearer", keys=set(), behaviour="500")  # a 502: the gateway, not the key
    with later(5):
        assert probe_through(ACCEPTS_KEY, tokenbay_key) == "ok"
    with later(10):
        assert probe_through(outage, tokenbay_key) == "gateway_error"
    with later(300):
        assert probe_through(KEY_EXPIRED, tokenbay_key) == "auth_failed"
        first_refusal = GatewayKey.objects.get(pk=tokenbay_key.pk).last_probe_at
        notice = config_notice(api, bob)
    assert notice["kind"] == "failing"
    assert notice["sentence"].startswith(f"Since {written_time(first_refusal)},"), notice["sentence"]
