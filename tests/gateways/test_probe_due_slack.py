"""`probe --due` on the README's five-minute timer probes each key once per its gateway's interval.

A key's `last_probe_at` is when its probe started, a moment after its run started, so the next run, one
interval later, starts a moment short of a full interval after that stamp: the due check allows for it.
"""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command

from gateways.models import GatewayKey
from tests.conftest import TOKENBAY_SECRET
from tests.gateway_emulator import GatewayRules, running_emulator

START = datetime(2030, 1, 10, 12, 0, tzinfo=UTC)


def timer_run(at: datetime) -> None:
    """One run of `manage.py probe --due`, as the timer starts it at `at` (the clock keeps ticking)."""
    with time_machine.travel(at, tick=True):
        call_command("probe", "--due")  # these keys pass: no exit 1


@pytest.fixture
def slow_gateway(tokenbay, tokenbay_key):
    """A gateway that takes 0.3 s to answer: each probe's result is saved a moment after its run started."""
    with running_emulator(GatewayRules(auth_scheme="bearer", keys={TOKENBAY_SECRET}, delay=0.3)) as gw:
        tokenbay.base_url = gw.base_url
        tokenbay.save()
        yield gw


def test_a_five_minute_interval_is_probed_by_each_five_minute_timer_run(tokenbay, slow_gateway):
    tokenbay.probe_interval_minutes = 5
    tokenbay.save()
    seen = []
    for run in range(3):  # */5 * * * *: runs at 12:00, 12:05, 12:10
        timer_run(START + timedelta(minutes=5 * run))
        seen.append(slow_gateway.probes_run())
    assert seen == [1, 2, 3], f"probes after each timer run: {seen}"


def test_the_default_hourly_interval_is_probed_hourly_not_every_65_minutes(tokenbay, slow_gateway):
    tokenbay.probe_interval_minutes = 60
    tokenbay.save()
    timer_run(START)
    timer_run(START + timedelta(minutes=60))
    assert slow_gateway.probes_run() == 2, "the 13:00 run skipped the key probed at 12:00"


def test_a_key_is_not_probed_again_well_before_its_interval(tokenbay, slow_gateway):
    tokenbay.probe_interval_minutes = 5
    tokenbay.save()
    timer_run(START)
    for minute in (1, 2, 3):  # a timer every minute: the key probed at 12:00 waits for 12:04 at the earliest
        timer_run(START + timedelta(minutes=minute))
    assert slow_gateway.probes_run() == 1


@pytest.mark.parametrize(
    ("interval", "probed_ago", "due"),
    [
        (5, timedelta(minutes=5), True),
        (5, timedelta(minutes=4, seconds=30), True),  # stamped 30 s into the last run
        (5, timedelta(minutes=4), True),  # a minute of slack at most
        (5, timedelta(minutes=3, seconds=59), False),
        (1, timedelta(seconds=30), True),  # half a one-minute interval
        (1, timedelta(seconds=29), False),
        (60, timedelta(minutes=59, seconds=1), True),
        (60, timedelta(minutes=58, seconds=59), False),
    ],
)
def test_the_command_and_the_key_agree_on_what_is_due(tokenbay, tokenbay_key, interval, probed_ago, due):
    tokenbay.probe_interval_minutes = interval
    tokenbay.save()
    now = START
    GatewayKey.objects.filter(pk=tokenbay_key.pk).update(last_probe_at=now - probed_ago)
    key = GatewayKey.objects.select_related("gateway").get(pk=tokenbay_key.pk)
    assert key.is_due_for_probe(now) is due
    assert GatewayKey.objects.due_for_probe(now).filter(pk=key.pk).exists() is due
