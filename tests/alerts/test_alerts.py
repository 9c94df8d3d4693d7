"""Notifications delivered for real: webhook receivers and an SMTP server on 127.0.0.1.

Receivers are real HTTP servers (tests/webhook_receiver.py) that answer 204, 500, a redirect, or
nothing at all; mail goes to a real SMTP server (aiosmtpd). Time is moved with time_machine to
reach each retry, never waited for.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
import time_machine
from aiosmtpd.controller import Controller
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from alerts import rules
from alerts.delivery import deliver_due
from alerts.models import BACKOFF, MAX_ATTEMPTS, Channel, Delivery, DeliveryAttempt, Notification
from alerts.services import create_channel, notify_expiring
from gateways.models import GatewayKey
from gateways.probes.runner import probe_key
from gateways.services import assign_key, record_expirations, rotate_key_secret, set_key_enabled, store_key
from portal.models import AuditEvent
from portal.services import add_member, remove_member
from tests.conftest import TOKENBAY_SECRET, make_user
from tests.gateway_emulator import GatewayRules, running_emulator
from tests.webhook_receiver import running_receiver

pytestmark = pytest.mark.django_db

HOOK_SECRET = "whsec-0123456789abcdef-portal"


@pytest.fixture(autouse=True)
def _quick_deliveries(settings):
    # Room for a delivery on a busy machine (CI runs two passes side by side on two cores); the one test
    # whose receiver hangs sets its own, shorter limit.
    settings.NOTIFY_TIMEOUT = 5
    settings.PORTAL_URL = "https://portal.example.com"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Inbox:
    """aiosmtpd's handler: keeps every message it is given."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp(settings):
    """A real SMTP server on 127.0.0.1, and Django's SMTP backend pointed at it."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", controller.port, False
    settings.EMAIL_CONFIGURED = True  # as EMAIL_HOST makes it at start-up (config/settings.py)
    yield inbox
    controller.stop()


def webhook(team, receiver, path: str, actor, secret: str = HOOK_SECRET) -> Channel:
    return create_channel(team=team, kind="webhook", target=receiver.url(path), secret=secret, actor=actor)


def attempts_of(channel: Channel) -> list[DeliveryAttempt]:
    return list(DeliveryAttempt.objects.filter(delivery__channel=channel).order_by("started_at"))


def test_a_webhook_is_signed_with_a_timestamp_its_receiver_can_verify(web, alice, bob):
    with running_receiver() as receiver:
        webhook(web, receiver, "/hook", alice)
        add_member(team=web, username=make_user("erin").username, role="member", actor=alice)
        outcome = deliver_due()
        [request] = receiver.at("/hook")
    assert outcome["sent"] == 1
    header = request.headers["x-portal-signature"]
    assert rules.signature_holds(HOOK_SECRET, header, request.body, now=int(time.time()))
    # What a receiver refuses: another secret, a changed body, a replay ten minutes later.
    assert not rules.signature_holds("another-secret-0123456789", header, request.body, now=int(time.time()))
    assert not rules.signature_holds(HOOK_SECRET, header, request.body + b" ", now=int(time.time()))
    assert not rules.signature_holds(HOOK_SECRET, header, request.body, now=int(time.time()) + 600)
    timestamp, digest = (part.split("=", 1)[1] for part in header.split(","))
    import hashlib
    import hmac

    expected = hmac.new(HOOK_SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256).hexdigest()
    assert digest == expected  # the documented recipe, spelled out
    body = request.json
    assert body["event"] == "member.added" and body["member"] == {"username": "erin", "role": "member"}
    assert body["team"] == "web" and "erin" in body["text"]
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-portal-event"] == "member.added"
    assert HOOK_SECRET not in request.body.decode() and HOOK_SECRET not in json.dumps(request.headers)


def test_slack_channels_get_an_incoming_webhook_body(web, alice, tokenbay_key):
    with running_receiver() as receiver:
        create_channel(team=web, kind="slack", target=receiver.url("/services/T1/B2/x"), actor=alice)
        rotate_key_secret(key=tokenbay_key, secret="sk-tokenbay-rotated-0123456789", actor=alice)
        deliver_due()
        [request] = receiver.at("/services/T1/B2/x")
    assert set(request.json) == {"text"}
    assert "Bob laptop was rotated" in request.json["text"]
    assert "<https://portal.example.com/keys/" in request.json["text"]
    assert "x-portal-signature" not in request.headers


def downloaded(*assignments) -> None:
    """The holders downloaded their set-ups: only they hold a secret a rotation makes old."""
    for assignment in assignments:
        type(assignment).objects.filter(pk=assignment.pk).update(last_download_at=timezone.now())


def test_mail_reaches_a_real_smtp_server_for_channels_and_for_a_rotated_keys_holders(
    smtp, web, alice, bob, bob_assignment, tokenbay_key
):
    create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    downloaded(bob_assignment)
    rotate_key_secret(key=tokenbay_key, secret="sk-tokenbay-rotated-0123456789", actor=alice)
    assert deliver_due()["sent"] == 2
    by_recipient = {tuple(to): message for to, message in smtp.messages}
    holder = by_recipient[("bob@example.com",)]
    assert holder["Subject"] == "[Gateway portal] Download your TokenBay set-up again: key Bob laptop was rotated"
    text = holder.get_content()
    assert "Download your set-up again" in text
    assert f"https://portal.example.com/setup/#assignment-{bob_assignment.id}" in text
    team = by_recipient[("ops@example.com",)]
    assert "1 holder(s) were told" in team.get_content()
    for _, message in smtp.messages:
        assert "rotated-0123456789" not in message.as_string() and TOKENBAY_SECRET not in message.as_string()


def test_a_500_and_a_hang_are_retried_and_stop_nobody_else_and_nothing_is_lost(web, alice, settings):
    # Three seconds, not the one of the other tests: seven deliveries at once must each finish in time on a
    # busy machine (CI runs two passes side by side on two cores), and the hang costs the run this once.
    settings.NOTIFY_TIMEOUT = 3
    behaviour = {"/ok": "ok", "/fails": "fail", "/hangs": "hang", "/moved": "redirect"}
    with running_receiver(behaviour) as receiver:
        channels = {path: webhook(web, receiver, path, alice) for path in behaviour}
        add_member(team=web, username=make_user("erin").username, role="member", actor=alice)
        started = time.monotonic()
        first = deliver_due()
        elapsed = time.monotonic() - started
        # All four were tried at once: the hang cost one NOTIFY_TIMEOUT, not one per receiver.
        assert elapsed < 3 * settings.NOTIFY_TIMEOUT, elapsed
        assert first["sent"] == 1 and first["retrying"] == 3
        assert [r.answered for r in receiver.at("/ok")] == [204]
        for path in ("/fails", "/hangs", "/moved"):
            assert len(receiver.at(path)) == 1
        errors = {path: attempts_of(channel)[0].error for path, channel in channels.items() if path != "/ok"}
        assert "HTTP 500" in errors["/fails"] and "receiver is down" in errors["/fails"]
        assert "No answer within 3 s" in errors["/hangs"]
        assert "redirect to https://elsewhere.example/hook" in errors["/moved"] and "final URL" in errors["/moved"]
        assert not [r for r in receiver.received if r.path == "/hook"], "the redirect was not followed"

        # A minute later the failing ones are due again; meanwhile another event happened.
        receiver.behaviour.update({"/fails": "ok", "/hangs": "ok", "/moved": "ok"})
        add_member(team=web, username=make_user("frank").username, role="member", actor=alice)
        with time_machine.travel(timezone.now() + BACKOFF[0] + timedelta(seconds=1)):
            second = deliver_due()
        assert second["sent"] == 3 + 4 and second["retrying"] == 0

    # Every event reached every receiver with a 2xx, exactly once each.
    for path in behaviour:
        delivered = [
            r.json["event"] + ":" + r.json["member"]["username"] for r in receiver.at(path) if r.answered == 204
        ]
        assert sorted(delivered) == ["member.added:erin", "member.added:frank"], path
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    retried = Delivery.objects.get(channel=channels["/hangs"], notification__payload__member__username="erin")
    assert [a.succeeded for a in retried.attempt_log.order_by("number")] == [False, True]


def test_retries_follow_the_backoff_then_the_delivery_fails_for_good(web, alice):
    with running_receiver({"/down": "fail"}) as receiver:
        channel = webhook(web, receiver, "/down", alice)
        add_member(team=web, username=make_user("erin").username, role="member", actor=alice)
        start = timezone.now()
        with time_machine.travel(start, tick=False):
            deliver_due()
        moment = start
        for step in BACKOFF:
            with time_machine.travel(moment + step - timedelta(seconds=5), tick=False):
                deliver_due()  # not yet due: nothing is sent
            assert len(receiver.at("/down")) == len(attempts_of(channel))
            moment = moment + step
            with time_machine.travel(moment + timedelta(seconds=1), tick=False):
                deliver_due()
        with time_machine.travel(moment + timedelta(days=2), tick=False):
            deliver_due()
    delivery = Delivery.objects.get(channel=channel)
    assert delivery.status == "failed" and delivery.attempts == MAX_ATTEMPTS == 6
    assert len(receiver.at("/down")) == 6 == len(attempts_of(channel))
    gaps = [b.started_at - a.started_at for a, b in zip(attempts_of(channel), attempts_of(channel)[1:], strict=False)]
    assert [round(g.total_seconds() / 60) for g in gaps] == [1, 5, 30, 120, 360]


def test_a_receiver_answering_with_a_nul_is_recorded_as_a_failed_attempt(web, alice):
    with running_receiver({"/nul": "nul"}) as receiver:
        channel = webhook(web, receiver, "/nul", alice)
        add_member(team=web, username=make_user("erin").username, role="member", actor=alice)
        deliver_due()
        assert len(receiver.at("/nul")) == 1
    [attempt] = attempts_of(channel)
    assert "400" in attempt.error and "bad\ufffdrequest" in attempt.error
    delivery = Delivery.objects.get(channel=channel)
    assert delivery.status == "pending" and delivery.attempts == 1 and "\x00" not in delivery.last_error


def test_an_address_the_portal_will_not_reach_is_refused_at_delivery(web, alice, settings):
    with running_receiver() as receiver:
        channel = webhook(web, receiver, "/internal", alice)  # allowed when it was added
        settings.PROBE_ALLOW_PRIVATE_IPS = False
        add_member(team=web, username=make_user("erin").username, role="member", actor=alice)
        deliver_due()
        assert receiver.received == []
    assert "private, loopback or reserved address" in attempts_of(channel)[0].error


def key_on(emulator_server, gateway, key) -> GatewayKey:
    gateway.base_url = emulator_server.base_url
    gateway.save()
    return GatewayKey.objects.select_related("gateway", "team").get(pk=key.pk)


def events_of(kind: str) -> list[Notification]:
    return list(Notification.objects.filter(event=kind))


def test_only_transitions_between_working_and_failing_are_told(web, alice, tokenbay, tokenbay_key):
    with running_emulator(GatewayRules(auth_scheme="bearer", keys={TOKENBAY_SECRET})) as gw:
        key = key_on(gw, tokenbay, tokenbay_key)
        probe_key(key, trigger="command")
        assert Notification.objects.count() == 0  # a first probe that works is no news
        gw.rules.keys = {"sk-some-other-key-000"}
        probe_key(key, trigger="command")
        probe_key(key, trigger="command")  # still failing: told once
        [failing] = events_of("key.failing")
        assert "Authentication failed" in failing.subject and failing.key_id == key.id
        gw.rules.keys = {TOKENBAY_SECRET}
        probe_key(key, trigger="command")
        probe_key(key, trigger="command")
        assert len(events_of("key.recovered")) == 1 and len(events_of("key.failing")) == 1


def test_a_new_keys_first_probe_failing_is_told(web, alice, tokenbay, tokenbay_key):
    with running_emulator(GatewayRules(auth_scheme="bearer", keys=set())) as gw:
        probe_key(key_on(gw, tokenbay, tokenbay_key), trigger="command")
    assert len(events_of("key.failing")) == 1


def test_a_disabled_keys_probe_pages_nobody(web, alice, tokenbay_key):
    key = set_key_enabled(key=tokenbay_key, enabled=False, actor=alice)
    probe_key(key, trigger="web", user=alice)
    assert Notification.objects.count() == 0


def test_probe_due_delivers_what_its_probes_found(web, alice, tokenbay, tokenbay_key, capsys):
    with running_emulator(GatewayRules(auth_scheme="bearer", keys=set())) as gw, running_receiver() as receiver:
        key_on(gw, tokenbay, tokenbay_key)
        webhook(web, receiver, "/hook", alice)
        with pytest.raises(SystemExit):
            call_command("probe", "--due")
        [request] = receiver.at("/hook")
    assert request.json["event"] == "key.failing" and request.json["key"]["label"] == "Bob laptop"
    out = capsys.readouterr().out
    assert "1 sent" in out
    assert out.index("1 failing, 1 probed.") < out.index("1 sent")  # printed in the order it happened


def test_expiry_is_told_once_per_expiry_date_and_again_after_renewal(web, alice, tokenbay_key):
    from gateways.services import update_key_settings

    update_key_settings(key=tokenbay_key, changes={"expires_at": timezone.now() + timedelta(days=5)}, actor=alice)
    assert notify_expiring() == 1
    assert notify_expiring() == 0
    key = GatewayKey.objects.get(pk=tokenbay_key.pk)
    update_key_settings(key=key, changes={"expires_at": timezone.now() + timedelta(days=40)}, actor=alice)
    assert notify_expiring() == 0  # beyond EXPIRY_WARNING_DAYS
    key = GatewayKey.objects.get(pk=tokenbay_key.pk)
    update_key_settings(key=key, changes={"expires_at": timezone.now() + timedelta(days=10)}, actor=alice)
    assert notify_expiring() == 1
    assert [n.subject.split(" expires")[0] for n in events_of("key.expiring")] == ["Bob laptop", "Bob laptop"]


def test_an_expired_key_is_told_once(web, alice, tokenbay_key):
    GatewayKey.objects.filter(pk=tokenbay_key.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    record_expirations()
    record_expirations()
    [expired] = events_of("key.expired")
    assert expired.subject == "Bob laptop has expired"


def test_members_joining_and_leaving_are_told(web, alice, bob):
    add_member(team=web, username=make_user("erin").username, role="auditor", actor=alice)
    add_member(team=web, username="erin", role="member", actor=alice)  # a role change is not a new member
    remove_member(membership=web.memberships.get(user__username="bob"), actor=alice)
    assert [n.subject for n in events_of("member.added")] == ["erin joined Web"]
    [left] = events_of("member.offboarded")
    assert left.subject == "bob left Web" and "alice removed bob (member)" in left.text


def test_a_rotation_tells_each_holder_and_the_team(web, alice, bob, bob_assignment, tokenbay_key):
    carol = make_user("carol")
    carol.email = ""
    carol.save()
    add_member(team=web, username="carol", role="member", actor=alice)
    downloaded(assign_key(key=tokenbay_key, username="carol", actor=alice), bob_assignment)
    create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    rotate_key_secret(key=tokenbay_key, secret="sk-tokenbay-rotated-0123456789", actor=alice)
    rotated = Notification.objects.filter(event="key.rotated")
    assert rotated.count() == 3  # the team, bob, carol
    assert Delivery.objects.filter(notification__in=rotated, user__username="bob").count() == 1
    assert not Delivery.objects.filter(notification__in=rotated, user__username="carol").exists()  # no address


CANARY = "sk-canary-7f3a9c1e5b2d4068"
ROTATED_CANARY = "sk-canary-rotated-9e8d7c6b5a"
HOOK_CANARY = "whsec-canary-2468ace013579bdf"


def test_no_secret_ever_appears_in_a_message(smtp, web, alice, bob, tokenbay):
    """A canary key, rotated to a second canary, and a canary signing secret: none leaves in a message."""
    with (
        running_emulator(GatewayRules(auth_scheme="bearer", keys=set(), behaviour="401_echo")) as gw,
        running_receiver() as receiver,
    ):
        tokenbay.base_url = gw.base_url
        tokenbay.save()
        key = store_key(team=web, gateway=tokenbay, label="Canary", secret=CANARY, actor=alice)
        downloaded(assign_key(key=key, username="bob", actor=alice))
        webhook(web, receiver, "/hook", alice, secret=HOOK_CANARY)
        create_channel(team=web, kind="slack", target=receiver.url("/slack"), actor=alice)
        create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
        probe_key(key, trigger="command")  # the gateway echoes the key back in its error
        key = rotate_key_secret(key=key, secret=ROTATED_CANARY, actor=alice)
        GatewayKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        record_expirations()
        add_member(team=web, username=make_user("erin").username, role="member", actor=alice)
        remove_member(membership=web.memberships.get(user__username="erin"), actor=alice)
        deliver_due()
        sent = [r.body.decode() + json.dumps(r.headers) for r in receiver.received]
    events = {json.loads(r.body)["event"] for r in receiver.at("/hook")}
    assert events == {"key.failing", "key.rotated", "key.expired", "member.added", "member.offboarded"}
    assert len(smtp.messages) == 6  # five team events, and bob's rotation notice
    mails = [message.as_string() for _, message in smtp.messages]
    with connection.cursor() as cursor:
        tables = [t for t in connection.introspection.table_names() if t.startswith("alerts_")]
        rows = []
        for table in tables:
            cursor.execute(f"SELECT * FROM {table}")
            rows.append(repr(cursor.fetchall()))
    for text in [*sent, *mails, *rows]:
        for canary in (CANARY, ROTATED_CANARY, HOOK_CANARY, "canary-7f3a9c", "rotated-9e8d7c", "2468ace0"):
            assert canary not in text


def test_a_removed_channel_sends_nothing_more_but_its_history_stays(web, alice):
    with running_receiver({"/down": "fail"}) as receiver:
        channel = webhook(web, receiver, "/down", alice)
        add_member(team=web, username=make_user("erin").username, role="member", actor=alice)
        deliver_due()
        from alerts.services import delete_channel

        delete_channel(channel=channel, actor=alice)
        with time_machine.travel(timezone.now() + timedelta(hours=1)):
            deliver_due()
        assert len(receiver.received) == 1
    [delivery] = Delivery.objects.all()
    assert delivery.status == "cancelled" and delivery.attempt_log.count() == 1
    assert AuditEvent.objects.filter(action="channel.deleted").exists()


def test_a_test_message_reaches_only_that_channel(web, alice):
    from alerts.services import send_test

    with running_receiver() as receiver:
        one, _ = webhook(web, receiver, "/one", alice), webhook(web, receiver, "/two", alice)
        send_test(channel=one, actor=alice)
        deliver_due()
        assert [r.json["event"] for r in receiver.received] == ["test"] and receiver.received[0].path == "/one"


def test_probe_due_delivers_retries_even_when_no_key_is_due(web, alice, capsys):
    with running_receiver({"/hook": "fail"}) as receiver:
        webhook(web, receiver, "/hook", alice)
        add_member(team=web, username=make_user("erin").username, role="member", actor=alice)
        call_command("probe", "--due")  # no key at all: nothing to probe, the delivery's first try
        receiver.behaviour["/hook"] = "ok"
        with time_machine.travel(timezone.now() + timedelta(minutes=2)):
            call_command("probe", "--due")
        assert [r.answered for r in receiver.at("/hook")] == [500, 204]
    assert "No key is due for a probe." in capsys.readouterr().out


def test_a_label_with_a_line_break_still_makes_a_one_line_mail_subject(smtp, web, alice, tokenbay):
    key = store_key(team=web, gateway=tokenbay, label="Alice laptop", secret="sk-two-lines-0123456789", actor=alice)
    GatewayKey.objects.filter(pk=key.pk).update(label="Alice\nlaptop")  # as stored before labels were one line
    key.refresh_from_db()
    create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    rotate_key_secret(key=key, secret="sk-two-lines-rotated-0123456789", actor=alice)
    assert deliver_due()["sent"] == 1
    [(_, message)] = smtp.messages
    assert message["Subject"] == "[Gateway portal] Alice laptop was rotated"


def test_a_webhook_whose_channel_vanished_is_never_sent_unsigned(web, alice):
    with running_receiver() as receiver:
        channel = webhook(web, receiver, "/hook", alice)
        add_member(team=web, username=make_user("erin").username, role="member", actor=alice)
        Channel.objects.filter(pk=channel.pk).delete()  # gone between the claim and the send, say
        deliver_due()
        assert receiver.received == []
    assert Delivery.objects.get().last_error == "The channel was removed."
