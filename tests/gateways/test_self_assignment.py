"""An admin giving a key to themselves: its own audit event, a flag on the pages, a mail to the other admins.

The mail is queued like every alert (alerts.delivery): `deliver_due()` is the portal's timer sending it.
"""

from __future__ import annotations

import socket

import pytest

from alerts.delivery import deliver_due
from alerts.models import Delivery, DeliveryStatus
from gateways.models import Assignment
from portal.models import AuditEvent, Membership, Role
from tests.conftest import TOKAIFY_SECRET, make_user
from tests.smtp_server import body

pytestmark = pytest.mark.django_db


@pytest.fixture
def erin(web):
    """A second admin of "web", who should hear of alice's self-assignment."""
    user = make_user("erin")
    Membership.objects.create(team=web, user=user, role=Role.ADMIN)
    return user


def assert_no_secret(text: str) -> None:
    assert TOKAIFY_SECRET not in text
    for start in range(len(TOKAIFY_SECRET) - 8):  # no run of 8+ of its characters either
        chunk = TOKAIFY_SECRET[start : start + 8]
        if chunk not in "sk-tokaify-alice":  # the label-like prefix is public
            assert chunk not in text, chunk


def test_an_admin_assigning_a_key_to_themselves_is_audited_and_mailed_to_the_other_admins(
    client, alice, erin, bob, tokaify_key, smtp, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/keys/{tokaify_key.id}/assign/", {"username": "alice"})
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="assignment.self_assigned")
    assert event.actor_username == "alice" and event.details["user"] == "alice"
    assert event.details["masked"] == tokaify_key.masked
    assert not AuditEvent.objects.filter(action="assignment.created").exists()

    deliver_due()
    [mail] = smtp.messages
    assert mail["To"] == "erin@example.com"  # not alice herself, not bob the member
    assert "alice" in mail["Subject"] and "Alice laptop" in mail["Subject"]
    assert tokaify_key.masked in body(mail) and tokaify_key.short_fingerprint in body(mail)
    assert "http://testserver/teams/web/" in body(mail)
    assert_no_secret(mail["Subject"] + body(mail))


def test_the_team_and_key_pages_flag_a_self_assignment(client, alice, erin, bob, tokaify_key):
    client.force_login(alice)
    client.post(f"/keys/{tokaify_key.id}/assign/", {"username": "alice"})
    client.post(f"/keys/{tokaify_key.id}/assign/", {"username": "bob"})
    client.force_login(erin)
    team_page = client.get("/teams/web/").content.decode()
    assert team_page.count(">self-assigned</span>") == 1
    assert '<bdi>alice</bdi> <span class="badge warn"' in " ".join(team_page.split())
    assert client.get(f"/keys/{tokaify_key.id}/").content.decode().count(">self-assigned</span>") == 1


def test_assigning_someone_else_is_neither_flagged_nor_mailed(
    client, alice, erin, bob, tokaify_key, smtp, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/keys/{tokaify_key.id}/assign/", {"username": "bob"})
    assert AuditEvent.objects.filter(action="assignment.created").count() == 1
    assert not AuditEvent.objects.filter(action="assignment.self_assigned").exists()
    deliver_due()
    assert smtp.messages == []
    assert "self-assigned" not in client.get("/teams/web/").content.decode()


def test_staff_assigning_themselves_over_the_api_tells_the_teams_admins(
    api, staff, alice, erin, tokaify_key, smtp, django_capture_on_commit_callbacks
):
    client = api(staff)
    assert (
        client.post("/api/v1/teams/web/members/", {"username": "staff", "role": "admin"}, format="json").status_code
        == 201
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/v1/keys/{tokaify_key.id}/assignments/", {"username": "staff"}, format="json")
    assert response.status_code == 201 and response.json()["self_assigned"] is True
    assert AuditEvent.objects.get(action="assignment.self_assigned").actor_username == "staff"
    deliver_due()
    assert sorted(m["To"] for m in smtp.messages) == ["alice@example.com", "erin@example.com"]
    for mail in smtp.messages:
        assert_no_secret(mail["Subject"] + body(mail))


def test_a_sole_admin_assigning_themselves_is_told_to_staff(
    client, alice, staff, tokaify_key, smtp, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/keys/{tokaify_key.id}/assign/", {"username": "alice"})
    deliver_due()
    assert [m["To"] for m in smtp.messages] == ["staff@example.com"]


def test_a_mail_server_that_is_down_leaves_the_assignment_and_its_audit_in_place(
    client, alice, erin, tokaify_key, settings, django_capture_on_commit_callbacks
):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", closed_port
    settings.EMAIL_CONFIGURED = True
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/keys/{tokaify_key.id}/assign/", {"username": "alice"})
    assert response.status_code == 302
    assert Assignment.objects.get(key=tokaify_key, user=alice).is_self_assigned
    assert AuditEvent.objects.filter(action="assignment.self_assigned").exists()
    deliver_due()
    notice = Delivery.objects.get(user=erin)  # kept, and retried: the Deliveries page says why it waits
    assert notice.status == DeliveryStatus.PENDING and notice.attempts == 1 and notice.last_error
