"""The same removal sent twice at once (a double click, a client's retry, two admins) is done once.

Each request reads its object before its transaction; the second one's copy still shows the object as it was.
SQLite serialises the writes but not those reads, so the services must check again inside the transaction.
"""

from __future__ import annotations

import pytest

from alerts import services as alert_services
from alerts.models import Channel
from portal import services as portal_services
from portal.models import AccessToken, Action, AuditEvent

pytestmark = pytest.mark.django_db


def test_a_token_revoked_twice_at_once_is_revoked_and_recorded_once(alice):
    token, _ = portal_services.issue_token(user=alice, name="laptop", actor=alice)
    first, second = AccessToken.objects.get(pk=token.pk), AccessToken.objects.get(pk=token.pk)  # both read first
    portal_services.revoke_token(token=first, actor=alice)
    revoked_at = AccessToken.objects.get(pk=token.pk).revoked_at
    portal_services.revoke_token(token=second, actor=alice)
    assert AccessToken.objects.get(pk=token.pk).revoked_at == revoked_at  # not moved forward
    assert AuditEvent.objects.filter(action=Action.TOKEN_REVOKED, target=token.lookup_id).count() == 1


def test_a_channel_removed_twice_at_once_is_recorded_once(web, alice):
    channel = alert_services.create_channel(team=web, kind="email", target="team@example.com", actor=alice)
    first, second = Channel.objects.get(pk=channel.pk), Channel.objects.get(pk=channel.pk)
    alert_services.delete_channel(channel=first, actor=alice)
    alert_services.delete_channel(channel=second, actor=alice)
    assert not Channel.objects.filter(pk=channel.pk).exists()
    assert AuditEvent.objects.filter(action=Action.CHANNEL_DELETED).count() == 1


def test_an_assignment_removed_twice_at_once_is_recorded_once(bob_assignment, alice):
    from gateways import services as gateway_services
    from gateways.models import Assignment

    first, second = Assignment.objects.get(pk=bob_assignment.pk), Assignment.objects.get(pk=bob_assignment.pk)
    gateway_services.remove_assignment(assignment=first, actor=alice)
    gateway_services.remove_assignment(assignment=second, actor=alice)
    assert not Assignment.objects.filter(pk=bob_assignment.pk).exists()
    assert AuditEvent.objects.filter(action=Action.ASSIGNMENT_REMOVED).count() == 1
