"""Expiries across the nights the clocks change, rotating in a new expiry, one warning per expiry date, and
times on pages named with their zone."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from alerts.models import Notification
from gateways import services
from gateways.dashboard import dashboard_for
from gateways.models import GatewayKey
from portal.models import AccessToken, Action, AuditEvent, ExternalIdentity
from tests.conftest import api_client_for, confirm_password
from tests.page_forms import form_on

pytestmark = pytest.mark.django_db
BERLIN = ZoneInfo("Europe/Berlin")
NEW_SECRET = "sk-tokenbay-renewed-0123456789abcdef"


@pytest.fixture
def berlin(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    timezone.activate(BERLIN)
    yield BERLIN
    timezone.deactivate()


def _page_client(user) -> Client:
    page = Client()
    page.force_login(user)
    return page


def _expiring(user) -> list:
    return [k.pk for k in next(s for s in dashboard_for(user) if s.slug == "expiring").rows]


def _errors(response) -> str:
    return response.content.decode().replace("&#x27;", "'")


# --- The key page in the hour the clocks repeat (Berlin, last Sunday of October 2030) ---------------------------


@pytest.mark.parametrize(
    "stored",
    [datetime(2030, 10, 27, 0, 30, tzinfo=UTC), datetime(2030, 10, 27, 1, 30, tzinfo=UTC)],
    ids=["CEST", "CET"],
)
def test_a_key_expiring_in_the_repeated_hour_keeps_its_expiry_when_its_label_is_saved(
    berlin, alice, tokenbay_key, stored
):
    GatewayKey.objects.filter(pk=tokenbay_key.pk).update(expires_at=stored)
    page = _page_client(alice)
    action = f"/keys/{tokenbay_key.id}/settings/"
    form = form_on(page.get(f"/keys/{tokenbay_key.id}/"), action)
    assert form["expires_at"].startswith("2030-10-27 02:30")  # the wall time, as the box shows it
    form["label"] = "Bob old laptop"
    response = page.post(action, form)
    assert response.status_code == 302, _errors(response)
    key = GatewayKey.objects.get(pk=tokenbay_key.pk)
    assert (key.label, key.expires_at) == ("Bob old laptop", stored)


def test_a_new_expiry_typed_in_the_repeated_hour_is_refused_naming_both_instants(berlin, alice, tokenbay_key):
    page = _page_client(alice)
    action = f"/keys/{tokenbay_key.id}/settings/"
    form = form_on(page.get(f"/keys/{tokenbay_key.id}/"), action)
    form["expires_at"] = "2030-10-27T02:30"
    response = page.post(action, form)
    assert response.status_code == 400
    text = _errors(response)
    assert "2030-10-27 02:30 happens twice in Europe/Berlin" in text, text
    assert "first at 02:30 CEST (00:30 UTC), then at 02:30 CET (01:30 UTC)" in text
    assert "choose a time outside that repeated hour" in text
    assert GatewayKey.objects.get(pk=tokenbay_key.pk).expires_at is None


def test_a_new_expiry_typed_in_the_skipped_hour_is_refused_saying_the_clocks_skip_it(berlin, alice, tokenbay_key):
    page = _page_client(alice)
    action = f"/keys/{tokenbay_key.id}/settings/"
    form = form_on(page.get(f"/keys/{tokenbay_key.id}/"), action)
    form["expires_at"] = "2030-03-31T02:30"
    response = page.post(action, form)
    assert response.status_code == 400
    text = _errors(response)
    assert "2030-03-31 02:30 does not exist in Europe/Berlin: that night the clocks skip from 02:00 to 03:00" in text
    assert "such as 2030-03-31 03:00" in text
    assert GatewayKey.objects.get(pk=tokenbay_key.pk).expires_at is None


# --- The API: an expiry without an offset in those hours ----------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("2030-10-27T02:30:00", "happens twice in Europe/Berlin"),
        ("2030-03-31T02:30:00", "does not exist in Europe/Berlin"),
    ],
)
def test_an_api_expiry_without_offset_that_the_clocks_repeat_or_skip_is_refused(
    berlin, alice, tokenbay_key, typed, said
):
    answer = api_client_for(alice).patch(f"/api/v1/keys/{tokenbay_key.id}/", {"expires_at": typed}, format="json")
    assert answer.status_code == 400
    body = answer.json()
    assert said in body["detail"] and "UTC offset" in body["detail"], body
    assert typed[:10] in body["detail"]
    assert GatewayKey.objects.get(pk=tokenbay_key.pk).expires_at is None


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2030-10-27T02:30:00+01:00", datetime(2030, 10, 27, 1, 30, tzinfo=UTC)),
        ("2030-10-27T02:30:00+02:00", datetime(2030, 10, 27, 0, 30, tzinfo=UTC)),
        ("2030-03-31T03:30:00", datetime(2030, 3, 31, 1, 30, tzinfo=UTC)),
    ],
)
def test_an_api_expiry_with_its_offset_or_outside_those_hours_is_taken(berlin, alice, tokenbay_key, sent, stored):
    answer = api_client_for(alice).patch(f"/api/v1/keys/{tokenbay_key.id}/", {"expires_at": sent}, format="json")
    assert answer.status_code == 200, answer.content
    assert GatewayKey.objects.get(pk=tokenbay_key.pk).expires_at == stored


# --- Rotating in a new secret with its new expiry, as the dashboard and the mail advise ---------------------------


def test_the_advice_for_an_expiring_key_says_to_rotate_in_the_new_secrets_expiry(alice, tokenbay_key):
    GatewayKey.objects.filter(pk=tokenbay_key.pk).update(expires_at=datetime(2030, 5, 10, tzinfo=UTC))
    with time_machine.travel(datetime(2030, 5, 1, tzinfo=UTC), tick=False):
        fix = next(s for s in dashboard_for(alice) if s.slug == "expiring").fix
        call_command("notify", stdout=StringIO())
    [told] = Notification.objects.filter(event="key.expiring")
    assert "rotate in a new secret with its new expiry" in fix
    assert "rotate in a new secret with its new expiry" in told.text


def test_rotating_on_the_page_with_a_new_expiry_renews_the_key_and_audits_it(alice, tokenbay_key):
    old = datetime(2030, 5, 10, tzinfo=UTC)
    GatewayKey.objects.filter(pk=tokenbay_key.pk).update(expires_at=old)
    with time_machine.travel(datetime(2030, 5, 1, tzinfo=UTC), tick=False):
        page = _page_client(alice)
        confirm_password(page, alice)
        action = f"/keys/{tokenbay_key.id}/rotate/"
        form = form_on(page.get(action), action)
        assert form["expires_at"].startswith("2030-05-10 00:00")  # pre-filled with the current expiry (UTC here)
        form.update(secret=NEW_SECRET, expires_at="2031-05-10T00:00")
        response = page.post(action, form)
        assert response.status_code == 302, _errors(response)
        assert _expiring(alice) == []
    key = GatewayKey.objects.get(pk=tokenbay_key.pk)
    assert key.expires_at == datetime(2031, 5, 10, tzinfo=UTC)
    rotated = AuditEvent.objects.filter(action=Action.KEY_ROTATED).latest("id")
    assert rotated.details["changed"] == {
        "expires_at": {"from": old.isoformat(), "to": datetime(2031, 5, 10, tzinfo=UTC).isoformat()}
    }


def test_rotating_on_the_page_with_the_expiry_as_shown_keeps_it(berlin, alice, tokenbay_key):
    kept = datetime(2030, 10, 27, 1, 30, tzinfo=UTC)  # 02:30 CET, the second of the two 02:30s
    GatewayKey.objects.filter(pk=tokenbay_key.pk).update(expires_at=kept)
    page = _page_client(alice)
    confirm_password(page, alice)
    action = f"/keys/{tokenbay_key.id}/rotate/"
    form = form_on(page.get(action), action)
    form["secret"] = NEW_SECRET
    response = page.post(action, form)
    assert response.status_code == 302, _errors(response)
    key = GatewayKey.objects.get(pk=tokenbay_key.pk)
    assert (key.masked.endswith("cdef"), key.expires_at) == (True, kept)
    assert "changed" not in AuditEvent.objects.filter(action=Action.KEY_ROTATED).latest("id").details


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ({"expires_at": "2031-05-10T00:00:00Z"}, datetime(2031, 5, 10, tzinfo=UTC)),
        ({"expires_at": None}, None),
        ({}, datetime(2030, 5, 10, tzinfo=UTC)),
    ],
    ids=["new", "cleared", "absent"],
)
def test_rotating_through_the_api_takes_the_new_secrets_expiry(alice, tokenbay_key, sent, stored):
    GatewayKey.objects.filter(pk=tokenbay_key.pk).update(expires_at=datetime(2030, 5, 10, tzinfo=UTC))
    answer = api_client_for(alice).patch(
        f"/api/v1/keys/{tokenbay_key.id}/", {"secret": NEW_SECRET, **sent}, format="json"
    )
    assert answer.status_code == 200, answer.content
    assert GatewayKey.objects.get(pk=tokenbay_key.pk).expires_at == stored
    rotated = AuditEvent.objects.filter(action=Action.KEY_ROTATED).latest("id")
    assert ("changed" in rotated.details) == bool(sent)
    assert not AuditEvent.objects.filter(action=Action.KEY_UPDATED).exists()  # one change, one row


def test_the_served_schema_documents_the_expiry_sent_with_a_new_secret(client, alice):
    client.force_login(alice)
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").content.decode()
    assert "the new secret's expiry" in schema.replace("\\u2019", "'")


# --- One "expires soon" per expiry date, in TIME_ZONE ------------------------------------------------------------


def test_moving_an_expiry_within_its_day_does_not_warn_the_team_again(berlin, alice, tokenbay_key):
    with time_machine.travel(datetime(2030, 5, 1, 9, 0, tzinfo=BERLIN), tick=False):
        for hour, day in ((17, 10), (18, 10), (0, 10), (0, 11)):  # 00:00 on the 10th is 22:00 UTC on the 9th
            key = GatewayKey.objects.get(pk=tokenbay_key.pk)
            expiry = datetime(2030, 5, day, hour, 0, tzinfo=BERLIN)
            services.update_key_settings(key=key, changes={"expires_at": expiry}, actor=alice)
            call_command("notify", stdout=StringIO())
    subjects = list(Notification.objects.filter(event="key.expiring").order_by("id").values_list("subject", flat=True))
    assert subjects == ["Bob laptop expires on 2030-05-10", "Bob laptop expires on 2030-05-11"]


# --- Times on pages are named with their zone ---------------------------------------------------------------------


def test_the_new_invitation_names_the_zone_of_its_deadline(berlin, alice):
    with time_machine.travel(datetime(2030, 7, 1, 12, 0, tzinfo=UTC), tick=False):
        page = _page_client(alice)
        response = page.post("/teams/web/invitations/", {"email": "erin@example.com", "role": "member"}, follow=True)
    assert ">2030-07-08 14:00 CEST</time>" in response.content.decode()


def test_the_tokens_page_names_the_zone_of_last_use(berlin, alice):
    token, _ = AccessToken.issue(alice, name="ci")
    AccessToken.objects.filter(pk=token.pk).update(last_used_at=datetime(2030, 7, 1, 12, 0, tzinfo=UTC))
    AccessToken.issue(alice, name="never used")
    text = _page_client(alice).get("/tokens/").content.decode()
    assert ">2030-07-01 14:00 CEST</time>" in text
    assert "<td>never</td>" in text


def test_the_account_page_names_the_zone_of_the_last_sso_sign_in(berlin, alice):
    ExternalIdentity.objects.create(
        user=alice,
        issuer="https://id.example.com",
        subject="alice-1",
        last_sign_in_at=datetime(2030, 1, 5, 8, 0, tzinfo=UTC),
    )
    text = _page_client(alice).get("/account/").content.decode()
    assert "last sign-in <time" in text and ">2030-01-05 09:00 CET</time>" in text


def test_the_offboard_page_names_the_zone_of_the_last_download(berlin, alice, bob, bob_assignment):
    with time_machine.travel(datetime(2030, 7, 1, 12, 0, tzinfo=UTC), tick=False):
        assert _page_client(bob).get(f"/setup/{bob_assignment.id}/bash").status_code == 200
    text = _page_client(alice).get("/teams/web/members/bob/offboard/").content.decode()
    assert ">2030-07-01 14:00 CEST</time> (bash)" in text


# --- Expiries at the ends of the calendar, and warnings recorded before the upgrade ---------------------------


def page_of(user) -> Client:
    page = Client(raise_request_exception=False)
    page.force_login(user)
    return page


@pytest.mark.parametrize("action", ["settings", "rotate"])
def test_a_hand_made_copy_of_the_shown_expiry_no_zone_can_show_gets_an_answer_not_a_500(alice, tokenbay_key, action):
    page = page_of(alice)
    confirm_password(page, alice)
    url = f"/keys/{tokenbay_key.id}/{action}/"
    form = form_on(page.get(url if action == "rotate" else f"/keys/{tokenbay_key.id}/"), url)
    form.update(
        expires_at="2031-05-10T00:00",
        **({"secret": "sk-tokenbay-renewed-0123456789abcdef"} if action == "rotate" else {}),
    )
    form["initial-expires_at"] = "0001-01-01T00:00:00+14:00"
    assert page.post(url, form).status_code in (302, 400)


def test_an_expiry_the_portals_zone_cannot_write_is_refused_and_every_page_still_opens(
    berlin, alice, bob, dave, bob_assignment
):
    page = page_of(alice)
    url = f"/keys/{bob_assignment.key_id}/settings/"
    form = form_on(page.get(f"/keys/{bob_assignment.key_id}/"), url)
    form["expires_at"] = "9999-12-31T23:30:00+00:00"  # in Berlin, past the year 9999
    response = page.post(url, form)
    assert response.status_code == 400
    assert "beyond the dates the portal can store and show" in response.content.decode()
    assert GatewayKey.objects.get(pk=bob_assignment.key_id).expires_at is None
    for user in (alice, bob, dave):
        for address in ("/teams/web/", "/connections/", f"/keys/{bob_assignment.key_id}/"):
            assert page_of(user).get(address).status_code < 500, (user.username, address)


def test_a_key_warned_before_the_upgrade_is_not_warned_again_for_the_same_date(alice, tokenbay_key):
    """Until 2026-11 the warning's record named the expiry's second; the first run after the upgrade reads it."""
    services.update_key_settings(
        key=tokenbay_key, changes={"expires_at": timezone.now() + timezone.timedelta(days=5)}, actor=alice
    )
    key = GatewayKey.objects.get(pk=tokenbay_key.pk)
    call_command("notify", stdout=StringIO())
    told = Notification.objects.filter(key=key)
    assert told.count() == 1
    told.update(dedupe_key=f"key.expiring:{key.id}:{key.expires_at:%Y%m%dT%H%M%S}")
    call_command("notify", stdout=StringIO())
    assert Notification.objects.filter(key=key).count() == 1


LAST_DAY = datetime(9999, 12, 31, 12, 0, tzinfo=UTC)  # taken before the portal kept a day from the calendar's end


@pytest.mark.parametrize("how", ["api", "cleared", "rotated"])
def test_a_key_stored_with_the_calendars_last_day_can_still_be_given_a_new_expiry(api, alice, tokenbay_key, how):
    GatewayKey.objects.filter(pk=tokenbay_key.pk).update(expires_at=LAST_DAY)
    key = GatewayKey.objects.get(pk=tokenbay_key.pk)
    renewed = datetime(2027, 1, 1, tzinfo=UTC)
    if how == "api":
        response = api(alice).patch(f"/api/v1/keys/{key.id}/", {"expires_at": "2027-01-01T00:00:00Z"}, format="json")
        assert response.status_code == 200, response.json()
    elif how == "cleared":
        services.update_key_settings(key=key, changes={"expires_at": None}, actor=alice)
        renewed = None
    else:
        services.rotate_key_secret(
            key=key, secret="sk-tokenbay-renewed-0123456789abcdef", actor=alice, expires_at=renewed
        )
    assert GatewayKey.objects.get(pk=key.pk).expires_at == renewed


def test_the_upgrade_moves_an_expiry_no_zone_can_write_and_the_pages_open(alice, bob, dave, bob_assignment, settings):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    GatewayKey.objects.filter(pk=bob_assignment.key_id).update(expires_at=datetime(9999, 12, 31, 20, 0, tzinfo=UTC))
    executor = MigrationExecutor(connection)
    migration = executor.loader.get_migration("gateways", "0016_expiries_within_the_calendar")
    migration.operations[0].code(
        executor.loader.project_state(("gateways", "0016_expiries_within_the_calendar")).apps, None
    )
    settings.TIME_ZONE = "Asia/Tokyo"
    with timezone.override(ZoneInfo("Asia/Tokyo")):
        for user in (alice, bob, dave):
            for address in ("/teams/web/", "/connections/", f"/keys/{bob_assignment.key_id}/"):
                assert page_of(user).get(address).status_code < 500, (user.username, address)
    assert GatewayKey.objects.get(pk=bob_assignment.key_id).expires_at.year == 9999
