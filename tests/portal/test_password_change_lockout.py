"""The old password at /password_change/ is checked like a sign-in: counted by the lock-out, refused while
locked, and each wrong one audited, so a signed-in browser cannot guess it without limit."""

from __future__ import annotations

import pytest

from portal.models import AuditEvent

pytestmark = pytest.mark.django_db

NEW = {"new_password1": "Zq9!new-pass-xx", "new_password2": "Zq9!new-pass-xx"}


def sign_in(client, username: str) -> None:
    assert client.post("/login/", {"username": username, "password": f"pass-{username}"}).status_code == 302


def test_guessing_the_old_password_locks_the_account_out_like_signing_in(client, alice, settings):
    settings.AXES_FAILURE_LIMIT = 3
    sign_in(client, "alice")
    for i in range(settings.AXES_FAILURE_LIMIT):
        client.post("/password_change/", {"old_password": f"guess-{i}", **NEW})
    right = client.post("/password_change/", {"old_password": "pass-alice", **NEW})
    assert right.status_code == 429
    assert "Too many failed sign-ins" in right.content.decode()
    alice.refresh_from_db()
    assert alice.check_password("pass-alice")
    assert client.post("/sudo/", {"password": "pass-alice"}).status_code == 429  # the same lock


def test_a_lock_at_the_sudo_prompt_also_holds_at_the_password_change_page(client, alice, settings):
    settings.AXES_FAILURE_LIMIT = 3
    sign_in(client, "alice")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/sudo/", {"password": "guess"})
    assert client.post("/sudo/", {"password": "pass-alice"}).status_code == 429
    response = client.post("/password_change/", {"old_password": "pass-alice", **NEW})
    assert response.status_code == 429
    alice.refresh_from_db()
    assert alice.check_password("pass-alice")


def test_a_wrong_old_password_is_audited_as_a_failed_sign_in(client, alice):
    sign_in(client, "alice")
    response = client.post("/password_change/", {"old_password": "guess", **NEW})
    assert response.status_code == 200
    assert "Your old password was entered incorrectly" in response.content.decode()
    assert AuditEvent.objects.filter(action="auth.sign_in_failed", target="alice").count() == 1


def test_the_right_old_password_below_the_limit_still_changes_it(client, alice, settings):
    settings.AXES_FAILURE_LIMIT = 3
    sign_in(client, "alice")
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post("/password_change/", {"old_password": f"guess-{i}", **NEW})
    response = client.post("/password_change/", {"old_password": "pass-alice", **NEW})
    assert response.status_code == 302 and response["Location"] == "/password_change/done/"
    alice.refresh_from_db()
    assert alice.check_password(NEW["new_password1"])
    assert client.get("/account/").status_code == 200  # still signed in
