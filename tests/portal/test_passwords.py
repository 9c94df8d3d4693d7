"""Password change and reset (Django's views in the portal's look), mail through a real SMTP server, and OIDC_ONLY."""

from __future__ import annotations

import time
from unittest import mock
from urllib.parse import urlsplit

import pytest

from portal.mail import wait_for_mails_after_response
from portal.models import AuditEvent, UnconfirmedEmail
from portal.services import issue_token
from portal.sudo import SUDO_SESSION_KEY
from tests.smtp_server import link_in
from tests.test_limits_run_out import reset_link

pytestmark = pytest.mark.django_db
NEW = "brand-new-password-77"


def test_password_change_page_changes_it(client, bob):
    client.force_login(bob)
    page = client.get("/password_change/")
    assert page.status_code == 200
    assert "Change your password" in page.content.decode()
    response = client.post(
        "/password_change/", {"old_password": "pass-bob", "new_password1": NEW, "new_password2": NEW}
    )
    assert response.status_code == 302 and response["Location"] == "/password_change/done/"
    bob.refresh_from_db()
    assert bob.check_password(NEW)
    assert AuditEvent.objects.filter(action="account.password_changed", actor_username="bob").exists()


def test_a_wrong_old_password_changes_nothing(client, bob):
    client.force_login(bob)
    response = client.post("/password_change/", {"old_password": "nope", "new_password1": NEW, "new_password2": NEW})
    assert response.status_code == 200
    assert "incorrectly" in response.content.decode()
    bob.refresh_from_db()
    assert bob.check_password("pass-bob")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the reset mail goes in a thread of its own
def test_password_reset_by_mail_end_to_end(client, bob, smtp):
    page = client.get("/password_reset/").content.decode()
    assert "Type your account" in page
    response = client.post("/password_reset/", {"email": "bob@example.com"})
    assert response.status_code == 302 and response["Location"] == "/password_reset/done/"
    wait_for_mails_after_response()
    [message] = smtp.to("bob@example.com")
    link = link_in(message)
    assert "/reset/" in link and "bob" in message.get_body().get_content()

    form_page = client.get(urlsplit(link).path, follow=True)
    assert "Choose a new password" in form_page.content.decode() and form_page.context["validlink"]
    done = client.post(form_page.redirect_chain[-1][0], {"new_password1": NEW, "new_password2": NEW})
    assert done.status_code == 302 and done["Location"] == "/reset/done/"
    bob.refresh_from_db()
    assert bob.check_password(NEW)
    assert AuditEvent.objects.filter(action="account.password_changed", details__via="reset link").exists()

    reused = client.get(urlsplit(link).path, follow=True)
    assert "This reset link does not work" in reused.content.decode()
    signed_in = client.post("/login/", {"username": "bob", "password": NEW})
    assert signed_in.status_code == 302 and client.session["_auth_user_id"] == str(bob.pk)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the reset mail goes in a thread of its own
def test_an_unknown_address_gets_the_same_answer_and_no_mail(client, smtp):
    response = client.post("/password_reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302 and response["Location"] == "/password_reset/done/"
    wait_for_mails_after_response()
    assert smtp.messages == []


def test_without_mail_the_reset_page_sends_people_to_staff_who_make_a_link(client, bob, staff, settings):
    settings.EMAIL_CONFIGURED = False
    page = client.get("/password_reset/").content.decode()
    assert "cannot send mail" in page and "<form" not in page.split("<main")[1]

    client.force_login(staff)
    # Making a reset link opens the account, so it asks for the password first (sudo mode).
    asked = client.post("/users/bob/reset-link/", {"next": "/users/"})
    assert asked.status_code == 302 and asked["Location"].startswith("/sudo/")
    session = client.session
    session[SUDO_SESSION_KEY] = time.time() + 600
    session.save()
    made = client.post("/users/bob/reset-link/", {"next": "/users/"})
    assert made.status_code == 303 and made["Location"] == "/users/bob/reset-link/"
    page = client.get(made["Location"])
    assert page.status_code == 200
    link = page.content.decode().split("data-reset-link>")[1].split("<")[0]
    assert (
        AuditEvent.objects.filter(action="account.reset_link_made", target="bob", actor_username="staff").count() == 1
    )
    # Shown once: a reload (or Back) makes no second link and shows none.
    again = client.get("/users/bob/reset-link/", follow=True)
    assert link not in again.content.decode() and "A reset link is shown once" in again.content.decode()
    assert AuditEvent.objects.filter(action="account.reset_link_made").count() == 1

    client.logout()
    form_page = client.get(urlsplit(link).path, follow=True)
    client.post(form_page.redirect_chain[-1][0], {"new_password1": NEW, "new_password2": NEW})
    bob.refresh_from_db()
    assert bob.check_password(NEW)


def test_only_staff_make_reset_links(client, alice):
    client.force_login(alice)
    assert client.post("/users/bob/reset-link/").status_code == 403


def test_oidc_only_hides_passwords_except_for_staff(client, bob, staff, settings):
    settings.OIDC_ISSUER = "https://idp.example.com"
    settings.OIDC_ONLY = True
    page = client.get("/login/").content.decode()
    assert "Sign in with SSO" in page and "Staff: sign in with a password" in page
    refused = client.post("/login/", {"username": "bob", "password": "pass-bob"})
    assert refused.status_code == 200
    assert "password sign-in is for staff only" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    allowed = client.post("/login/", {"username": "staff", "password": "pass-staff"})
    assert allowed.status_code == 302


def test_the_sign_in_page_offers_sso_only_when_configured(client, settings):
    assert "Sign in with SSO" not in client.get("/login/").content.decode()
    assert client.get("/oidc/authenticate/").status_code == 404
    settings.OIDC_ISSUER = "https://idp.example.com"
    assert "Sign in with SSO" in client.get("/login/").content.decode()


# --- A process that dies half-way through a password change leaves nothing half done ---------------------------


class ProcessDied(BaseException):
    """Stands in for a worker killed (OOM, a container stop) at that point: nothing after it runs.

    What is committed when it is raised is what a kill there leaves; all or nothing is the old password (the
    link still works, the person tries again) or the whole change.
    """


def test_a_reset_cut_short_after_the_password_is_saved_leaves_the_old_password_and_the_link(bob, client):
    UnconfirmedEmail.objects.create(user=bob, email=bob.email)  # an account made from an invitation link
    token, _ = issue_token(user=bob, name="made by whoever held the invitation link")
    opened = client.get(reset_link(bob), follow=True)
    form_url = opened.redirect_chain[-1][0]
    with (
        mock.patch("portal.account_views.audit.record", side_effect=ProcessDied),
        pytest.raises(ProcessDied),
    ):
        client.post(form_url, {"new_password1": NEW, "new_password2": NEW})
    bob.refresh_from_db()
    token.refresh_from_db()
    assert bob.check_password("pass-bob")
    assert token.revoked_at is None and UnconfirmedEmail.objects.filter(user=bob).exists()

    done = client.post(form_url, {"new_password1": NEW, "new_password2": NEW})  # the same link, again
    assert done.status_code == 302 and done["Location"] == "/reset/done/"
    bob.refresh_from_db()
    token.refresh_from_db()
    assert bob.check_password(NEW) and token.revoked_at is not None
    assert not UnconfirmedEmail.objects.filter(user=bob).exists()
    assert AuditEvent.objects.filter(action="account.password_changed", actor=bob).count() == 1


def test_a_password_change_cut_short_before_its_audit_row_keeps_the_old_password(client, bob):
    client.force_login(bob)
    with (
        mock.patch("portal.account_views.audit.record", side_effect=ProcessDied),
        pytest.raises(ProcessDied),
    ):
        client.post("/password_change/", {"old_password": "pass-bob", "new_password1": NEW, "new_password2": NEW})
    bob.refresh_from_db()
    assert bob.check_password("pass-bob")
    assert not AuditEvent.objects.filter(action="account.password_changed").exists()
