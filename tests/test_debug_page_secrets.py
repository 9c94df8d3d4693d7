"""Secrets that are not a key the vault opened, on Django's error page with DEBUG on (the default of `make run`),
in the admin, and in a page that refuses a code.

tests/test_secret_leaks.py covers keys the vault opened (Secret objects). These are the rest: a key typed in to be
stored (DRF's serializer repr quotes the data it was given), one-time secrets a page shows once (an access token, an
invitation link, recovery codes, a reset link, an install code: the template's Context prints every dict it holds),
passwords inside URL-shaped settings and environment variables, and django-otp's own admin pages.
"""

from __future__ import annotations

import secrets
from base64 import b32encode

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, RequestFactory
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

import alerts.services
import gateways.services
import gateways.views
from gateways import devices, events
from gateways.services import store_key
from portal import invitations, services, two_factor
from portal.sudo import SUDO_SESSION_KEY
from tests.conftest import confirm_password
from tests.portal.test_redaction import leaks
from tests.test_secret_leaks import api_as, web_as

pytestmark = pytest.mark.django_db

BOOM = "forced failure in a context processor"


def boom(request):
    raise RuntimeError(BOOM)


@pytest.fixture
def failing_pages(settings):
    """Every page's render fails in a context processor (the database hiccups, say), after its view built the context."""
    settings.DEBUG = True
    templates = [dict(engine) for engine in settings.TEMPLATES]
    templates[0]["OPTIONS"] = {
        **templates[0]["OPTIONS"],
        "context_processors": [*templates[0]["OPTIONS"]["context_processors"], f"{__name__}.boom"],
    }
    settings.TEMPLATES = templates


@pytest.fixture
def canary() -> str:
    return f"sk-{secrets.token_hex(16)}"


def capture(monkeypatch, module, name, pick) -> list:
    """Wrap module.name; keep what `pick` takes out of each result."""
    seen = []
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        seen.append(pick(result))
        return result

    monkeypatch.setattr(module, name, wrapper)
    return seen


def fail_plainly(monkeypatch, module, name: str) -> None:
    def failing(*args, **kwargs):
        raise RuntimeError(f"forced failure in {name}")

    monkeypatch.setattr(module, name, failing)


def assert_a_debug_page_without(response, secret: str, error: str, what: str) -> None:
    body = response.content.decode()
    assert response.status_code == 500 and error in body, body[:300]
    assert leaks(body, secret) == [], f"{what} is on Django's debug page"


def enrolled(user) -> tuple[TOTPDevice, list[str]]:
    device = two_factor.start_enrolment(user)
    request = RequestFactory().post("/")
    request.user, request.session = user, SessionStore()
    codes = two_factor.confirm_enrolment(request=request, device=device, code=str(totp(device.bin_key)).zfill(6))
    assert codes
    return TOTPDevice.objects.get(user=user, confirmed=True), codes


# 1. A secret typed in to be stored: the serializer that took it quotes it.


def test_a_key_typed_into_the_api_is_not_on_the_page_of_a_failure_after_the_serializer(
    settings, monkeypatch, alice, canary
):
    settings.DEBUG = True
    fail_plainly(monkeypatch, gateways.services, "record_key_event")
    response = api_as(alice).post(
        "/api/v1/teams/web/keys/", {"gateway": "tokenbay", "label": "New", "secret": canary}, format="json"
    )
    assert_a_debug_page_without(response, canary, "forced failure in record_key_event", "the new gateway key")


def test_a_key_rotated_in_through_the_api_is_not_on_the_page_of_a_failing_receiver(
    settings, alice, web, tokenbay, canary
):
    key = store_key(team=web, gateway=tokenbay, label="Old", secret=f"sk-{secrets.token_hex(16)}", actor=alice)
    settings.DEBUG = True

    def failing_receiver(sender, **kwargs):
        raise RuntimeError("forced failure in a key_rotated receiver")

    events.key_rotated.connect(failing_receiver, weak=False, dispatch_uid="debug-page-secrets")
    try:
        response = api_as(alice).patch(f"/api/v1/keys/{key.id}/", {"secret": canary}, format="json")
    finally:
        events.key_rotated.disconnect(dispatch_uid="debug-page-secrets")
    assert_a_debug_page_without(response, canary, "forced failure in a key_rotated receiver", "the rotated-in key")


def test_a_webhooks_signing_secret_is_not_on_the_page_of_a_failure_as_it_is_audited(settings, monkeypatch, alice):
    settings.DEBUG = True
    signing = f"whsec-{secrets.token_hex(16)}"

    class FailingAudit:
        @staticmethod
        def record(*args, **kwargs):
            raise RuntimeError("forced failure in audit.record")

    monkeypatch.setattr(alerts.services, "audit", FailingAudit)
    response = api_as(alice).post(
        "/api/v1/teams/web/channels/",
        {"kind": "webhook", "target": "https://hooks.example.com/portal", "secret": signing},
        format="json",
    )
    assert_a_debug_page_without(response, signing, "forced failure in audit.record", "the webhook's signing secret")


# 2. One-time secrets a page shows once, when that page fails as it renders.


def test_a_new_access_token(failing_pages, monkeypatch, bob):
    seen = capture(monkeypatch, services, "issue_token", lambda result: result[1])
    client = web_as(bob)
    confirm_password(client, bob)
    response = client.post("/tokens/", {"name": "ci", "days": "30"}, follow=True)
    [raw] = seen
    assert_a_debug_page_without(response, raw, BOOM, "the new personal access token")


def test_a_new_invitation_link(failing_pages, monkeypatch, alice):
    seen = capture(monkeypatch, invitations, "create_invitation", lambda result: result[1])
    response = web_as(alice).post(
        "/teams/web/invitations/", {"email": "new@example.com", "role": "member"}, follow=True
    )
    [raw] = seen
    assert_a_debug_page_without(response, raw, BOOM, "the invitation link's token")


def test_new_recovery_codes(failing_pages, monkeypatch, bob):
    device, _ = enrolled(bob)
    seen = capture(monkeypatch, two_factor, "renew_recovery_codes", lambda codes: codes)
    client = web_as(bob)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session[SUDO_SESSION_KEY] = 2**40
    session.save()
    response = client.post("/account/two-factor/recovery-codes/", follow=True)
    [codes] = seen
    for code in codes:
        assert_a_debug_page_without(response, code, BOOM, "a new recovery code")


def test_the_authenticators_secret_on_the_enrolment_page(failing_pages, bob):
    response = web_as(bob).get("/account/two-factor/")
    device = TOTPDevice.objects.get(user=bob, confirmed=False)
    assert_a_debug_page_without(response, device.key, BOOM, "the authenticator's secret (hex)")
    typed = b32encode(device.bin_key).decode().rstrip("=")
    assert_a_debug_page_without(response, typed, BOOM, "the authenticator's secret (base32)")


def test_a_password_reset_link(failing_pages, staff, bob):
    client = web_as(staff)
    confirm_password(client, staff)
    assert client.post("/users/bob/reset-link/").status_code == 303  # shown by the GET it redirects to
    response = client.get("/users/bob/reset-link/")
    token = default_token_generator.make_token(bob)
    assert_a_debug_page_without(response, token, BOOM, "bob's password-reset token")


def test_a_devices_install_command_on_its_page(failing_pages, monkeypatch, bob, bob_assignment):
    seen = capture(monkeypatch, devices, "create_device", lambda result: result[1])
    response = web_as(bob).post(
        f"/setup/{bob_assignment.id}/devices/", {"name": "laptop", "platform": "linux"}, follow=True
    )
    [code] = seen
    assert_a_debug_page_without(response, code, BOOM, "the one-time install code")


def test_a_devices_install_code_made_through_the_api(settings, monkeypatch, bob, bob_assignment):
    settings.DEBUG = True
    seen = capture(monkeypatch, devices, "create_device", lambda result: result[1])
    fail_plainly(monkeypatch, devices, "install_command")
    response = api_as(bob).post(
        f"/api/v1/me/configs/{bob_assignment.id}/devices/", {"name": "laptop", "platform": "linux"}, format="json"
    )
    [code] = seen
    assert_a_debug_page_without(response, code, "forced failure in install_command", "the one-time install code")


# 3. Passwords inside URL-shaped settings and environment variables.


def test_passwords_inside_url_settings_and_the_environment_are_not_on_the_page(settings, bob, monkeypatch):
    smtp, redis, database = (f"pw-{secrets.token_hex(8)}" for _ in range(3))  # never in this file's source lines
    settings.DEBUG = True
    settings.EMAIL_URL = f"smtp://mailer:{smtp}@mail.example.com:587?tls=true"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "here"},
        "shown": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": f"redis://:{redis}@c:6379/0"},
    }
    fail_plainly(monkeypatch, gateways.views, "render")
    # runserver (make run) copies the process environment into request.META, which the page lists.
    response = web_as(bob).get("/setup/", DATABASE_URL=f"postgres://portal:{database}@db:5432/portal")
    body = response.content.decode()
    assert response.status_code == 500 and "forced failure in render" in body
    passwords = {"EMAIL_URL": smtp, "LOCATION": redis, "DATABASE_URL": database}
    assert [name for name, password in passwords.items() if password in body] == []
    assert "smtp://mailer:********************@mail.example.com" in body  # the rest of the address stays readable


@pytest.mark.parametrize(
    ("shape", "setting"),
    [
        ("smtp://mailer@example.com:{pw}@mail.example.com:587?tls=true", "EMAIL_URL"),  # the user is an address
        ("postgres://portal:pw@{pw}@db:5432/portal", "DATABASE_URL"),  # an @ in the password
    ],
)
def test_a_url_password_is_hidden_however_its_user_info_is_written(settings, bob, monkeypatch, shape, setting):
    password = secrets.token_hex(8)
    url = shape.format(pw=password)
    settings.DEBUG = True
    fail_plainly(monkeypatch, gateways.views, "render")
    extra = {"DATABASE_URL": url} if setting == "DATABASE_URL" else {}
    if setting == "EMAIL_URL":
        settings.EMAIL_URL = url
    response = web_as(bob).get("/setup/", **extra)
    body = response.content.decode()
    assert response.status_code == 500 and "forced failure in render" in body
    assert password not in body


# 4. The admin, and a refused code.


def test_the_admin_shows_no_authenticator_secret_and_no_recovery_code(admin_client, bob):
    device, codes = enrolled(bob)
    change = admin_client.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/").content.decode()
    assert device.key not in change
    config = admin_client.get(f"/admin/otp_totp/totpdevice/{device.pk}/config/").content.decode()
    assert b32encode(device.bin_key).decode().rstrip("=") not in config
    static = StaticDevice.objects.get(user=bob)
    body = admin_client.get(f"/admin/otp_static/staticdevice/{static.pk}/change/").content.decode()
    assert [code for code in codes if code in body] == []


def test_a_refused_recovery_code_is_not_written_back_into_the_page(bob):
    _, codes = enrolled(bob)
    client = Client()
    client.force_login(bob)  # the password step is done; the second factor is owed
    client.post("/account/two-factor/verify/", {"code": "wrongcode"})  # a typo: throttling starts
    page = client.post("/account/two-factor/verify/", {"code": codes[0]})
    body = page.content.decode()
    assert page.status_code == 200 and "not right" in body  # refused by the throttle, not for the code
    assert StaticToken.objects.filter(token=codes[0]).exists()  # so the code still works
    assert codes[0] not in body
    assert "no-store" in page["Cache-Control"]
