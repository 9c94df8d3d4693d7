"""A failed delivery holds back only its own channel's newer news: one dead receiver silences no other team."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import messages
from alerts.models import Delivery, Notification
from alerts.services import create_channel, notify_team

pytestmark = pytest.mark.django_db


def test_a_failing_channel_holds_back_no_other_channels_news(web, alice, data_team, charlie):
    """Team web's webhook is down (its delivery failed once and waits for its retry); the news that follows for
    team data's channel, a different receiver, must still go out at once."""
    now = timezone.now()
    down = create_channel(team=web, kind="slack", target="https://hooks.example.com/web", actor=alice)
    fine = create_channel(team=data_team, kind="slack", target="https://hooks.example.com/data", actor=charlie)
    notify_team(web, messages.channel_test(team_name="Web", actor_name="alice"), channels=[down])
    notify_team(data_team, messages.channel_test(team_name="Data", actor_name="charlie"), channels=[fine])
    Notification.objects.update(event="key.failing")  # news, which keeps its order (a test would not wait)
    failed = Delivery.objects.get(channel=down)
    failed.attempts, failed.next_attempt_at = 1, now + timedelta(hours=1)
    failed.save()
    newer = Delivery.objects.get(channel=fine)
    assert newer.pk > failed.pk
    assert list(Delivery.objects.due(now + timedelta(seconds=1))) == [newer]
