"""The portal's mail as a mail server sees it: the raw bytes and envelope a real SMTP server (aiosmtpd) receives.

A sender no server takes stops start-up; a holder who left the team, or whose address no server can be given,
is not mailed; and a server that offers no 8BITMIME (RFC 6152) gets 7-bit data it can pass on unchanged.
"""

from __future__ import annotations

import email
import logging
from dataclasses import dataclass
from email import policy

import pytest
from aiosmtpd.controller import Controller
from django.utils import timezone

from alerts.delivery import deliver_due
from alerts.models import Delivery, DeliveryStatus
from gateways.models import Assignment
from gateways.services import assign_key, rotate_key_secret
from portal.mail import wait_for_mails_after_response
from portal.models import Membership, Role, Team
from portal.services import remove_member
from tests.conftest import TEST_AUDIT_KEYRING, TEST_KEYRING, make_user, production_env, run_manage
from tests.smtp_server import free_port, send_mail_to

ROTATED = "sk-tokenbay-rotated-0123456789"


@dataclass
class Raw:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.content, policy=policy.default)

    def text(self) -> str:
        return self.message.get_body(preferencelist=("plain",)).get_content()


class RawInbox:
    """Keeps each message's bytes as they came over the wire, and its envelope."""

    def __init__(self) -> None:
        self.raws: list[Raw] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        content = envelope.original_content or envelope.content
        self.raws.append(Raw(envelope.mail_from, list(envelope.rcpt_tos), content))
        return "250 Message accepted for delivery"


class SevenBitInbox(RawInbox):
    """A server that offers no 8BITMIME (nor SMTPUTF8): it takes 7-bit data only."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses) -> list[str]:
        session.host_name = hostname
        return [r for r in responses if "8BITMIME" not in r and "SMTPUTF8" not in r]


def _serve(settings, inbox: RawInbox):
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    send_mail_to(settings, controller.port)
    settings.PORTAL_URL = "https://portal.example.com"
    settings.NOTIFY_TIMEOUT = 5
    return controller


@pytest.fixture
def seven_bit(settings):
    inbox = SevenBitInbox()
    controller = _serve(settings, inbox)
    yield inbox
    controller.stop()


def _rotate_after_download(assignment: Assignment, key, actor) -> None:
    """A holder who downloaded the set-up is told to download it again after a rotation."""
    Assignment.objects.filter(pk=assignment.pk).update(last_download_at=timezone.now())
    rotate_key_secret(key=key, secret=ROTATED, actor=actor)


# --- DEFAULT_FROM_EMAIL ---------------------------------------------------------------------------------------


def _check(tmp_path, sender: str):
    env = production_env(
        tmp_path / "data",
        PORTAL_ENCRYPTION_KEYS=TEST_KEYRING,
        PORTAL_AUDIT_KEYS=TEST_AUDIT_KEYRING,
        EMAIL_URL="smtp://mail.example.com:587",
        DEFAULT_FROM_EMAIL=sender,
    )
    return run_manage("check", env=env)


@pytest.mark.parametrize(
    "sender",
    [
        '"Gateway Portal <portal@example.com>"',  # a docker --env-file keeps the quotes
        "'Gateway Portal <portal@example.com>'",
        "Gateway Portal",  # no address at all
        "portal@example.com, ops@example.com",  # two senders
        "Gateway Portal <portal@example.com> extra",
        "zoë@example.com",  # no server without SMTPUTF8 takes it
    ],
)
def test_a_default_from_email_no_mail_server_takes_stops_start_up_with_a_sentence(tmp_path, sender):
    done = _check(tmp_path, sender)
    assert done.returncode != 0, f"DEFAULT_FROM_EMAIL={sender} was taken"
    assert "Traceback" not in done.stderr, done.stderr[-1200:]
    assert "DEFAULT_FROM_EMAIL" in done.stderr and "Gateway Portal <portal@example.com>" in done.stderr, done.stderr


@pytest.mark.parametrize(
    "sender",
    [
        "portal@example.com",
        "Gateway Portal <portal@example.com>",
        '"Portal, Inc." <p@example.com>',
        "p@bücher.de",
        # A period in the name is obsolete syntax to Python's parser, and Django sends it as it is.
        "Acme Inc. Portal <portal@example.com>",
        "J. Smith <portal@example.com>",
        # A one-label domain: Django's validator refuses it, mail servers take it, the last release sent from it.
        "Gateway Portal <noreply@intranet>",
    ],
)
def test_a_default_from_email_a_server_takes_starts(tmp_path, sender):
    done = _check(tmp_path, sender)
    assert done.returncode == 0, done.stderr[-1200:]


# --- a person's delivery after they left ----------------------------------------------------------------------


@pytest.fixture
def raw_smtp(settings):
    inbox = RawInbox()
    controller = _serve(settings, inbox)
    yield inbox
    controller.stop()


@pytest.mark.django_db
def test_a_holder_removed_from_the_team_before_notify_runs_is_not_told_to_download_again(
    raw_smtp, client, web, alice, bob, staff, bob_assignment, tokenbay_key
):
    _rotate_after_download(bob_assignment, tokenbay_key, alice)
    remove_member(membership=web.memberships.get(user=bob), actor=alice)
    deliver_due()
    assert [r.rcpt_tos for r in raw_smtp.raws if "bob@example.com" in r.rcpt_tos] == []
    delivery = Delivery.objects.get(user=bob)
    assert delivery.status == DeliveryStatus.CANCELLED
    assert delivery.last_error == "bob is no longer in team Web."
    client.force_login(staff)  # a mail to someone outside the team is on staff's Deliveries page only
    assert "bob is no longer in team Web." in client.get("/deliveries/").content.decode()


@pytest.mark.django_db
def test_a_holder_whose_key_was_taken_back_or_who_was_deactivated_is_not_mailed(
    raw_smtp, web, alice, bob, bob_assignment, tokenbay_key
):
    erin = make_user("erin")
    Membership.objects.create(team=web, user=erin, role=Role.MEMBER)
    erin_assignment = assign_key(key=tokenbay_key, username="erin", actor=alice)
    Assignment.objects.filter(pk=erin_assignment.pk).update(last_download_at=timezone.now())
    _rotate_after_download(bob_assignment, tokenbay_key, alice)
    Assignment.objects.filter(pk=bob_assignment.pk).delete()  # taken back; bob stays in the team
    erin.is_active = False
    erin.save()
    deliver_due()
    assert raw_smtp.raws == []
    bob_delivery, erin_delivery = Delivery.objects.get(user=bob), Delivery.objects.get(user=erin)
    assert (bob_delivery.status, bob_delivery.last_error) == (
        DeliveryStatus.CANCELLED,
        "bob no longer holds this key.",
    )
    assert (erin_delivery.status, erin_delivery.last_error) == (
        DeliveryStatus.CANCELLED,
        "erin's account was deactivated.",
    )


@pytest.mark.django_db
def test_a_holder_still_in_the_team_is_told_to_download_again(raw_smtp, alice, bob, bob_assignment, tokenbay_key):
    _rotate_after_download(bob_assignment, tokenbay_key, alice)
    deliver_due()
    [raw] = [r for r in raw_smtp.raws if r.rcpt_tos == ["bob@example.com"]]
    assert f"#assignment-{bob_assignment.id}" in raw.text()
    assert Delivery.objects.get(user=bob).status == DeliveryStatus.SENT


# --- an address no server can be given ------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_holder_address_with_a_non_ascii_local_part_fails_with_a_sentence_not_an_encoded_word(
    raw_smtp, caplog, client, web, alice, tokenbay_key
):
    caplog.set_level(logging.INFO, logger="mail.log")
    zoe = make_user("zoe")
    zoe.email = "zoë@example.com"  # as an SSO provider may send it
    zoe.save()
    Membership.objects.create(team=web, user=zoe, role=Role.MEMBER)
    assignment = assign_key(key=tokenbay_key, username="zoe", actor=alice)
    _rotate_after_download(assignment, tokenbay_key, alice)
    deliver_due()
    sent = [r.getMessage() for r in caplog.records if r.name == "mail.log" and ">> b'" in r.getMessage()]
    assert not [line for line in sent if "=?utf-8?" in line.lower()], sent
    assert [r for r in raw_smtp.raws if any("zo" in to for to in r.rcpt_tos)] == []
    delivery = Delivery.objects.get(user=zoe)
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 1  # never retried: it cannot change
    assert "zoë@example.com" in delivery.last_error and "outside ASCII" in delivery.last_error
    client.force_login(alice)
    assert "outside ASCII" in client.get("/deliveries/").content.decode()


# --- 7-bit servers --------------------------------------------------------------------------------------------


def _seven_bit(raw: Raw) -> bool:
    return all(b < 128 for b in raw.content)


@pytest.mark.django_db
def test_an_invitation_to_a_server_without_8bitmime_goes_as_7_bit_data(seven_bit, api, staff):
    team = Team.objects.create(name="Équipe Ω", slug="equipe")
    Membership.objects.create(team=team, user=staff, role=Role.ADMIN)
    response = api(staff).post("/api/v1/teams/equipe/invitations/", {"email": "zoe@example.com"}, format="json")
    assert response.status_code == 201 and response.json()["emailed"] is True
    [raw] = seven_bit.raws
    assert _seven_bit(raw), raw.content
    assert "Équipe Ω" in raw.text() and response.json()["accept_url"] in raw.text()


@pytest.mark.django_db
def test_a_notification_to_a_server_without_8bitmime_goes_as_7_bit_data(seven_bit, alice, bob, bob_assignment):
    key = bob_assignment.key
    Team.objects.filter(pk=key.team_id).update(name="Équipe Ω")
    key.team.refresh_from_db()
    _rotate_after_download(bob_assignment, key, alice)
    deliver_due()
    [raw] = [r for r in seven_bit.raws if r.rcpt_tos == ["bob@example.com"]]
    assert _seven_bit(raw), raw.content
    assert "team Équipe Ω" in raw.text()
    assert Delivery.objects.get(user=bob).status == DeliveryStatus.SENT


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the reset mail goes in a thread of its own
def test_a_password_reset_to_a_server_without_8bitmime_goes_as_7_bit_data(seven_bit, client, web):
    zoe = make_user("zoë")
    zoe.email = "zoe@example.com"
    zoe.save()
    response = client.post("/password_reset/", {"email": "zoe@example.com"})
    assert response.status_code == 302
    wait_for_mails_after_response()
    [raw] = seven_bit.raws
    assert _seven_bit(raw), raw.content
    assert "the account zoë on the gateway portal" in raw.text()


@pytest.mark.django_db
def test_an_ascii_mail_still_goes_as_plain_7_bit_text(seven_bit, api, staff):
    """Only a body that needs it is encoded: an ASCII one reads the same in the raw mail (a console, a log)."""
    team = Team.objects.create(name="Web team", slug="webteam")
    Membership.objects.create(team=team, user=staff, role=Role.ADMIN)
    response = api(staff).post("/api/v1/teams/webteam/invitations/", {"email": "zoe@example.com"}, format="json")
    [raw] = seven_bit.raws
    assert raw.message["Content-Transfer-Encoding"] == "7bit"
    assert response.json()["accept_url"].encode() in raw.content


def test_djangos_own_mails_go_as_7_bit_data_in_a_fresh_process(tmp_path):
    """What covers Django's password reset (and any other mail it builds) is set at start-up, not by a view."""
    env = production_env(
        tmp_path / "data",
        PORTAL_ENCRYPTION_KEYS=TEST_KEYRING,
        PORTAL_AUDIT_KEYS=TEST_AUDIT_KEYRING,
        EMAIL_URL="console://",
    )
    code = (
        "from django.core.mail import EmailMultiAlternatives as M; M('Hi', 'Équipe Ω', None, ['a@example.com']).send()"
    )
    done = run_manage("shell", "-c", code, env=env)
    assert done.returncode == 0, done.stderr[-1200:]
    assert "Content-Transfer-Encoding: quoted-printable" in done.stdout and done.stdout.isascii(), done.stdout


@pytest.mark.django_db
def test_the_portal_mails_no_address_a_server_cannot_be_given(raw_smtp, caplog):
    from portal import mail

    sent = mail.send(to="zoë@example.com", subject="Hi", template="portal/mail/invitation.txt", context={})
    assert sent is False and raw_smtp.raws == []
    assert "outside ASCII" in caplog.text
