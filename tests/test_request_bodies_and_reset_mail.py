"""What an anonymous caller can make the portal do with a request: a body past DATA_UPLOAD_MAX_MEMORY_SIZE is refused
before it is read, a file part is never written to disk, and the reset form answers as fast for an address with an
account as for one without (its mail goes after the response)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from portal.mail import wait_for_mails_after_response
from tests.smtp_server import Inbox, link_in, send_mail_to, start
from tests.test_concurrency import free_port
from tests.test_health import start_production_gunicorn

LIMIT_SENTENCE = "The request body is larger than 1024 KiB, the most the portal accepts."


def a_file(size: int) -> SimpleUploadedFile:
    return SimpleUploadedFile("a.bin", b"A" * size, content_type="application/octet-stream")


# 1. Request bodies ---------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_anonymous_multipart_post_past_the_limit_is_a_413_with_a_sentence(client):
    response = client.post("/login/", {"username": "nobody", "password": "x", "f": a_file(3 * 1024 * 1024)})
    assert response.status_code == 413
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode().startswith(LIMIT_SENTENCE)


@pytest.mark.django_db
def test_an_api_body_past_the_limit_is_a_413_with_a_detail(client):
    response = client.post("/api/v1/teams/", {"f": a_file(2 * 1024 * 1024)})
    assert response.status_code == 413
    assert response.json()["detail"].startswith(LIMIT_SENTENCE)


@pytest.mark.django_db
def test_a_file_part_within_the_limit_is_dropped_and_never_written_to_disk(client, settings, tmp_path):
    """Django would spool a file part past FILE_UPLOAD_MAX_MEMORY_SIZE to FILE_UPLOAD_TEMP_DIR: a folder that does
    not exist makes any such write fail, so the page answering as usual shows that nothing was written."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "no such folder")
    response = client.post("/login/", {"username": "nobody", "password": "x", "f": a_file(900 * 1024)})
    assert response.status_code == 200
    assert "Please enter a correct" in response.content.decode()  # the form was read: the sign-in was refused


@pytest.mark.django_db
def test_a_form_just_under_the_limit_is_read_as_usual(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096

    def sign_in(padding: int):
        body = urlencode({"username": "nobody", "password": "x", "padding": "p" * padding})
        return len(body), client.post("/login/", body, content_type="application/x-www-form-urlencoded")

    size, response = sign_in(4000)
    assert size <= 4096 and response.status_code == 200
    assert "Please enter a correct" in response.content.decode()  # the form was read: the sign-in was refused
    size, too_big = sign_in(4100)
    assert size > 4096 and too_big.status_code == 413 and "larger than 4 KiB" in too_big.content.decode()


def test_gunicorn_answers_a_600_mb_content_length_with_a_413_without_waiting_for_the_body(tmp_path):
    """gunicorn as the image runs it: the request's headers announce 600 MB and no body follows. Reading it first
    (CSRF reads the form once the request carries its cookie) would wait for the body; the refusal comes from the
    headers alone."""
    port = free_port()
    server = start_production_gunicorn(tmp_path, port, WEB_CONCURRENCY="1", SECURE_SSL_REDIRECT="False")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
            conn.sendall(
                b"POST /login/ HTTP/1.1\r\nHost: portal.example.com\r\nCookie: csrftoken=" + b"c" * 32 + b"\r\n"
                b"Content-Type: multipart/form-data; boundary=xyz\r\n"
                b"Content-Length: 629145600\r\n\r\n--xyz\r\n"
            )
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = conn.recv(4096)
                assert chunk, f"gunicorn closed the connection: {answer!r}"
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    finally:
        server.terminate()
        server.wait(timeout=30)


# 2. The reset form's answer time ---------------------------------------------------------------------------------


class HeldInbox(Inbox):
    """An SMTP server that takes each mail only once the test lets it go (or after 15 s)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.mail_started = threading.Event()

    async def handle_DATA(self, server, session, envelope) -> str:
        self.mail_started.set()
        for _ in range(300):
            if self.release.is_set():
                break
            await asyncio.sleep(0.05)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def held_smtp(settings):
    inbox = HeldInbox()
    controller = start(inbox)
    send_mail_to(settings, controller.port)
    settings.EMAIL_TIMEOUT = 30  # longer than the server holds a mail: a mail sent in the request waits it out
    yield inbox
    inbox.release.set()
    wait_for_mails_after_response()
    controller.stop()


def timed_reset(address: str) -> tuple[float, object]:
    started = time.monotonic()
    response = Client().post("/password_reset/", {"email": address}, follow=True)
    return time.monotonic() - started, response


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_reset_for_an_account_is_answered_while_the_mail_server_holds_its_mail(bob, held_smtp):
    took, response = timed_reset("bob@example.com")
    assert response.redirect_chain == [("/password_reset/done/", 302)]
    assert took < 5, f"the answer waited {took:.1f} s for the mail server"
    assert held_smtp.mail_started.wait(10), "no mail was started after the answer"
    assert held_smtp.messages == []
    held_smtp.release.set()
    wait_for_mails_after_response()
    [message] = held_smtp.to("bob@example.com")
    assert "/reset/" in link_in(message)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_reset_for_an_address_without_an_account_is_answered_alike_and_mails_nothing(bob, held_smtp):
    took_none, no_account = timed_reset("nobody@example.com")
    took_bob, account = timed_reset("bob@example.com")
    assert took_none < 5 and took_bob < 5
    assert no_account.redirect_chain == account.redirect_chain
    assert no_account.content == account.content
    held_smtp.release.set()
    wait_for_mails_after_response()
    assert [message["To"] for message in held_smtp.messages] == ["bob@example.com"]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_reset_mail_that_fails_is_logged_without_its_link(bob, settings, caplog):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens there
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_CONFIGURED = True
    _, response = timed_reset("bob@example.com")
    assert response.redirect_chain == [("/password_reset/done/", 302)]
    wait_for_mails_after_response()
    [record] = [r for r in caplog.records if r.name == "django.contrib.auth"]
    assert record.getMessage() == f"Failed to send password reset email to {bob.pk}"
    assert "/reset/" not in caplog.text


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_under_the_test_mail_backend_the_reset_mail_reaches_the_outbox(bob, mailoutbox, settings):
    settings.EMAIL_CONFIGURED = True
    _, response = timed_reset("bob@example.com")
    assert response.redirect_chain == [("/password_reset/done/", 302)]
    wait_for_mails_after_response()
    [message] = mailoutbox
    assert message.to == ["bob@example.com"] and "/reset/" in message.body


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_resets_for_many_accounts_at_once_go_through_one_mail_thread_and_all_arrive(held_smtp):
    """Anyone may ask for resets: neither the threads sending them nor their database connections grow with them."""
    for n in range(8):
        get_user_model().objects.create_user(f"dev{n}", f"dev{n}@example.com", "pass-whatever-123")
    anyone = Client()
    for n in range(8):
        assert anyone.post("/password_reset/", {"email": f"dev{n}@example.com"}).status_code == 302
    assert held_smtp.mail_started.wait(10), "no mail was started after the answers"
    senders = [t for t in threading.enumerate() if t.name.startswith("mail-after-response") and t.is_alive()]
    assert len(senders) == 1, senders
    held_smtp.release.set()
    wait_for_mails_after_response()
    assert sorted(str(m["To"]) for m in held_smtp.messages) == [f"dev{n}@example.com" for n in range(8)]
