"""A password reset link mailed before an account was deactivated does not work after it."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model

from portal.mail import wait_for_mails_after_response
from portal.models import AuditEvent
from tests.smtp_server import link_in

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the mail goes in a thread
NEW = "a-new-long-password-9"
INVALID = "This reset link does not work"


def mailed_reset_link(client, smtp, address: str) -> str:
    assert client.post("/password_reset/", {"email": address}).status_code == 302
    wait_for_mails_after_response()
    [message] = smtp.to(address)
    return urlsplit(link_in(message)).path


def use(client, link: str):
    """Open the link as a browser does (it moves the token to the session), then send the new password."""
    page = client.get(link, follow=True)
    target = page.redirect_chain[-1][0] if page.redirect_chain else link
    return page, client.post(target, {"new_password1": NEW, "new_password2": NEW})


def test_a_reset_link_mailed_before_offboarding_does_not_set_the_password_after(client, staff, bob, smtp):
    link = mailed_reset_link(client, smtp, "bob@example.com")
    staff_browser = client.__class__()
    staff_browser.force_login(staff)
    assert staff_browser.post("/users/bob/offboard/").status_code == 302
    before = AuditEvent.objects.order_by("-id").first().id

    page, answer = use(client, link)
    assert INVALID in page.content.decode() and not page.context["validlink"]
    assert answer.status_code == 200 and INVALID in answer.content.decode()
    bob.refresh_from_db()
    assert not bob.is_active and bob.check_password("pass-bob"), "the offboarded account's password was set"
    assert not AuditEvent.objects.filter(id__gt=before, action="account.password_changed").exists()


def test_a_reset_link_of_an_account_deactivated_in_the_admin_does_not_work(client, bob, smtp):
    link = mailed_reset_link(client, smtp, "bob@example.com")
    get_user_model().objects.filter(pk=bob.pk).update(is_active=False)

    page, answer = use(client, link)
    assert INVALID in page.content.decode() and INVALID in answer.content.decode()
    bob.refresh_from_db()
    assert bob.check_password("pass-bob")


def test_the_same_link_still_works_for_an_active_account(client, bob, smtp):
    link = mailed_reset_link(client, smtp, "bob@example.com")
    page, answer = use(client, link)
    assert page.context["validlink"] and answer.status_code == 302
    bob.refresh_from_db()
    assert bob.check_password(NEW)
