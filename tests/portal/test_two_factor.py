"""Two-factor authentication: enrolment from the account page, sign-in with a code, recovery codes, sudo mode,
and REQUIRE_2FA_FOR_ADMINS. Codes are computed here from the key the enrolment page shows, as an app would."""

from __future__ import annotations

import re
from base64 import b32decode
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from django_otp.oath import totp

from portal.models import AuditEvent
from portal.sudo import SUDO_SESSION_KEY

pytestmark = pytest.mark.django_db


def sign_in(client, username: str):
    response = client.post("/login/", {"username": username, "password": f"pass-{username}"})
    assert response.status_code == 302, response.content.decode()[:500]


def code_from(key: bytes) -> str:
    return f"{totp(key):06d}"


def enrol(client) -> tuple[bytes, list[str]]:
    """Enrol like a person: read the key off the page, type the app's code; returns the key and recovery codes."""
    page = client.get("/account/two-factor/").content.decode()
    assert 'src="data:image/svg+xml' in page  # the QR code, inline (the CSP allows data: images only)
    typed = re.search(r"data-totp-secret>([A-Z2-7 ]+)<", page).group(1).replace(" ", "")
    key = b32decode(typed + "=" * (-len(typed) % 8))
    done = client.post("/account/two-factor/", {"code": code_from(key)}, follow=True)
    assert done.status_code == 200
    codes = re.search(r"data-recovery-codes>([^<]+)<", done.content.decode()).group(1).split()
    return key, codes


def later(minutes: float = 1):
    """A new TOTP period: each code works once."""
    return time_machine.travel(timezone.now() + timedelta(minutes=minutes), tick=True)


def test_enrol_then_every_sign_in_asks_for_the_code(client, bob):
    sign_in(client, "bob")
    assert "Set up two-factor authentication" in client.get("/account/").content.decode()
    wrong = client.post("/account/two-factor/", {"code": "000000"})
    assert "That code is not right" in wrong.content.decode()
    with later(0.5):  # a wrong code slows the next try down (django-otp's throttling)
        key, codes = enrol(client)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert AuditEvent.objects.filter(action="account.2fa_enabled", target="bob").exists()
    assert "recovery codes left" in client.get("/account/").content.decode()

    client.post("/logout/")
    sign_in(client, "bob")
    held = client.get("/setup/")
    assert held.status_code == 302 and held["Location"] == "/account/two-factor/verify/?next=%2Fsetup%2F"
    api = client.get("/api/v1/me/configs/")
    assert api.status_code == 403 and "authenticator app" in api.json()["detail"]
    bad = client.post("/account/two-factor/verify/", {"code": "123456", "next": "/setup/"})
    assert bad.status_code == 200 and "That code is not right" in bad.content.decode()
    assert AuditEvent.objects.filter(action="auth.2fa_failed", actor_username="bob").count() == 1
    with later(2):
        ok = client.post("/account/two-factor/verify/", {"code": code_from(key), "next": "/setup/"})
        assert ok.status_code == 302 and ok["Location"] == "/setup/"
        assert client.get("/setup/").status_code == 200
        assert client.get("/api/v1/me/configs/").status_code == 200


def test_a_session_that_owes_its_code_cannot_replace_the_authenticator(client, bob):
    """Knowing the password is not enough: the enrol page would take it again and swap in a new app."""
    sign_in(client, "bob")
    enrol(client)
    client.post("/logout/")
    sign_in(client, "bob")  # only the password so far
    for response in (
        client.get("/account/two-factor/"),
        client.post("/account/two-factor/", {"sudo_password": "pass-bob", "code": "000000"}),
    ):
        assert response.status_code == 302
        assert response["Location"] == "/account/two-factor/verify/?next=%2Faccount%2Ftwo-factor%2F"
    device = bob.totpdevice_set.get()  # the one authenticator, confirmed, and no second one prepared
    assert device.confirmed
    assert client.get("/setup/")["Location"].startswith("/account/two-factor/verify/")


def test_a_recovery_code_signs_in_once(client, bob):
    sign_in(client, "bob")
    _, codes = enrol(client)
    for attempt in range(2):
        client.post("/logout/")
        sign_in(client, "bob")
        response = client.post("/account/two-factor/verify/", {"code": codes[0].upper(), "next": "/setup/"})
        if attempt == 0:
            assert response.status_code == 302
        else:
            assert response.status_code == 200  # used up
            assert client.get("/setup/").status_code == 302


def test_a_code_cannot_be_used_twice(client, bob):
    sign_in(client, "bob")
    key, _ = enrol(client)
    client.post("/logout/")
    sign_in(client, "bob")
    with later():
        code = code_from(key)
        assert client.post("/account/two-factor/verify/", {"code": code}).status_code == 302
        client.post("/logout/")
        sign_in(client, "bob")
        assert client.post("/account/two-factor/verify/", {"code": code}).status_code == 200


def test_sudo_mode_accepts_a_code_from_the_app(client, alice, tokaify_key):
    sign_in(client, "alice")
    key, _ = enrol(client)
    asked = client.get(f"/keys/{tokaify_key.id}/rotate/")
    assert asked.status_code == 302 and asked["Location"].startswith("/sudo/")
    wrong = client.post("/sudo/", {"password": "000000", "next": "/"})
    assert "not right" in wrong.content.decode() and SUDO_SESSION_KEY not in client.session
    with later():
        confirmed = client.post("/sudo/", {"password": code_from(key), "next": f"/keys/{tokaify_key.id}/rotate/"})
        assert confirmed.status_code == 302
        assert client.get(f"/keys/{tokaify_key.id}/rotate/").status_code == 200


def test_turning_it_off_needs_sudo_and_is_audited(client, bob):
    sign_in(client, "bob")
    enrol(client)
    asked = client.post("/account/two-factor/remove/", {"next": "/account/"})
    assert asked["Location"].startswith("/sudo/")
    client.post("/sudo/", {"password": "pass-bob", "next": "/account/"})
    client.post("/account/two-factor/remove/", {"next": "/account/"})
    assert AuditEvent.objects.filter(action="account.2fa_disabled", target="bob").exists()
    client.post("/logout/")
    sign_in(client, "bob")
    assert client.get("/setup/").status_code == 200  # no code asked any more


@pytest.mark.parametrize("who", ["alice", "staff"])
def test_require_2fa_for_admins_blocks_them_until_they_enrol(client, settings, api, who, alice, bob, staff):
    settings.REQUIRE_2FA_FOR_ADMINS = True
    sign_in(client, who)
    for path in ("/setup/", "/teams/", "/tokens/", "/account/", "/audit/"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/account/two-factor/?next=")
    blocked = client.get("/api/v1/teams/")
    assert blocked.status_code == 403 and "/account/two-factor/" in blocked.json()["detail"]
    # A script with an access token is not held back: the token is the credential.
    assert api({"alice": alice, "staff": staff}[who]).get("/api/v1/teams/").status_code == 200
    enrol_page = client.get("/account/two-factor/")
    assert "needs a second factor before anything else" in enrol_page.content.decode()
    enrol(client)
    assert client.get("/teams/").status_code == 200
    assert client.get("/api/v1/teams/").status_code == 200


def test_require_2fa_for_admins_leaves_members_alone(client, settings, bob):
    settings.REQUIRE_2FA_FOR_ADMINS = True
    sign_in(client, "bob")
    assert client.get("/setup/").status_code == 200
    assert client.get("/api/v1/me/configs/").status_code == 200
