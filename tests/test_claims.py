"""Several servers, one database: due probes and deliveries are claimed, so none is done twice.

The first tests hold on any database: a row another run holds is left alone until its lease runs
out. The last two start real `manage.py` processes side by side against PostgreSQL, as two
servers with the same timer would, and count what reached the gateway and the receiver.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from alerts.delivery import deliver_due
from alerts.models import Delivery
from alerts.services import create_channel, send_test
from gateways.models import Gateway, GatewayKey, ProbeResult
from gateways.services import store_key
from portal import claims
from portal.models import Membership, Role, Team
from tests.conftest import ROOT, TEST_AUDIT_KEYRING, TEST_KEYRING, TOKENBAY_SECRET, make_user
from tests.gateway_emulator import GatewayRules, running_emulator
from tests.webhook_receiver import running_receiver

ON_POSTGRES = connection.vendor == "postgresql"


@pytest.mark.django_db
def test_a_claim_holds_rows_until_released_or_its_lease_runs_out(tokenbay_key, tokaify_key):
    now, lease = timezone.now(), timedelta(minutes=10)
    due = GatewayKey.objects.all()
    fields = {"claimed_at": "probe_claimed_at", "claim_field": "probe_claim"}
    first = claims.claim(due, now=now, lease=lease, limit=1, **fields)
    second = claims.claim(due, now=now, lease=lease, limit=5, **fields)
    assert first and second and first != second
    assert (
        GatewayKey.objects.filter(probe_claim=first).count()
        == GatewayKey.objects.filter(probe_claim=second).count()
        == 1
    )
    assert claims.claim(due, now=now, lease=lease, limit=5, **fields) is None  # nothing free
    assert claims.claim(due, now=now + lease + timedelta(seconds=1), lease=lease, limit=5, **fields)  # a dead run's
    claims.release(GatewayKey, first, **fields)
    assert not GatewayKey.objects.filter(probe_claim=first).exists()


@pytest.mark.django_db
def test_probe_due_leaves_a_key_another_server_is_probing(tokenbay, tokenbay_key):
    with running_emulator(GatewayRules(auth_scheme="bearer", keys={TOKENBAY_SECRET})) as gw:
        tokenbay.base_url = gw.base_url
        tokenbay.save()
        GatewayKey.objects.filter(pk=tokenbay_key.pk).update(probe_claimed_at=timezone.now(), probe_claim=uuid.uuid4())
        call_command("probe", "--due")
        assert gw.message_requests() == []
        assert not ProbeResult.objects.exists()
        with time_machine.travel(timezone.now() + timedelta(minutes=11)):  # that server died: its lease runs out
            call_command("probe", "--due")
        assert gw.message_requests()
    # One probe (a probe may send several requests: the credential-header checks ride along).
    assert ProbeResult.objects.filter(key=tokenbay_key).count() == 1
    key = GatewayKey.objects.get(pk=tokenbay_key.pk)
    assert key.probe_claim is None and key.last_probe_verdict == "ok"


@pytest.mark.django_db
def test_notify_leaves_a_delivery_another_server_is_sending(web, alice, settings):
    settings.NOTIFY_TIMEOUT = 1
    with running_receiver() as receiver:
        channel = create_channel(team=web, kind="webhook", target=receiver.url("/hook"), secret="s" * 20, actor=alice)
        send_test(channel=channel, actor=alice)
        Delivery.objects.update(claimed_at=timezone.now(), claim=uuid.uuid4())
        deliver_due()
        assert receiver.received == []
        with time_machine.travel(timezone.now() + timedelta(minutes=6)):
            deliver_due()
        assert len(receiver.received) == 1
    assert Delivery.objects.get().status == "sent"


# --- Two processes at once, on PostgreSQL ----------------------------------------------------------

needs_postgres = pytest.mark.skipif(
    not ON_POSTGRES,
    reason="two processes need one database server they both reach: the test database on SQLite is in memory. "
    "CI runs this on PostgreSQL (DATABASE_URL=postgres://...).",
)
KEYS = 40


def process_env(**extra: str) -> dict:
    """The environment of a second server: the test database, the test keyrings."""
    url = urlsplit(os.environ["DATABASE_URL"])
    database = urlunsplit(url._replace(path=f"/{connection.settings_dict['NAME']}"))
    return {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": database,
        "PORTAL_ENCRYPTION_KEYS": TEST_KEYRING,
        "PORTAL_AUDIT_KEYS": TEST_AUDIT_KEYRING,
        "PROBE_ALLOW_PRIVATE_IPS": "True",
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def side_by_side(*args: str, env: dict) -> list[subprocess.CompletedProcess]:
    """Start two `manage.py` processes at the same moment and wait for both."""
    runs = [
        subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for run in runs:
        out, err = run.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(run.args, run.returncode, out, err))
    return results


@pytest.fixture
def many_keys(db):
    team = Team.objects.create(name="Load", slug="load")
    admin = make_user("loadadmin")
    Membership.objects.create(team=team, user=admin, role=Role.ADMIN)
    gateway = Gateway.objects.get(slug="tokenbay")
    for n in range(KEYS):
        store_key(
            team=team, gateway=gateway, label=f"key {n:02d}", secret=f"sk-claims-{n:02d}-0123456789abcdef", actor=admin
        )
    return team, admin, gateway


@needs_postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_servers_probing_and_notifying_at_once_probe_each_key_once_and_send_each_alert_once(many_keys):
    team, admin, gateway = many_keys
    # Every probe fails, so every key makes a "started failing" notification to deliver.
    with (
        running_emulator(GatewayRules(auth_scheme="bearer", keys=set(), delay=0.5)) as gw,
        running_receiver(delay=0.1) as receiver,
    ):
        gateway.base_url = gw.base_url
        gateway.save()
        create_channel(team=team, kind="webhook", target=receiver.url("/hook"), secret="s" * 20, actor=admin)
        runs = side_by_side("probe", "--due", "--concurrency", "2", env=process_env(NOTIFY_CONCURRENCY="2"))
    probed = [int(re.search(r"(\d+) probed", run.stdout).group(1)) for run in runs]
    assert all(run.returncode == 1 for run in runs), [run.stderr[-2000:] for run in runs]  # failing keys: exit 1
    assert sum(probed) == KEYS, f"keys were probed by both runs: {probed}"
    assert min(probed) > 0, f"the two runs did not overlap, so this proves nothing: {probed}"
    per_key = Counter(ProbeResult.objects.values_list("key_id", flat=True))
    assert len(per_key) == KEYS and set(per_key.values()) == {1}
    requests = gw.message_requests()
    secrets_seen = Counter(r.headers["authorization"] for r in requests if "authorization" in r.headers)
    assert len(secrets_seen) == KEYS and set(secrets_seen.values()) == {1}, "a key was probed twice"
    delivered = Counter(r.headers["x-portal-delivery"] for r in receiver.received)
    assert len(delivered) == KEYS and set(delivered.values()) == {1}
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}


@needs_postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_notify_runs_at_once_send_each_delivery_once(many_keys):
    team, admin, _ = many_keys
    with running_receiver(delay=0.3) as receiver:
        channel = create_channel(team=team, kind="webhook", target=receiver.url("/hook"), secret="s" * 20, actor=admin)
        for _ in range(KEYS):
            send_test(channel=channel, actor=admin)
        runs = side_by_side("notify", env=process_env(NOTIFY_CONCURRENCY="2"))
    assert all(run.returncode == 0 for run in runs), [run.stderr[-2000:] for run in runs]
    sent = [int(re.search(r"(\d+) sent", run.stdout).group(1)) for run in runs]
    assert sum(sent) == KEYS, f"deliveries were sent by both runs: {sent}"
    assert min(sent) > 0, f"the two runs did not overlap, so this proves nothing: {sent}"
    delivered = Counter(r.headers["x-portal-delivery"] for r in receiver.received)
    assert len(delivered) == KEYS and set(delivered.values()) == {1}
