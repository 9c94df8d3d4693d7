"""README: TIME_ZONE is "the zone the portal writes times in (audit exports, mail, key expiry typed on the
pages)". My set-up's notices, the self-assignment mail and the alerts write their times in it, zone named."""

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone

from alerts.messages import key_expiring
from gateways.models import GatewayKey
from gateways.notices import self_assignment_message
from gateways.services import assign_key, rotate_key_secret

ZONE = "Pacific/Kiritimati"  # UTC+14: most days differ from UTC's


@pytest.fixture
def far_zone(settings):
    settings.TIME_ZONE = ZONE
    timezone.activate(ZoneInfo(ZONE))  # what Django does for each request when TIME_ZONE is set at start-up
    yield ZoneInfo(ZONE)
    timezone.deactivate()


def notice(client, kind: str) -> str:
    page = client.get("/setup/").content.decode()
    found = re.search(rf'data-notice="{kind}"[^>]*>([^<]*)', page)
    assert found, page[:2000]
    return found.group(1)


def test_the_expiring_notice_gives_the_day_the_admin_typed(client, far_zone, alice, bob, bob_assignment, tokenbay_key):
    # The admin typed "2030-05-02 00:00" in the form labelled "Expires (Pacific/Kiritimati)".
    GatewayKey.objects.filter(pk=tokenbay_key.pk).update(expires_at=datetime(2030, 5, 2, 0, 0, tzinfo=far_zone))
    with time_machine.travel(datetime(2030, 4, 25, tzinfo=UTC)):
        client.force_login(alice)
        assert "2030-05-02" in client.get("/teams/web/").content.decode()  # the team page: the day typed
        client.force_login(bob)
        sentence = notice(client, "expiring")
    assert "expires on 2030-05-02 00:00 +14." in sentence, sentence


def test_the_rotated_notice_is_in_the_portals_zone(client, far_zone, alice, bob, bob_assignment, tokenbay_key):
    with time_machine.travel(datetime(2030, 5, 1, 11, 0, tzinfo=far_zone), tick=False):
        bob_assignment.last_download_at = timezone.now()
        bob_assignment.save()
    with time_machine.travel(datetime(2030, 5, 1, 12, 30, tzinfo=far_zone), tick=False):
        rotate_key_secret(key=tokenbay_key, secret="sk-tokenbay-rotated-0123456789abcdef", actor=alice)
        client.force_login(bob)
        sentence = notice(client, "rotated")
    assert "rotated on 2030-05-01 12:30 +14," in sentence, sentence


def test_the_self_assignment_mail_is_in_the_portals_zone(far_zone, alice, staff, tokaify_key):
    with time_machine.travel(datetime(2030, 5, 1, 9, 15, tzinfo=far_zone), tick=False):
        assignment = assign_key(key=tokaify_key, username="alice", actor=alice)
    _, body = self_assignment_message(assignment, team_url="/teams/web/")
    assert "to themselves on 2030-05-01 09:15 +14." in body, body


def test_the_portals_zone_wins_over_the_one_a_request_activated(settings, alice, staff, tokaify_key):
    """A mail is written in TIME_ZONE whoever's request (and zone) sent it, as the alerts are."""
    settings.TIME_ZONE = "Europe/Berlin"
    with time_machine.travel(datetime(2030, 1, 15, 9, 15, tzinfo=UTC), tick=False):
        assignment = assign_key(key=tokaify_key, username="alice", actor=alice)
    GatewayKey.objects.filter(pk=tokaify_key.pk).update(expires_at=datetime(2030, 1, 20, 17, 0, tzinfo=UTC))
    tokaify_key.refresh_from_db()
    with timezone.override(ZoneInfo(ZONE)):
        _, body = self_assignment_message(assignment, team_url="/teams/web/")
        expiring = key_expiring(tokaify_key).text
    assert "on 2030-01-15 10:15 CET." in body, body
    assert "expires on 2030-01-20 18:00 CET;" in expiring, expiring


def test_in_utc_the_notices_still_name_utc(client, alice, bob, bob_assignment, tokenbay_key):
    GatewayKey.objects.filter(pk=tokenbay_key.pk).update(expires_at=datetime(2030, 5, 2, 6, 30, tzinfo=UTC))
    with time_machine.travel(datetime(2030, 4, 25, tzinfo=UTC)):
        client.force_login(bob)
        assert "expires on 2030-05-02 06:30 UTC." in notice(client, "expiring")
