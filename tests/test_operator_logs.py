"""The operator on call has only the logs: each failure they are asked about leaves a line saying when, how bad,
where, whose and why, and no line carries a secret."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.db import OperationalError
from django.test import Client

from alerts.delivery import deliver_due
from alerts.models import MAX_ATTEMPTS, Delivery
from alerts.services import create_channel, send_test
from gateways.api import views as gateway_views
from gateways.devices import create_device, install_device, remove_device
from portal.models import Action, AuditEvent
from tests.conftest import ROOT, api_client_for
from tests.portal.conftest import provider  # noqa: F401  (fixture)
from tests.portal.sso_answers import deliver, start
from tests.smtp_server import free_port
from tests.test_health import PRODUCTION
from tests.webhook_receiver import running_receiver

WEBHOOK_SECRET = "whsec-never-in-a-log-0123456789"
MAIL_PASSWORD = "mail-pass-never-in-a-log"


def lines(caplog, level: int = logging.INFO, name: str = "") -> list[str]:
    return [
        f"{r.levelname} {r.name} {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= level and r.name.startswith(name)
    ]


def assert_no_secret(caplog, *secrets: str) -> None:
    """Not in a message, nor in a traceback a handler would print."""
    text = caplog.text + "\n".join(logging.Formatter().format(r) for r in caplog.records)
    for secret in secrets:
        assert secret not in text


# --- Notification deliveries -------------------------------------------------------------------------------------


@pytest.fixture
def quick(settings):
    settings.NOTIFY_TIMEOUT = 2
    settings.PORTAL_URL = "https://portal.example.com"
    settings.PROBE_ALLOW_PRIVATE_IPS = True


@pytest.mark.django_db
def test_a_failing_mail_server_is_logged_with_the_team_the_address_and_the_error(quick, settings, web, alice, caplog):
    """README, EMAIL_URL: 'a failing mail server is logged and a notification retried'."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "mailer", MAIL_PASSWORD
    settings.EMAIL_CONFIGURED = True
    channel = create_channel(team=web, kind="email", target="oncall@example.com", actor=alice)
    send_test(channel=channel, actor=alice)
    caplog.set_level(logging.DEBUG)
    deliver_due()
    delivery = Delivery.objects.get(channel=channel)
    assert delivery.status == "pending" and delivery.attempts == 1
    [line] = lines(caplog, logging.WARNING, "alerts")
    assert line.startswith(f"WARNING alerts.delivery Notification delivery {delivery.pk} (test) to team web's e-mail")
    assert "oncall@example.com" in line and f"attempt 1 of {MAX_ATTEMPTS}, next try at" in line
    assert "Connection refused" in line or "ConnectionRefusedError" in line, line
    assert_no_secret(caplog, MAIL_PASSWORD)


@pytest.mark.django_db
def test_a_webhook_answering_500_is_logged_by_its_host_without_its_path_query_or_secret(quick, web, alice, caplog):
    with running_receiver({"/hook/path-secret-456?token=query-secret-123": "fail"}) as receiver:
        target = receiver.url("/hook/path-secret-456?token=query-secret-123")
        channel = create_channel(team=web, kind="webhook", target=target, secret=WEBHOOK_SECRET, actor=alice)
        send_test(channel=channel, actor=alice)
        caplog.set_level(logging.DEBUG)
        deliver_due()
        assert receiver.at("/hook/path-secret-456?token=query-secret-123")  # it was sent, and failed
    [line] = lines(caplog, logging.WARNING, "alerts")
    assert f"team web's webhook channel {channel.pk} at {receiver.url('')}/… failed at attempt 1" in line
    assert "HTTP 500 (its reply is on the team's Deliveries page)" in line and "receiver is down" not in line
    assert_no_secret(caplog, "query-secret-123", "path-secret-456", WEBHOOK_SECRET)


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["slack", "webhook"])
def test_a_reply_that_repeats_the_secret_path_stays_out_of_the_log(quick, web, alice, caplog, kind):
    """An error page often repeats the path it was sent to (Express's "Cannot POST /path"): the Deliveries page
    keeps the reply for the team's admins; the log keeps only its status."""
    path = "/services/T0001/B0001/slack-path-secret-xyz"
    with running_receiver({path: "echo404"}) as receiver:
        secret = WEBHOOK_SECRET if kind == "webhook" else ""
        channel = create_channel(team=web, kind=kind, target=receiver.url(path), secret=secret, actor=alice)
        send_test(channel=channel, actor=alice)
        caplog.set_level(logging.DEBUG)
        deliver_due()
    [line] = lines(caplog, logging.WARNING, "alerts")
    assert "HTTP 404" in line, line
    assert "Cannot POST" in Delivery.objects.get(channel=channel).last_error  # the page still shows the reply
    assert_no_secret(caplog, "slack-path-secret-xyz", "/services/")


@pytest.mark.django_db
def test_a_slack_webhook_is_logged_by_its_host_never_its_path(quick, web, alice, caplog):
    """A Slack (or Teams) incoming webhook's path is what lets anyone post to the channel; a redirect's too."""
    path = "/services/T0001/B0001/slack-path-secret"
    with running_receiver({path: "fail"}) as receiver:
        channel = create_channel(team=web, kind="slack", target=receiver.url(path), actor=alice)
        send_test(channel=channel, actor=alice)
        caplog.set_level(logging.DEBUG)
        deliver_due()
        receiver.behaviour[path] = "redirect"  # to https://elsewhere.example/hook
        Delivery.objects.filter(channel=channel).update(next_attempt_at="2000-01-01T00:00Z")
        deliver_due()
    first, second = lines(caplog, logging.WARNING, "alerts")
    host = receiver.url("")
    assert f"team web's Slack channel {channel.pk} at {host}/… failed at attempt 1" in first, first
    assert "failed at attempt 2" in second and "redirect to https://elsewhere.example/…" in second, second
    assert_no_secret(caplog, "slack-path-secret", "/services/", "elsewhere.example/hook")


@pytest.mark.django_db
def test_a_delivery_given_up_for_good_gets_an_error_line(quick, web, alice, caplog):
    with running_receiver({"/hook": "fail"}) as receiver:
        channel = create_channel(
            team=web, kind="webhook", target=receiver.url("/hook"), secret=WEBHOOK_SECRET, actor=alice
        )
        send_test(channel=channel, actor=alice)
        Delivery.objects.filter(channel=channel).update(attempts=MAX_ATTEMPTS - 1)
        caplog.set_level(logging.DEBUG)
        deliver_due()
    delivery = Delivery.objects.get(channel=channel)
    assert delivery.status == "failed"
    warning, error = lines(caplog, logging.WARNING, "alerts")
    assert warning.startswith("WARNING ") and f"failed at attempt {MAX_ATTEMPTS} of {MAX_ATTEMPTS}: " in warning
    assert "next try" not in warning
    assert error.startswith(f"ERROR alerts.delivery Notification delivery {delivery.pk} (test) to team web's webhook")
    assert f"is given up after {MAX_ATTEMPTS} attempts and will not be sent" in error
    assert_no_secret(caplog, WEBHOOK_SECRET)


@pytest.mark.django_db
def test_a_delivery_that_goes_through_logs_no_warning(quick, web, alice, caplog):
    with running_receiver({"/hook": "ok"}) as receiver:
        channel = create_channel(
            team=web, kind="webhook", target=receiver.url("/hook"), secret=WEBHOOK_SECRET, actor=alice
        )
        send_test(channel=channel, actor=alice)
        caplog.set_level(logging.DEBUG)
        deliver_due()
    assert Delivery.objects.get(channel=channel).status == "sent"
    assert lines(caplog, logging.INFO, "alerts") == []


# --- A refused live key fetch ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_removed_devices_key_fetch_names_device_owner_team_and_reason(client, bob_assignment, bob, alice, caplog):
    device, code = create_device(assignment=bob_assignment, name="bob-thinkpad", platform="linux", actor=bob)
    device, token = install_device(code=code, request=None, render=lambda d, t: t)
    remove_device(device=device, actor=alice)
    caplog.set_level(logging.INFO)
    for _ in range(2):  # each refused fetch: at INFO, so a device asking for ever stays out of a WARNING log
        assert client.get("/api/v1/device/key", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 403
    refused = lines(caplog, logging.INFO, "gateways")
    assert len(refused) == 2 and refused[0] == refused[1]
    assert refused[0].startswith(
        "INFO gateways.api.views Key fetch refused for device 'bob-thinkpad' of bob (team web, key "
        f"{bob_assignment.key.label!r}) from 127.0.0.1 (removed): "
    ), refused[0]
    assert "removed from the portal by alice" in refused[0]
    assert_no_secret(caplog, token, token.split("_", 2)[2])  # its secret part, which may hold "_" itself


@pytest.mark.django_db
def test_a_refusal_is_still_answered_in_plain_text_when_the_log_line_cannot_read_the_device(
    client, bob_assignment, bob, alice, caplog, monkeypatch
):
    """The database going away between the fetch and the log line's read of the names must not turn the helper's
    sentence into the JSON 503 of an outage."""
    device, code = create_device(assignment=bob_assignment, name="bob-thinkpad", platform="linux", actor=bob)
    device, token = install_device(code=code, request=None, render=lambda d, t: t)
    remove_device(device=device, actor=alice)

    class GoneDevices:
        class objects:  # stands in for the manager
            @staticmethod
            def filter(**kwargs):
                raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(gateway_views, "Device", GoneDevices)
    caplog.set_level(logging.INFO)
    answer = client.get("/api/v1/device/key", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert answer.status_code == 403 and answer["Content-Type"].startswith("text/plain")
    assert "removed from the portal by alice" in answer.content.decode()
    [line] = lines(caplog, logging.INFO, "gateways")
    assert line.startswith("INFO gateways.api.views Key fetch from 127.0.0.1 refused (removed): "), line


@pytest.mark.django_db
def test_an_unknown_device_token_is_logged_without_it(client, caplog):
    token = "pdt_abcdef123456_not-a-real-secret-0000"
    caplog.set_level(logging.INFO)
    assert client.get("/api/v1/device/key", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
    [line] = lines(caplog, logging.INFO, "gateways")
    assert line.startswith("INFO gateways.api.views Key fetch from 127.0.0.1 refused (unknown): "), line
    assert_no_secret(caplog, token, "not-a-real-secret")


# --- A refused sign-in with SSO ----------------------------------------------------------------------------------


def _sso_answer(client, idp, *, sub: str, email: str):
    """The provider's answer opened; returns the page and what must never be logged (code, state, ID token)."""
    url = start(client)
    code = idp.answer(url, sub=sub, email=email)
    state = parse_qs(urlsplit(url).query)["state"][0]
    return deliver(client, url, code), [code, state, idp.id_tokens[code], client.cookies["sessionid"].value]


@pytest.mark.django_db
def test_an_sso_sign_in_refused_is_a_warning_with_its_sentence(provider, caplog):  # noqa: F811
    caplog.set_level(logging.INFO)
    page, secrets = _sso_answer(Client(), provider, sub="carol-sub", email="carol@example.com")
    assert page.status_code == 403
    refused = AuditEvent.objects.filter(action=Action.SIGN_IN_FAILED).get()
    [line] = lines(caplog, logging.WARNING, "portal")
    assert line == f"WARNING portal.oidc SSO sign-in refused (HTTP 403) from 127.0.0.1: {refused.details['reason']}"
    assert "There is no account for carol@example.com here" in line
    assert_no_secret(caplog, *secrets)


@pytest.mark.django_db
def test_an_sso_sign_in_refused_names_the_account_the_audit_row_names(provider, bob, caplog):  # noqa: F811
    bob.is_active = False
    bob.save()
    caplog.set_level(logging.INFO)
    page, secrets = _sso_answer(Client(), provider, sub="bob-sub", email="bob@example.com")
    assert page.status_code == 403
    assert AuditEvent.objects.filter(action=Action.SIGN_IN_FAILED).get().target == "bob"
    [line] = lines(caplog, logging.WARNING, "portal")
    assert line.startswith("WARNING portal.oidc SSO sign-in refused (HTTP 403) for account 'bob' from 127.0.0.1: ")
    assert "is deactivated" in line
    assert_no_secret(caplog, *secrets)


@pytest.mark.django_db
def test_an_sso_error_answer_is_logged_on_one_line(provider, caplog):  # noqa: F811
    """The provider's error_description is its text: a line break in it cannot start a forged log line."""
    client = Client()
    url = start(client)
    state = parse_qs(urlsplit(url).query)["state"][0]
    caplog.set_level(logging.INFO)
    page = client.get(
        "/oidc/callback/",
        {"error": "access_denied", "error_description": "no\n2026-01-01 ERROR forged", "state": state},
    )
    assert page.status_code == 403
    [line] = lines(caplog, logging.WARNING, "portal")
    assert "\n" not in line and "did not sign you in: no 2026-01-01 ERROR forged." in line
    assert_no_secret(caplog, state)


# --- A server error ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_500_is_logged_once_with_method_path_and_traceback(alice, monkeypatch, caplog, method):
    def broken(self, request, *args, **kwargs):
        raise RuntimeError("boom in the view")

    monkeypatch.setattr(gateway_views.GatewayList, "initial", broken)
    client = api_client_for(alice)
    client.raise_request_exception = False
    token = client._credentials["HTTP_AUTHORIZATION"].split()[-1]
    caplog.set_level(logging.INFO)
    answer = getattr(client, method)("/api/v1/gateways/")
    assert answer.status_code == 500
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]  # Django's own line is not written a second time
    assert errors[0].name == "django.request"
    assert errors[0].getMessage() == f"Internal Server Error: {method.upper()} /api/v1/gateways/"
    assert errors[0].exc_info and "boom in the view" in caplog.text
    assert_no_secret(caplog, token)


# --- The format, in production ------------------------------------------------------------------------------------

PORTAL_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+ \S")
# gunicorn's own lines keep its formats: the error log's and the access log's (README, Deploying).
GUNICORN_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[(INFO|WARNING|ERROR)\] ")
ACCESS_LINE = re.compile(
    r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /healthz HTTP/1\.1" 200 '
)


def test_the_portals_lines_carry_time_level_and_logger_and_gunicorns_keep_their_own(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi"],
        cwd=ROOT,
        env={
            **PRODUCTION,
            "PORTAL_DATA_DIR": str(tmp_path),
            "BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": "1",
            "LOG_LEVEL": "INFO",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # the access log is on stdout, the rest on stderr: read as one stream
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        # A Host the portal does not serve: Django's own line, answered before any database is touched.
        assert httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": "evil.example"}).status_code == 400
    finally:
        server.terminate()
        try:
            output, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    text = output.splitlines()
    disallowed = [line for line in text if "Invalid HTTP_HOST header" in line]
    assert disallowed and PORTAL_LINE.match(disallowed[0]), output[-3000:]
    assert " ERROR django.security.DisallowedHost Invalid HTTP_HOST header: 'evil.example'" in disallowed[0]
    assert any(ACCESS_LINE.match(line) for line in text), output[-3000:]
    assert any(GUNICORN_LINE.match(line) and "Booting worker" in line for line in text), output[-3000:]
