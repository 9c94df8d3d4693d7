"""Mail that does not go: settings the mail server can never take are refused at start-up, and a mail that fails
after the invitation (or confirmation) is saved is said on the page, never a 500 that loses the one-time link."""

from __future__ import annotations

import asyncio
from html import unescape

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from config.settings import parse_email_url
from portal.models import Invitation, UnconfirmedEmail
from tests.conftest import TEST_AUDIT_KEYRING, TEST_KEYRING, production_env, run_manage
from tests.smtp_server import Inbox, free_port

pytestmark = pytest.mark.django_db

INVITE = "/teams/web/invitations/"
FAILED = "The mail server did not take the mail to frank@example.com: copy the link below and send it yourself."


def page_text(response) -> str:
    return " ".join(unescape(response.content.decode()).split())


def start_up(tmp_path, **mail: str):
    env = production_env(tmp_path, PORTAL_ENCRYPTION_KEYS=TEST_KEYRING, PORTAL_AUDIT_KEYS=TEST_AUDIT_KEYRING, **mail)
    return run_manage("check", env=env)


@pytest.mark.parametrize(
    "mail, sentence",
    [
        ({"EMAIL_URL": "smtps://mailer:secret@mail.example.com:465?tls=true"}, "EMAIL_URL asks for TLS twice"),
        (
            {"EMAIL_HOST": "mail.example.com", "EMAIL_USE_TLS": "True", "EMAIL_USE_SSL": "True"},
            "EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be True",
        ),
        ({"EMAIL_URL": "smtp://mailer:p%C3%A4ss-w%C3%B6rd@mail.example.com:587?tls=true"}, "outside ASCII"),
        ({"EMAIL_HOST": "mail.example.com", "EMAIL_HOST_USER": "m", "EMAIL_HOST_PASSWORD": "päss-wörd"}, "ASCII"),
    ],
)
def test_mail_settings_no_mail_could_go_with_stop_start_up_with_a_sentence(tmp_path, mail, sentence):
    done = start_up(tmp_path, **mail)
    assert done.returncode != 0 and sentence in done.stderr, (done.returncode, done.stderr[-600:])
    assert "päss" not in done.stderr and "p%C3%A4ss" not in done.stderr  # the password is not repeated


@pytest.mark.parametrize(
    "mail",
    [
        {"EMAIL_URL": "smtps://mailer:secret@mail.example.com:465"},
        {"EMAIL_URL": "smtp://mailer:secret@mail.example.com:587?tls=true"},
        {"EMAIL_HOST": "mail.example.com", "EMAIL_USE_SSL": "True", "EMAIL_HOST_PASSWORD": "plain-ascii"},
    ],
)
def test_usual_mail_settings_still_start(tmp_path, mail):
    done = start_up(tmp_path, **mail)
    assert done.returncode == 0, done.stderr[-600:]


@pytest.fixture
def tls_and_ssl(settings):
    """Both set, as Django refuses them at the first mail (a test's settings skip the start-up refusal)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = True
    settings.EMAIL_CONFIGURED = True


@pytest.fixture
def non_ascii_password(settings):
    """A server that asks for AUTH, and a password smtplib cannot send."""
    controller = Controller(
        Inbox(),
        hostname="127.0.0.1",
        port=free_port(),
        auth_require_tls=False,
        authenticator=lambda server, session, envelope, mechanism, data: AuthResult(success=True),
    )
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "mailer", "päss-wörd"
    settings.EMAIL_CONFIGURED = True
    yield
    controller.stop()


@pytest.fixture(params=["tls_and_ssl", "non_ascii_password", "server_down", "server_refusing", "server_slow"])
def failing_mail(request, settings):
    if request.param in ("tls_and_ssl", "non_ascii_password"):
        yield request.getfixturevalue(request.param)
        return
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_CONFIGURED = True
    settings.EMAIL_TIMEOUT = 1
    if request.param == "server_down":
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
        yield
        return

    class Failing(Inbox):
        async def handle_DATA(self, server, session, envelope) -> str:
            if request.param == "server_slow":
                await asyncio.sleep(3)  # longer than EMAIL_TIMEOUT
            return "554 5.7.1 Message refused"

    controller = Controller(Failing(), hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    yield
    controller.stop()


def test_an_invitation_whose_mail_fails_shows_its_link_and_says_the_mail_did_not_go(alice, failing_mail):
    browser = Client(raise_request_exception=False)
    browser.force_login(alice)
    response = browser.post(INVITE, {"email": "frank@example.com", "role": "member"}, follow=True)
    assert response.status_code == 200
    text = page_text(response)
    link = Invitation.objects.get(email="frank@example.com")
    assert "data-invitation-link>http://testserver/invitations/inv_" in response.content.decode()
    assert FAILED in text and "It was e-mailed" not in text
    # The link in hand, the invitation works: nothing to retry (which would be refused as a duplicate).
    assert link.state == "pending"


def test_asking_for_a_confirmation_link_when_the_mail_fails_says_so(bob, failing_mail):
    UnconfirmedEmail.objects.create(user=bob, email=bob.email)
    browser = Client(raise_request_exception=False)
    browser.force_login(bob)
    response = browser.post("/account/confirm-email/", follow=True)
    assert response.status_code == 200
    assert "The mail server did not take the mail" in page_text(response)
    assert UnconfirmedEmail.objects.get(user=bob).link_sent_at is None  # another try is allowed at once


def test_an_invitation_mailed_says_so_without_a_warning(client, alice, smtp):
    client.force_login(alice)
    response = client.post(INVITE, {"email": "frank@example.com", "role": "member"}, follow=True)
    text = page_text(response)
    assert "It was e-mailed to frank@example.com." in text and "did not take the mail" not in text
    assert len(smtp.to("frank@example.com")) == 1


def test_an_invitation_without_mail_set_up_gives_the_link_without_a_warning(client, alice, settings):
    settings.EMAIL_CONFIGURED = False
    settings.EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
    client.force_login(alice)
    response = client.post(INVITE, {"email": "frank@example.com", "role": "member"}, follow=True)
    text = page_text(response)
    assert "data-invitation-link" in response.content.decode()
    assert "did not take the mail" not in text and "It was e-mailed" not in text


def test_an_smtps_url_with_tls_true_is_refused_not_guessed():
    with pytest.raises(ImproperlyConfigured, match="EMAIL_URL asks for TLS twice"):
        parse_email_url("smtps://mailer:secret@mail.example.com:465?tls=true")
