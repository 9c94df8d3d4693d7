"""Lock-out after failed sign-ins is per user name and client, even when every client comes through one proxy."""

from __future__ import annotations

import pytest

from portal.models import AuditEvent

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.1"


def sign_in(client, password: str, client_address: str):
    return client.post(
        "/login/",
        {"username": "alice", "password": password},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=client_address,
    )


def test_a_guesser_behind_the_proxy_does_not_lock_alice_out_of_her_own_desk(client, alice, settings):
    settings.USE_X_FORWARDED_FOR = True
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        sign_in(client, "guess", "203.0.113.7")
    assert sign_in(client, "pass-alice", "203.0.113.7").status_code == 429  # the guesser is locked out

    response = sign_in(client, "pass-alice", "198.51.100.9")  # alice, through the same proxy
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="auth.sign_in", actor_username="alice").exists()


def test_without_a_trusted_proxy_the_lock_follows_the_connecting_address(client, alice, settings):
    settings.USE_X_FORWARDED_FOR = False
    settings.AXES_FAILURE_LIMIT = 3
    for spoofed in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        sign_in(client, "guess", spoofed)  # a header nobody trusts cannot spread the guesses
    assert sign_in(client, "pass-alice", "203.0.113.4").status_code == 429
