"""Alerts as a team's on-call person meets them: a slow mail server, rotations, a removed channel, redirects."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.utils import timezone

from alerts.delivery import deliver_due
from alerts.models import Channel, Delivery, DeliveryStatus
from alerts.services import create_channel, delete_channel, send_test
from gateways.models import GatewayKey
from gateways.services import assign_key, rotate_key_secret
from portal import services as portal_services
from portal.models import Membership, Role
from tests.conftest import make_user
from tests.smtp_server import Inbox, body, free_port, start
from tests.webhook_receiver import running_receiver

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _quick(settings):
    settings.NOTIFY_TIMEOUT = 2
    settings.PORTAL_URL = "https://portal.example.com"
    settings.PROBE_ALLOW_PRIVATE_IPS = True


def _mail_to(settings, port: int) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_CONFIGURED = True


class SlowInbox(Inbox):
    """The tests' aiosmtpd inbox, answering MAIL, RCPT and DATA each after `pause` s (each within the socket limit)."""

    def __init__(self, pause: float) -> None:
        super().__init__()
        self.pause = pause

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        await asyncio.sleep(self.pause)
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        await asyncio.sleep(self.pause)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.pause)
        return await super().handle_DATA(server, session, envelope)


# --- I1: a slow mail server: the whole session ends at NOTIFY_TIMEOUT, and the page tells what happened --------


def test_a_mail_server_slower_than_notify_timeout_in_all_is_cut_recorded_unsent_and_holds_up_nobody(
    settings, web, alice
):
    inbox = SlowInbox(pause=1.5)  # 4.5 s in all with NOTIFY_TIMEOUT 2 s, each answer within 2 s
    controller = start(inbox)
    _mail_to(settings, controller.port)
    try:
        channel = create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
        send_test(channel=channel, actor=alice)
        started = time.monotonic()
        deliver_due()
        took = time.monotonic() - started
        time.sleep(3)  # long enough for the rest of the session, had it gone on
    finally:
        controller.stop()
    delivery = Delivery.objects.get(channel=channel)
    assert took < 3, f"the run was held {took:.1f} s (NOTIFY_TIMEOUT 2 s)"
    assert (delivery.status, delivery.last_error) == (DeliveryStatus.PENDING, "No answer within 2 s.")
    assert inbox.messages == [], "recorded as not sent, yet the mail arrived: the retry will send it twice"


def test_a_mail_server_slow_within_notify_timeout_delivers_once_recorded_sent(settings, web, alice):
    inbox = SlowInbox(pause=0.3)
    controller = start(inbox)
    _mail_to(settings, controller.port)
    try:
        channel = create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
        send_test(channel=channel, actor=alice)
        deliver_due()
    finally:
        controller.stop()
    assert Delivery.objects.get(channel=channel).status == DeliveryStatus.SENT
    assert len(inbox.to("ops@example.com")) == 1


def test_mails_to_a_server_that_never_answers_the_connect_all_end_at_notify_timeout(settings, web, alice):
    """More mails than the sender has threads: the ones waiting for a thread must not start a fresh connect
    of a whole NOTIFY_TIMEOUT once their time is up."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)  # its one place taken by the connects below: every later SYN goes unanswered
    port = server.getsockname()[1]
    fillers = [socket.socket() for _ in range(4)]
    for filler in fillers:
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
    settings.NOTIFY_CONCURRENCY = 20
    _mail_to(settings, port)
    try:
        channels = [
            create_channel(team=web, kind="email", target=f"ops{n}@example.com", actor=alice) for n in range(16)
        ]
        for channel in channels:
            send_test(channel=channel, actor=alice)
        started = time.monotonic()
        deliver_due()
        took = time.monotonic() - started
    finally:
        for sock in (server, *fillers):
            sock.close()
    assert took < 4, f"the run was held {took:.1f} s (NOTIFY_TIMEOUT 2 s)"
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.PENDING}


# --- I2: a rotation mails only holders with a downloaded set-up ---------------------------------------------


def test_a_rotation_does_not_mail_a_holder_who_never_downloaded_and_counts_them_apart(
    smtp, web, alice, bob, bob_assignment, tokenbay_key
):
    create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    rotate_key_secret(
        key=GatewayKey.objects.get(pk=tokenbay_key.pk), secret="sk-tokenbay-rotated-0123456789", actor=alice
    )
    deliver_due()
    assert smtp.to("bob@example.com") == []
    [to_team] = smtp.to("ops@example.com")
    assert "0 holder(s) were told to download" in body(to_team), body(to_team)
    assert "1 holder(s) never downloaded a set-up" in body(to_team), body(to_team)


def test_a_rotation_still_mails_a_holder_who_downloaded(smtp, web, alice, bob, bob_assignment, tokenbay_key):
    type(bob_assignment).objects.filter(pk=bob_assignment.pk).update(last_download_at=timezone.now())
    rotate_key_secret(
        key=GatewayKey.objects.get(pk=tokenbay_key.pk), secret="sk-tokenbay-rotated-0123456789", actor=alice
    )
    deliver_due()
    [to_bob] = smtp.to("bob@example.com")
    assert "Download your set-up again" in body(to_bob)


# --- I3: the self-assignment notice goes through the queue ---------------------------------------------------


@pytest.fixture
def olga(web):
    user = make_user("olga")
    Membership.objects.create(team=web, user=user, role=Role.ADMIN)
    return user


def test_the_self_assignment_notice_survives_a_mail_server_down_and_is_on_the_deliveries_page(
    settings, client, web, alice, olga, tokenbay_key, django_capture_on_commit_callbacks
):
    _mail_to(settings, free_port())  # nothing listens: the mail server is down
    with django_capture_on_commit_callbacks(execute=True):
        assign_key(key=GatewayKey.objects.get(pk=tokenbay_key.pk), username="alice", actor=alice)
    deliver_due()
    delivery = Delivery.objects.get(user=olga)
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1, delivery.last_error
    client.force_login(alice)
    assert "assigned the key" in client.get("/deliveries/").content.decode()

    inbox = Inbox()
    controller = start(inbox)
    settings.EMAIL_PORT = controller.port  # back a minute later
    try:
        with time_machine.travel(timezone.now() + timedelta(minutes=2)):
            deliver_due()
    finally:
        controller.stop()
    [mail] = inbox.to("olga@example.com")
    assert "alice assigned the key" in mail["Subject"] and tokenbay_key.masked in body(mail)
    assert "sk-tokenbay" not in body(mail).replace(tokenbay_key.masked, "")
    assert inbox.to("alice@example.com") == []


def test_the_self_assignment_notice_fails_with_the_no_mail_sentence_while_mail_is_off(
    settings, web, alice, olga, tokenbay_key, django_capture_on_commit_callbacks
):
    settings.EMAIL_CONFIGURED = False
    with django_capture_on_commit_callbacks(execute=True):
        assign_key(key=GatewayKey.objects.get(pk=tokenbay_key.pk), username="alice", actor=alice)
    deliver_due()
    delivery = Delivery.objects.get(user=olga)
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.last_error.startswith("This portal sends no mail"), delivery.last_error


# --- I4: removing a channel while a run sends to it ----------------------------------------------------------


def _server(handler) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _Answers(BaseHTTPRequestHandler):
    """Removes the channel while answering (the admin clicks Remove meanwhile), then answers `status`."""

    protocol_version = "HTTP/1.1"
    status = 204
    actor = None
    got = 0

    def log_message(self, *a):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        delete_channel(channel=Channel.objects.get(), actor=type(self).actor)
        type(self).got += 1
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("status", [204, 500])
def test_a_channel_removed_while_a_run_sends_to_it_keeps_the_attempt(web, alice, status):
    handler = type("Handler", (_Answers,), {"status": status, "actor": alice, "got": 0})
    server, base = _server(handler)
    try:
        channel = create_channel(team=web, kind="slack", target=f"{base}/h", actor=alice)
        send_test(channel=channel, actor=alice)
        deliver_due()
        with time_machine.travel(timezone.now() + timedelta(hours=1)):
            deliver_due()  # a failed one is not retried: its channel is gone
    finally:
        server.shutdown()
    delivery = Delivery.objects.get()
    [attempt] = delivery.attempt_log.all()
    assert handler.got == 1 and attempt.status_code == status
    if status == 204:
        assert delivery.status == DeliveryStatus.SENT
    else:
        assert (delivery.status, delivery.last_error) == (DeliveryStatus.CANCELLED, "The channel was removed.")


def test_removing_a_channel_still_cancels_what_no_run_holds(web, alice):
    channel = create_channel(team=web, kind="slack", target="http://127.0.0.1:9/h", actor=alice)
    send_test(channel=channel, actor=alice)
    delete_channel(channel=channel, actor=alice)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.last_error) == (DeliveryStatus.CANCELLED, "The channel was removed.")
    assert not delivery.attempt_log.exists()


# --- I5: a relative redirect names the full URL --------------------------------------------------------------


class _RelativeRedirect(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(301)
        self.send_header("Location", "/v2/hook")
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_relative_redirect_names_the_full_url_to_give(web, alice):
    server, base = _server(_RelativeRedirect)
    try:
        channel = create_channel(team=web, kind="slack", target=f"{base}/hook", actor=alice)
        send_test(channel=channel, actor=alice)
        deliver_due()
    finally:
        server.shutdown()
    last_error = Delivery.objects.get(channel=channel).last_error
    assert f"a redirect to {base}/v2/hook." in last_error, last_error


# --- I6: member.added links to the team page ----------------------------------------------------------------


def test_member_added_carries_a_link_to_the_team_page(web, alice):
    with running_receiver() as receiver:
        create_channel(
            team=web, kind="webhook", target=receiver.url("/hook"), secret="receiver-shared-secret-0123", actor=alice
        )
        make_user("erin")
        portal_services.add_member(team=web, username="erin", role=Role.MEMBER, actor=alice)
        deliver_due()
        [got] = receiver.at("/hook")
    assert got.json["event"] == "member.added"
    assert got.json["url"] == "https://portal.example.com/teams/web/", got.json
