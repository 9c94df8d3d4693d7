"""A probe tests the gateway and key as they were when it started: staff edits meanwhile are not undone or credited.

Real gateways (tests/gateway_emulator.py): the old address answers slowly, and staff move the gateway
to a new one while the probe waits for it, as they would from the catalogue page.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from alerts.models import Notification
from alerts.services import create_channel
from gateways import services
from gateways.config.builder import build_config
from gateways.models import Gateway, GatewayKey, ProbeResult
from gateways.probes.probe import ProbeOutcome
from gateways.probes.runner import SAVE_BATCH, probe_key, save_outcome, save_outcomes
from portal.crypto import Secret
from tests.conftest import TOKAIFY_SECRET
from tests.gateway_emulator import GatewayRules, running_emulator

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

OTHER_SECRET = "sk-someone-else-0123456789"


def move_gateway_later(seconds: float, **changes) -> tuple[threading.Thread, dict]:
    """Staff change the Tokaify gateway `seconds` from now, on a connection of their own."""
    box: dict = {}

    def run() -> None:
        try:
            time.sleep(seconds)
            gateway = Gateway.objects.get(slug="tokaify")
            services.update_gateway(gateway=gateway, changes=changes, actor=None)
        except BaseException as exc:
            box["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


def loaded(key: GatewayKey) -> GatewayKey:
    return GatewayKey.objects.select_related("gateway", "team").get(pk=key.pk)


def test_a_probe_in_flight_while_the_base_url_changes_is_history_not_the_keys_verdict(tokaify_key, alice):
    with (
        running_emulator(GatewayRules(keys={TOKAIFY_SECRET}, delay=1.5)) as old,
        running_emulator(GatewayRules(keys={OTHER_SECRET})) as new,
    ):
        Gateway.objects.filter(slug="tokaify").update(base_url=old.base_url)
        thread, box = move_gateway_later(0.5, base_url=new.base_url)
        result = probe_key(loaded(tokaify_key), trigger="web", user=alice)
        thread.join()
        assert "error" not in box, box
        assert len(new.message_requests()) == 0  # nobody asked the new address
    assert result.verdict == "ok"  # what the old address said, kept in the key's history
    assert ProbeResult.objects.filter(key=tokaify_key).count() == 1
    key = GatewayKey.objects.get(pk=tokaify_key.pk)
    # The key page, the gateway table and connections read the current verdict: no probe has tested the new address.
    assert key.current_probe_verdict == ""
    assert result.created_at < key.config_changed_at  # the result is dated when the probe started


def test_a_failing_probe_of_the_old_address_does_not_page_the_team_about_the_new_one(tokaify_key, web, alice):
    create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    with (
        running_emulator(GatewayRules(keys={OTHER_SECRET}, delay=1.5)) as old,
        running_emulator(GatewayRules(keys={TOKAIFY_SECRET})) as new,
    ):
        Gateway.objects.filter(slug="tokaify").update(base_url=old.base_url)
        thread, box = move_gateway_later(0.5, base_url=new.base_url)
        result = probe_key(loaded(tokaify_key), trigger="command")
        thread.join()
        assert "error" not in box, box
    assert result.verdict == "auth_failed"
    assert not GatewayKey.objects.failing().filter(pk=tokaify_key.pk).exists()  # "Failing keys"
    assert not Notification.objects.filter(event="key.failing").exists()


def test_a_run_that_loaded_the_key_before_the_edit_does_not_count_for_the_new_address(tokaify_key, alice):
    """`probe --due` loads its keys, then probes them one by one: an edit between the two is not credited."""
    with (
        running_emulator(GatewayRules(keys={TOKAIFY_SECRET})) as old,
        running_emulator(GatewayRules(keys={OTHER_SECRET})) as new,
    ):
        Gateway.objects.filter(slug="tokaify").update(base_url=old.base_url)
        loaded_by_the_run = loaded(tokaify_key)
        services.update_gateway(
            gateway=Gateway.objects.get(slug="tokaify"), changes={"base_url": new.base_url}, actor=None
        )
        assert probe_key(loaded_by_the_run, trigger="command").verdict == "ok"
        assert len(new.message_requests()) == 0
    assert GatewayKey.objects.get(pk=tokaify_key.pk).current_probe_verdict == ""
    # The next probe, of the new address, counts.
    with running_emulator(GatewayRules(keys={TOKAIFY_SECRET})) as newer:
        Gateway.objects.filter(slug="tokaify").update(base_url=newer.base_url)
        probe_key(loaded(tokaify_key), trigger="command")
    assert GatewayKey.objects.get(pk=tokaify_key.pk).current_probe_verdict == "ok"


def test_header_facts_seen_at_the_old_address_are_not_put_back_after_a_base_url_change(tokaify_key, alice):
    """update_gateway clears credential_headers on a new base URL; a probe of the old one must not refill them."""
    # The old address takes only Bearer: its facts would make every Tokaify set-up say "set the auth scheme to Bearer".
    with (
        running_emulator(GatewayRules(auth_scheme="bearer", keys={TOKAIFY_SECRET}, delay=1.5)) as old,
        running_emulator(GatewayRules(keys={TOKAIFY_SECRET})) as new,
    ):
        Gateway.objects.filter(slug="tokaify").update(base_url=old.base_url, credential_headers={})
        thread, box = move_gateway_later(0.5, base_url=new.base_url)
        result = probe_key(loaded(tokaify_key), trigger="web", user=alice)
        thread.join()
        assert "error" not in box, box
    assert result.details.get("credential_headers")  # the probe did learn them, of the old address
    gateway = Gateway.objects.get(slug="tokaify")
    assert gateway.base_url == new.base_url
    assert gateway.credential_headers == {}
    assert not gateway.auth_scheme_warning


def test_header_facts_are_still_learnt_when_nothing_changed_meanwhile(tokaify_key, alice):
    with running_emulator(GatewayRules(auth_scheme="bearer", keys={TOKAIFY_SECRET})) as gw:
        Gateway.objects.filter(slug="tokaify").update(base_url=gw.base_url, credential_headers={})
        result = probe_key(loaded(tokaify_key), trigger="web", user=alice)
    gateway = Gateway.objects.get(slug="tokaify")
    assert gateway.credential_headers["probe"] == result.pk
    assert "set the gateway's auth scheme to Bearer" in gateway.auth_scheme_warning


def test_a_probe_saved_after_a_newer_one_does_not_replace_its_verdict(tokaify_key, web, alice):
    """A scheduled run's probe started first, an admin's 'Probe now' later but saved first: the newer one counts."""
    create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    loaded_by_the_run = loaded(tokaify_key)
    started = timezone.now()
    save_outcome(
        loaded(tokaify_key),
        ProbeOutcome("ok", status_code=200, started_at=started + timedelta(seconds=2)),
        trigger="web",
    )
    failing = ProbeOutcome("auth_failed", status_code=401, hint="The gateway refused the key.", started_at=started)
    older = save_outcome(loaded_by_the_run, failing, trigger="command")
    key = GatewayKey.objects.get(pk=tokaify_key.pk)
    assert key.current_probe_verdict == "ok"
    assert key.last_probe_at == started + timedelta(seconds=2)
    assert older.created_at == started  # in the history, in the order the probes ran
    assert [r.verdict for r in ProbeResult.objects.filter(key=tokaify_key)] == ["ok", "auth_failed"]
    assert not Notification.objects.filter(event="key.failing").exists()


def test_after_a_style_change_the_probe_asks_for_the_model_the_set_ups_now_send(api, staff, web, alice):
    create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    secret = "sk-acme-alice-0123456789abcdef"
    # A gateway that serves only dotted ids (TokenBay's rule), added first as hyphenated by mistake.
    with running_emulator(GatewayRules(keys={secret}, models={"claude-sonnet-4.6"})) as gw:
        client = api(staff)
        created = client.post(
            "/api/v1/gateways/",
            {
                "slug": "acme",
                "name": "Acme",
                "base_url": gw.base_url,
                "model_id_style": "hyphenated",
                "default_sonnet_model": "claude-sonnet-4.6",
                "probe_model": "claude-sonnet-4.6",
            },
            format="json",
        )
        assert created.status_code == 201, created.json()
        assert created.json()["probe_model"] == "claude-sonnet-4-6"
        assert client.patch("/api/v1/gateways/acme/", {"model_id_style": "dotted"}, format="json").status_code == 200
        gateway = Gateway.objects.get(slug="acme")
        key = services.store_key(team=web, gateway=gateway, label="Acme", secret=secret, actor=alice)
        services.assign_key(key=key, username="alice", actor=alice)
        assert build_config(gateway, key, Secret(secret)).env["ANTHROPIC_DEFAULT_SONNET_MODEL"] == "claude-sonnet-4.6"
        result = probe_key(loaded(key), trigger="web", user=alice)
        asked = {r.body.get("model") for r in gw.message_requests() if r.body and "max_tokens" in r.body}
    assert asked == {"claude-sonnet-4.6"}
    assert result.verdict == "ok", (result.verdict, result.hint)
    assert not Notification.objects.filter(event="key.failing").exists()


def test_a_full_batch_of_probes_is_saved_and_each_key_gets_its_own_start(web, tokaify):
    """One compare-and-set UPDATE for SAVE_BATCH keys, each stamped with its own probe's start."""
    keys = []
    for n in range(SAVE_BATCH):
        key = GatewayKey(team=web, gateway=tokaify, label=f"batch {n:03d}")
        key.set_secret(f"sk-batch-{n:04d}-0123456789abcdef")
        keys.append(key)
    GatewayKey.objects.bulk_create(keys)
    keys = list(GatewayKey.objects.filter(label__startswith="batch ").select_related("gateway", "team"))
    first = timezone.now()  # the probes started after the keys were stored
    outcomes = [
        (key, ProbeOutcome("ok", status_code=200, started_at=first + timedelta(milliseconds=n)))
        for n, key in enumerate(keys)
    ]
    save_outcomes(outcomes, trigger="command")
    stamped = dict(GatewayKey.objects.filter(label__startswith="batch ").values_list("pk", "last_probe_at"))
    assert stamped == {key.pk: outcome.started_at for key, outcome in outcomes}
    assert {key.current_probe_verdict for key in GatewayKey.objects.filter(label__startswith="batch ")} == {"ok"}
