"""An auditor asks the same question of the page, the API and the exports, and gets the same answer."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from gateways.devices import copies_out
from gateways.offboarding import for_account, offboard
from gateways.services import (
    assign_key,
    deliver_config,
    record_expirations,
    store_key,
    update_key_settings,
)
from portal.invitations import create_invitation
from portal.models import Membership
from portal.services import add_member, issue_token, remove_member
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

FAR_ZONE = "Pacific/Kiritimati"  # UTC+14: a time written in UTC names another day


def csv_rows(response) -> list[dict]:
    assert response.status_code == 200, response
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return list(csv.DictReader(io.StringIO(body.decode())))


def api_rows(client, url: str) -> list[dict]:
    rows: list[dict] = []
    while url:
        answer = client.get(url)
        assert answer.status_code == 200, answer.content[:500]
        rows.extend(answer.json()["results"])
        url = answer.json()["next"]
    return rows


@pytest.fixture
def far_zone(settings):
    settings.TIME_ZONE = FAR_ZONE
    return ZoneInfo(FAR_ZONE)


def test_an_offboarded_accounts_static_copies_are_named_in_each_teams_trail_as_a_removed_members_are(
    client, api, web, data_team, alice, dave, charlie, staff, tokenbay_key, tokaify_key, tokenbay
):
    data_key = store_key(
        team=data_team, gateway=tokenbay, label="Data CI", secret="sk-tb-data-0123456789abcdef", actor=charlie
    )
    for name in ("erin", "frank"):
        make_user(name)
        add_member(team=web, username=name, role="member", actor=alice)
        deliver_config(assignment=assign_key(key=tokenbay_key, username=name, actor=alice), format_name="bash")
    # frank also holds a web key he never downloaded, and a downloaded copy of the data team's key.
    assign_key(key=tokaify_key, username="frank", actor=alice)
    add_member(team=data_team, username="frank", role="member", actor=charlie)
    deliver_config(assignment=assign_key(key=data_key, username="frank", actor=charlie), format_name="zsh")

    remove_member(membership=Membership.objects.get(team=web, user__username="erin"), actor=alice)
    offboard(for_account(Membership.objects.get(team=web, user__username="frank").user), actor=staff)

    # The web team's auditor, through the API: both leavers, each with the web key they left with.
    left = {
        row["target"]: row["details"]
        for row in api_rows(api(dave), "/api/v1/audit-events/?team=web&action=member.removed")
    }
    assert set(left) == {"erin", "frank"}
    assert left["frank"]["via"] == "account.offboarded"
    expected = [
        {"id": str(tokenbay_key.pk), "team": "web", "key": tokenbay_key.short_fingerprint, "label": "Bob laptop"}
    ]
    assert left["erin"]["static_copies"] == expected
    assert left["frank"]["static_copies"] == expected, "the data team's key is not the web team's to read"

    # The same row in the team's audit CSV.
    client.force_login(dave)
    exported = {
        r["target"]: json.loads(r["details"])
        for r in csv_rows(client.get("/audit/?export=csv&team=web"))
        if r["action"] == "member.removed"
    }
    assert exported["frank"]["static_copies"] == expected

    # The data team's trail names the data key only.
    [data_row] = api_rows(api(charlie), "/api/v1/audit-events/?team=data&action=member.removed")
    assert data_row["target"] == "frank"
    assert [c["key"] for c in data_row["details"]["static_copies"]] == [data_key.short_fingerprint]

    # frank is named in his team row and in the account's row: the key page still counts him once.
    assert copies_out(tokenbay_key) == 2
    assert copies_out(data_key) == 1
    client.force_login(alice)
    page = client.get(f"/keys/{tokenbay_key.pk}/").content.decode()
    assert re.search(r"2 developers hold\s+a static copy", page)


def test_an_offboarded_accounts_team_row_names_no_copies_when_none_was_downloaded(
    api, web, alice, dave, staff, tokenbay_key
):
    make_user("frank")
    add_member(team=web, username="frank", role="member", actor=alice)
    assign_key(key=tokenbay_key, username="frank", actor=alice)
    offboard(for_account(Membership.objects.get(team=web, user__username="frank").user), actor=staff)

    [row] = api_rows(api(dave), "/api/v1/audit-events/?team=web&action=member.removed")
    assert "static_copies" not in row["details"], "as a removal's row, which lists copies only when there are some"
    assert copies_out(tokenbay_key) == 0


@pytest.mark.parametrize("address", ["/connections/?export=csv", "/api/v1/connections/?export=csv"])
def test_the_connections_csv_writes_its_times_in_the_portals_zone_as_the_api_does(
    client, api, far_zone, alice, bob, dave, tokenbay_key, address
):
    update_key_settings(key=tokenbay_key, changes={"expires_at": datetime(2026, 12, 1, tzinfo=far_zone)}, actor=alice)
    with time_machine.travel(datetime(2026, 11, 22, 8, 0, tzinfo=far_zone), tick=False):
        deliver_config(assignment=assign_key(key=tokenbay_key, username="bob", actor=alice), format_name="bash")

    dave_api = api(dave)
    [from_api] = api_rows(dave_api, "/api/v1/connections/")
    client.force_login(dave)
    [from_csv] = csv_rows(client.get(address) if address.startswith("/connections") else dave_api.get(address))
    [download] = csv_rows(client.get("/audit/?export=csv&action=config.downloaded"))

    assert from_csv["last_download_at"] == "2026-11-22T08:00:00+14:00"
    assert from_csv["expires_at"] == "2026-12-01T00:00:00+14:00"
    for column in ("assigned_since", "last_download_at", "expires_at"):
        assert from_csv[column] == from_api[column], column
    assert from_csv["last_download_at"] == download["created_at"]


def test_the_connections_csv_writes_utc_as_the_api_does_in_the_default_zone(
    client, api, alice, bob, dave, tokenbay_key
):
    update_key_settings(key=tokenbay_key, changes={"expires_at": datetime(2026, 12, 1, tzinfo=UTC)}, actor=alice)
    with time_machine.travel(datetime(2026, 11, 22, 8, 0, tzinfo=UTC), tick=False):
        deliver_config(assignment=assign_key(key=tokenbay_key, username="bob", actor=alice), format_name="bash")

    client.force_login(dave)
    [from_csv] = csv_rows(client.get("/connections/?export=csv"))
    [from_api] = api_rows(api(dave), "/api/v1/connections/")
    [download] = csv_rows(client.get("/audit/?export=csv&action=config.downloaded"))

    assert from_csv["last_download_at"] == from_api["last_download_at"] == download["created_at"]
    assert from_csv["expires_at"] == from_api["expires_at"] == "2026-12-01T00:00:00Z"


def test_the_key_expired_row_gives_the_expiry_in_the_portals_zone_as_its_own_time(
    client, far_zone, alice, tokenbay_key
):
    update_key_settings(key=tokenbay_key, changes={"expires_at": datetime(2026, 12, 1, tzinfo=far_zone)}, actor=alice)
    with time_machine.travel(datetime(2026, 12, 1, 0, 5, tzinfo=far_zone), tick=False):
        assert record_expirations() == 1

    client.force_login(alice)
    [row] = csv_rows(client.get("/audit/?export=csv&action=key.expired"))
    assert row["created_at"] == "2026-12-01T00:05:00+14:00"
    assert json.loads(row["details"])["expired_at"] == "2026-12-01T00:00:00+14:00"
    [line] = b"".join(client.get("/audit/?export=jsonl&action=key.expired").streaming_content).decode().splitlines()
    assert json.loads(line)["details"]["expired_at"] == "2026-12-01T00:00:00+14:00"


def test_every_expiry_an_audit_row_names_is_in_the_portals_zone(client, far_zone, alice, tokenbay_key):
    """A key's new expiry, an invitation's and an access token's: the day typed, beside the row's own time."""
    update_key_settings(key=tokenbay_key, changes={"expires_at": datetime(2026, 12, 1, tzinfo=far_zone)}, actor=alice)
    client.force_login(alice)
    [changed] = [
        json.loads(row["details"])["changed"]["expires_at"]
        for row in csv_rows(client.get("/audit/?export=csv&action=key.updated"))
    ]
    assert changed == {"from": None, "to": "2026-12-01T00:00:00+14:00"}
    with time_machine.travel(datetime(2026, 11, 20, 23, 0, tzinfo=far_zone), tick=False):
        create_invitation(team=tokenbay_key.team, email="erin@example.com", role="member", actor=alice)
        issue_token(user=alice, name="ci", expires_at=datetime(2026, 12, 31, tzinfo=far_zone), actor=alice)
    for action in ("invitation.created", "token.issued"):
        [row] = csv_rows(client.get(f"/audit/?export=csv&action={action}"))
        assert json.loads(row["details"])["expires_at"].endswith("+14:00"), row["details"]
