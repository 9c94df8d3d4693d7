"""The connections list: who sees which rows, and filters that pick exactly what they name."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from gateways.models import Assignment
from gateways.services import assign_key
from portal.models import Membership, Role
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def erin(web):
    """A second member of "web", beside bob."""
    user = make_user("erin")
    Membership.objects.create(team=web, user=user, role=Role.MEMBER)
    return user


@pytest.fixture
def erin_assignment(tokaify_key, erin, alice):
    return assign_key(key=tokaify_key, username="erin", actor=alice)


def rows(client, query: str = "") -> list[dict]:
    return client.get(f"/api/v1/connections/{query}").json()["results"]


def users_listed(client, query: str = "") -> list[str]:
    return [row["user"] for row in rows(client, query)]


def test_a_member_sees_only_their_own_connection_not_a_teammates(api, bob, bob_assignment, erin_assignment):
    """A member sees their own connection; which keys a teammate holds is for the team's admins and auditors."""
    assert users_listed(api(bob)) == ["bob"]


def test_the_gateway_filter_lists_only_that_gateway(api, staff, bob_assignment, erin_assignment):
    """Filtering by gateway leaves out the connections to every other gateway."""
    assert users_listed(api(staff), "?gateway=tokenbay") == ["bob"]
    assert users_listed(api(staff), "?gateway=tokaify") == ["erin"]


def test_the_user_filter_matches_the_whole_name_only(api, staff, bob_assignment):
    """`?user=bo` finds nobody: a name's beginning must not pick someone else's connections."""
    assert users_listed(api(staff), "?user=bo") == []
    assert users_listed(api(staff), "?user=bob") == ["bob"]


def test_a_download_older_than_the_stale_days_is_stale_in_the_row_and_the_filter(api, staff, bob_assignment, settings):
    """A current download goes stale once it is older than CONNECTION_STALE_DAYS, in the row and under ?state=stale."""
    key = bob_assignment.key
    Assignment.objects.filter(pk=bob_assignment.pk).update(
        last_download_at=timezone.now(), last_download_fingerprint=key.fingerprint, last_download_format="settings.json"
    )
    [fresh] = rows(api(staff))
    assert fresh["download_stale"] is False
    assert rows(api(staff), "?state=stale") == []
    with time_machine.travel(timezone.now() + timedelta(days=settings.CONNECTION_STALE_DAYS + 1)):
        [old] = rows(api(staff))
        assert old["download_stale"] is True
        assert users_listed(api(staff), "?state=stale") == ["bob"]
