"""Alerts and the dashboard as a team meets them day to day: outages, rotations, mail off, time zones, SSO.

Real parts only: webhook receivers and an SMTP server on 127.0.0.1, the gateway emulator, the
pages through Django's test client; time moved with time_machine.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone

from alerts import messages
from alerts.delivery import deliver_due
from alerts.models import Delivery, DeliveryStatus, Notification
from alerts.services import create_channel, delivery_lease, notify_expiring, notify_team, send_test
from gateways.devices import create_device, fetch_key, install_device
from gateways.models import GatewayKey
from gateways.probes.runner import probe_key
from gateways.services import (
    assign_key,
    deliver_config,
    record_expirations,
    rotate_key_secret,
    set_key_enabled,
    store_key,
    update_key_settings,
)
from portal.models import AuditEvent, Membership, Role
from tests.conftest import TOKENBAY_SECRET, make_user
from tests.gateway_emulator import GatewayRules, running_emulator
from tests.gateways.test_dashboard import count_in, section
from tests.smtp_server import body
from tests.webhook_receiver import running_receiver

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(autouse=True)
def _quick(settings):
    settings.NOTIFY_TIMEOUT = 5
    settings.PORTAL_URL = "https://portal.example.com"


def first_lines(receiver, path: str) -> list[str]:
    """The first line (the subject) of each message the receiver accepted, in the order it got them."""
    return [r.json["text"].splitlines()[0] for r in receiver.at(path) if r.answered == 204]


# --- 1. A channel hears a key's news in the order it happened ------------------------------------


def test_a_receiver_back_from_an_outage_hears_failing_then_works_again(web, alice, tokenbay, tokenbay_key):
    start = timezone.now()
    with (
        running_emulator(GatewayRules(auth_scheme="bearer", keys=set())) as gw,
        running_receiver({"/hook": "fail"}) as receiver,
    ):
        tokenbay.base_url = gw.base_url
        tokenbay.save()
        create_channel(team=web, kind="slack", target=receiver.url("/hook"), actor=alice)
        with time_machine.travel(start):
            probe_key(GatewayKey.objects.select_related("gateway", "team").get(pk=tokenbay_key.pk), trigger="command")
            deliver_due()  # the receiver is down
        with time_machine.travel(start + timedelta(minutes=2)):
            deliver_due()  # still down; the next try is 5 minutes later
        receiver.behaviour["/hook"] = "ok"
        gw.rules.keys = {TOKENBAY_SECRET}
        with time_machine.travel(start + timedelta(minutes=3)):
            probe_key(GatewayKey.objects.select_related("gateway", "team").get(pk=tokenbay_key.pk), trigger="command")
            deliver_due()  # the recovery waits behind the older failure
        with time_machine.travel(start + timedelta(minutes=10)):
            outcome = deliver_due()
        told = first_lines(receiver, "/hook")
    assert outcome["sent"] == 2, outcome
    assert len(told) == 2 and "started failing" in told[0] and "works again" in told[1], told


def test_a_newer_delivery_waits_behind_an_older_one_to_the_same_channel(web, alice):
    start = timezone.now()
    with running_receiver({"/hook": "fail", "/other": "ok"}) as receiver:
        channel = create_channel(team=web, kind="slack", target=receiver.url("/hook"), actor=alice)
        other = create_channel(team=web, kind="slack", target=receiver.url("/other"), actor=alice)
        with time_machine.travel(start):
            for sender in ("first", "second"):
                notify_team(web, messages.channel_test(team_name="Web", actor_name=sender), channels=[channel])
            Notification.objects.update(event="key.failing")  # news, which keeps its order (a test would not wait)
            send_test(channel=other, actor=alice)
            deliver_due()
        older, newer = Delivery.objects.filter(channel=channel).order_by("pk")
        assert (older.attempts, newer.attempts) == (1, 1)  # sent side by side while the channel looked healthy
        # From then on nothing overtakes the older one the receiver refused.
        assert list(Delivery.objects.filter(channel=channel).due(start + timedelta(hours=1))) == [older]
        assert Delivery.objects.get(channel=other).status == DeliveryStatus.SENT  # another channel is not held up
        receiver.behaviour["/hook"] = "ok"
        with time_machine.travel(start + timedelta(minutes=1, seconds=5)):
            assert deliver_due()["sent"] == 2
        told = [r.json["text"].splitlines()[1].split()[0] for r in receiver.at("/hook") if r.answered == 204]
    assert told == ["first", "second"]


def test_a_notify_run_killed_mid_send_still_leaves_the_channel_its_news_in_order(web, alice, tokenbay_key):
    """The run died (OOM, a container stop) after claiming "started failing", before recording any attempt."""
    start = timezone.now()
    with running_receiver() as receiver:
        create_channel(team=web, kind="slack", target=receiver.url("/hook"), actor=alice)
        with time_machine.travel(start):
            notify_team(web, messages.key_failing(tokenbay_key, verdict="auth_failed", hint=""), key=tokenbay_key)
            Delivery.objects.update(claim=uuid.uuid4(), claimed_at=start)  # what the dead run left
        with time_machine.travel(start + timedelta(minutes=1)):
            notify_team(web, messages.key_recovered(tokenbay_key, previous="auth_failed"), key=tokenbay_key)
        with time_machine.travel(start + timedelta(minutes=4)):
            assert deliver_due()["sent"] == 0  # within the dead run's lease: the recovery waits behind it
        with time_machine.travel(start + delivery_lease() + timedelta(seconds=1)):
            assert deliver_due()["sent"] == 2  # the lease ran out: the older one is sent again, then the newer
        told = first_lines(receiver, "/hook")
    assert len(told) == 2 and "started failing" in told[0] and "works again" in told[1], told


def test_a_success_makes_the_channels_waiting_deliveries_due_at_once(web, alice):
    start = timezone.now()
    with running_receiver() as receiver:
        channel = create_channel(team=web, kind="slack", target=receiver.url("/hook"), actor=alice)
        with time_machine.travel(start):
            first = send_test(channel=channel, actor=alice)
            second = send_test(channel=channel, actor=alice)
        # A retry scheduled before deliveries were kept in order (or by another run): 2 hours away.
        Delivery.objects.filter(notification=second).update(attempts=3, next_attempt_at=start + timedelta(hours=2))
        with time_machine.travel(start + timedelta(seconds=5)):
            outcome = deliver_due()
    assert outcome["sent"] == 2, outcome
    assert Delivery.objects.get(notification=first).status == DeliveryStatus.SENT
    assert Delivery.objects.get(notification=second).status == DeliveryStatus.SENT


# --- 2. A rotation tells only the holders who have something to do -------------------------------


def _carol(web, alice, key):
    carol = make_user("carol")
    Membership.objects.create(team=web, user=carol, role=Role.MEMBER)
    return assign_key(key=key, username="carol", actor=alice)


def test_a_rotation_does_not_tell_a_live_device_holder_to_download_again(
    smtp, web, alice, bob, bob_assignment, tokenbay_key
):
    _, code = create_device(assignment=bob_assignment, name="bob laptop", platform="linux", actor=bob)
    _, token = install_device(code=code, request=None, render=lambda device, token: token)
    fetch_key(raw_token=token, request=None)  # live: it has fetched the key (one that never did holds none)
    carol_assignment = _carol(web, alice, tokenbay_key)
    _, code = create_device(
        assignment=carol_assignment, name="carol laptop", platform="linux", actor=carol_assignment.user
    )
    _, token = install_device(code=code, request=None, render=lambda device, token: token)
    fetch_key(raw_token=token, request=None)
    deliver_config(assignment=carol_assignment, format_name="bash")  # carol also keeps a downloaded set-up
    create_channel(team=web, kind="email", target="ops@example.com", actor=alice)

    rotate_key_secret(
        key=GatewayKey.objects.get(pk=tokenbay_key.pk), secret="sk-tokenbay-rotated-0123456789", actor=alice
    )
    deliver_due()

    assert not any("download" in (m["Subject"] + body(m)).lower() for m in smtp.to("bob@example.com"))
    [to_carol] = smtp.to("carol@example.com")
    assert "Download your set-up again" in body(to_carol)
    [to_team] = smtp.to("ops@example.com")
    assert "1 holder(s) were told to download" in body(to_team), body(to_team)
    assert "1 holder(s) use only live devices, which fetch the new secret themselves" in body(to_team)


# --- 3. The dashboard and the Connections page forget a failure a rotation made obsolete ---------


def test_a_rotated_key_leaves_the_failing_lists(client, alice, web, tokenbay):
    key = store_key(team=web, gateway=tokenbay, label="old secret", secret="sk-dash-old-secret-0123456789", actor=alice)
    assign_key(key=key, username="alice", actor=alice)
    GatewayKey.objects.filter(pk=key.pk).update(last_probe_verdict="auth_failed", last_probe_at=timezone.now())
    client.force_login(alice)
    assert count_in(client.get("/dashboard/").content.decode(), "failing") == 1
    assert "old secret" in client.get("/connections/?state=failing").content.decode()

    rotate_key_secret(key=GatewayKey.objects.get(pk=key.pk), secret="sk-dash-new-secret-0123456789", actor=alice)

    html = client.get("/dashboard/").content.decode()
    assert "old secret" not in section(html, "failing") and count_in(html, "failing") == 0
    assert "old secret" not in client.get("/connections/?state=failing").content.decode()
    assert client.get("/api/v1/connections/?state=failing").json()["results"] == []


# --- 4. Mail off: an e-mail channel is not told "sent" ------------------------------------------


def test_an_email_delivery_fails_with_a_sentence_when_the_portal_sends_no_mail(settings, web, alice):
    settings.EMAIL_CONFIGURED = False
    settings.EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"  # production without EMAIL_*
    channel = create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    send_test(channel=channel, actor=alice)
    outcome = deliver_due()
    delivery = Delivery.objects.get(channel=channel)
    assert outcome["sent"] == 0 and delivery.status != DeliveryStatus.SENT
    assert "This portal sends no mail" in delivery.last_error and "EMAIL_URL" in delivery.last_error
    assert not delivery.attempt_log.get().succeeded


def test_adding_an_email_channel_while_mail_is_off_warns(settings, client, web, alice):
    settings.EMAIL_CONFIGURED = False
    client.force_login(alice)
    page = client.post("/teams/web/channels/", {"kind": "email", "target": "ops@example.com"}, follow=True)
    assert "This portal sends no mail" in page.content.decode()


def test_adding_an_email_channel_with_mail_set_up_does_not_warn(smtp, client, web, alice):
    client.force_login(alice)
    page = client.post("/teams/web/channels/", {"kind": "email", "target": "ops@example.com"}, follow=True)
    assert "Channel added" in page.content.decode() and "sends no mail" not in page.content.decode()


# --- 5. Slack text escapes &, < and > ------------------------------------------------------------


def test_slack_text_escapes_ampersand_and_angle_brackets(web, alice, tokenbay):
    key = store_key(team=web, gateway=tokenbay, label="R&D <prod>", secret="sk-slack-escape-0123456789", actor=alice)
    with running_receiver() as receiver:
        create_channel(team=web, kind="slack", target=receiver.url("/services/T1/B2/x"), actor=alice)
        rotate_key_secret(key=key, secret="sk-slack-escape-rotated-0123456789", actor=alice)
        deliver_due()
        [request] = receiver.at("/services/T1/B2/x")
    text = request.json["text"]
    assert text.startswith("*R&amp;D &lt;prod&gt; was rotated*"), text
    assert "<prod>" not in text and "R&D" not in text
    assert text.endswith("|Open in the portal>") and f"\n<https://portal.example.com/keys/{key.id}/" in text


# --- 6. Expiry mails speak the portal's zone ----------------------------------------------------


def _key_expiring_at_half_past_midnight_berlin(settings, web, alice, tokenbay, days: int):
    settings.TIME_ZONE = "Europe/Berlin"
    day = (timezone.now() + timedelta(days=days)).astimezone(BERLIN).date()
    expires = datetime(day.year, day.month, day.day, 0, 30, tzinfo=BERLIN)  # 23:30 UTC the day before
    key = store_key(team=web, gateway=tokenbay, label="berlin key", secret="sk-tz-0123456789abcdef", actor=alice)
    update_key_settings(key=key, changes={"expires_at": expires}, actor=alice)
    return expires


def test_an_expiry_warning_gives_the_date_in_the_portals_zone(settings, smtp, web, alice, tokenbay):
    expires = _key_expiring_at_half_past_midnight_berlin(settings, web, alice, tokenbay, days=10)
    create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    assert notify_expiring() == 1
    deliver_due()
    [mail] = smtp.to("ops@example.com")
    assert f"expires on {expires:%Y-%m-%d}" in mail["Subject"], mail["Subject"]
    assert f"{expires:%Y-%m-%d} 00:30 {expires.tzname()}" in body(mail), body(mail)
    assert " UTC" not in body(mail)


def test_an_expired_notice_gives_the_time_in_the_portals_zone(settings, smtp, web, alice, tokenbay):
    expires = _key_expiring_at_half_past_midnight_berlin(settings, web, alice, tokenbay, days=2)
    create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    with time_machine.travel(expires + timedelta(minutes=1)):
        assert record_expirations() == 1
    Delivery.objects.update(next_attempt_at=timezone.now())
    deliver_due()
    [mail] = [m for m in smtp.to("ops@example.com") if "has expired" in m["Subject"]]
    assert f"expired on {expires:%Y-%m-%d} 00:30 {expires.tzname()}" in body(mail), body(mail)


# --- 7. Pages name the zone of every time they print ---------------------------------------------


def test_dashboard_and_deliveries_name_the_zone_of_their_times(settings, client, web, alice, tokenbay):
    settings.TIME_ZONE = "Europe/Berlin"
    expires = (timezone.now() + timedelta(days=5)).replace(second=0, microsecond=0)
    key = store_key(team=web, gateway=tokenbay, label="tz key", secret="sk-tz-dash-0123456789abcdef", actor=alice)
    GatewayKey.objects.filter(pk=key.pk).update(expires_at=expires)
    with running_receiver({"/hook": "fail"}) as receiver:
        channel = create_channel(team=web, kind="slack", target=receiver.url("/hook"), actor=alice)
        send_test(channel=channel, actor=alice)
        deliver_due()
    client.force_login(alice)
    local = expires.astimezone(BERLIN)

    dashboard = client.get("/dashboard/").content.decode()
    assert "Times are UTC" not in dashboard
    assert f"{local:%Y-%m-%d %H:%M} {local.tzname()}</time>" in section(dashboard, "expiring")

    deliveries = client.get("/deliveries/").content.decode()
    assert "Times are UTC" not in deliveries
    delivery = Delivery.objects.get(channel=channel, notification__event="test")
    for moment, fmt in (
        (delivery.created_at, "%Y-%m-%d %H:%M"),
        (delivery.next_attempt_at, "%Y-%m-%d %H:%M"),
        (delivery.attempt_log.get().started_at, "%Y-%m-%d %H:%M:%S"),
    ):
        shown = moment.astimezone(BERLIN)
        assert f">{shown.strftime(fmt)} {shown.tzname()}</time>" in deliveries, shown


# --- 8. SSO groups' changes are told as the groups' doing ---------------------------------------


def test_a_member_added_or_removed_by_sso_groups_is_told_as_the_groups_doing(web, alice):
    from portal.oidc import sync_memberships

    web.sso_member_group = "web-devs"
    web.save()
    erin = make_user("erin")
    sync_memberships(None, erin, {"web-devs"})
    sync_memberships(None, erin, set())
    added = Notification.objects.get(event="member.added")
    removed = Notification.objects.get(event="member.offboarded")
    assert added.text.startswith("The portal (SSO groups) added erin to team Web"), added.text
    assert removed.text.startswith("The portal (SSO groups) removed erin (member) from team Web"), removed.text
    # The audit trail still says whose sign-in made the change, and that the groups claim did it.
    event = AuditEvent.objects.filter(action="member.added", target="erin").latest("id")
    assert event.actor == erin and event.details.get("via") == "sso"


def test_a_member_added_by_hand_is_still_told_with_the_admins_name(web, alice):
    from portal.services import add_member

    make_user("frank")
    add_member(team=web, username="frank", role=Role.MEMBER, actor=alice)
    assert Notification.objects.get(event="member.added").text.startswith("alice added frank to team Web")


def test_send_a_test_goes_out_at_the_next_notify_run_even_behind_a_failed_delivery(client, web, alice):
    """After an outage the admin fixes the receiver and presses "Send a test": the page promises the next run."""
    start = timezone.now()
    with running_receiver({"/hook": "fail"}) as receiver:
        channel = create_channel(team=web, kind="slack", target=receiver.url("/hook"), actor=alice)
        with time_machine.travel(start):
            notify_team(web, messages.channel_test(team_name="Web", actor_name="earlier news"), channels=[channel])
            Notification.objects.update(event="key.failing")  # news, which keeps its order
            deliver_due()
        for minutes in (2, 8):
            with time_machine.travel(start + timedelta(minutes=minutes)):
                deliver_due()  # third failure: the next try is 30 minutes away
        receiver.behaviour["/hook"] = "ok"  # the admin fixed the receiver
        with time_machine.travel(start + timedelta(minutes=9)):
            client.force_login(alice)
            answer = client.post(f"/channels/{channel.id}/test/", follow=True)
            assert "waits for the next `manage.py notify` run" in answer.content.decode()
            deliver_due()  # the next run
        test = Delivery.objects.filter(channel=channel).order_by("pk").last()
        assert test.status == DeliveryStatus.SENT
        older = Delivery.objects.filter(channel=channel).order_by("pk").first()
        assert older.status == DeliveryStatus.SENT  # the test's success let the waiting news go at once


def test_rotating_a_disabled_key_does_not_tell_a_live_only_holder_to_download(alice, bob, bob_assignment):
    """A leaked key: disable it, rotate in the new secret, enable it again. bob only uses a live device."""
    _, code = create_device(assignment=bob_assignment, name="bob laptop", platform="linux", actor=bob)
    install_device(code=code, request=None, render=lambda d, t: t)
    key = set_key_enabled(key=GatewayKey.objects.get(pk=bob_assignment.key_id), enabled=False, actor=alice)
    rotate_key_secret(key=key, secret="sk-tokenbay-rotated-0123456789abcdef", actor=alice)
    assert not Delivery.objects.filter(user=bob).exists()  # his device fetches the new secret once enabled
