"""An admin giving a key to themselves: its own audit event, a flag on the pages, a mail to the other admins."""

from __future__ import annotations

import socket

import pytest

from gateways.models import Assignment
from portal.models import AuditEvent, Membership, Role
from tests.conftest import TOKAIFY_SECRET, make_user

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
    client, alice, erin, bob, tokaify_key, mailoutbox, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/keys/{tokaify_key.id}/assign/", {"username": "alice"})
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="assignment.self_assigned")
    assert event.actor_username == "alice" and event.details["user"] == "alice"
    assert event.details["masked"] == tokaify_key.masked
    assert not AuditEvent.objects.filter(action="assignment.created").exists()

    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["erin@example.com"]  # not alice herself, not bob the member
    assert "alice" in mail.subject and "Alice laptop" in mail.subject
    assert tokaify_key.masked in mail.body and tokaify_key.short_fingerprint in mail.body
    assert "http://testserver/teams/web/" in mail.body
    assert_no_secret(mail.subject + mail.body)


def test_the_team_and_key_pages_flag_a_self_assignment(client, alice, erin, bob, tokaify_key):
    client.force_login(alice)
    client.post(f"/keys/{tokaify_key.id}/assign/", {"username": "alice"})
    client.post(f"/keys/{tokaify_key.id}/assign/", {"username": "bob"})
    client.force_login(erin)
    team_page = client.get("/teams/web/").content.decode()
    assert team_page.count(">self-assigned</span>") == 1
    assert 'alice <span class="badge warn"' in " ".join(team_page.split())
    assert client.get(f"/keys/{tokaify_key.id}/").content.decode().count(">self-assigned</span>") == 1


def test_assigning_someone_else_is_neither_flagged_nor_mailed(
    client, alice, erin, bob, tokaify_key, mailoutbox, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/keys/{tokaify_key.id}/assign/", {"username": "bob"})
    assert AuditEvent.objects.filter(action="assignment.created").count() == 1
    assert not AuditEvent.objects.filter(action="assignment.self_assigned").exists()
    assert mailoutbox == []
    assert "self-assigned" not in client.get("/teams/web/").content.decode()


def test_staff_assigning_themselves_over_the_api_tells_the_teams_admins(
    api, staff, alice, erin, tokaify_key, mailoutbox, django_capture_on_commit_callbacks
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
    assert sorted(mailoutbox[0].to) == ["alice@example.com", "erin@example.com"]
    assert_no_secret(mailoutbox[0].subject + mailoutbox[0].body)


def test_a_sole_admin_assigning_themselves_is_told_to_staff(
    client, alice, staff, tokaify_key, mailoutbox, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/keys/{tokaify_key.id}/assign/", {"username": "alice"})
    assert [m.to for m in mailoutbox] == [["staff@example.com"]]


def test_a_mail_server_that_is_down_leaves_the_assignment_and_its_audit_in_place(
    client, alice, erin, tokaify_key, settings, caplog, django_capture_on_commit_callbacks
):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", closed_port
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/keys/{tokaify_key.id}/assign/", {"username": "alice"})
    assert response.status_code == 302
    assert Assignment.objects.get(key=tokaify_key, user=alice).is_self_assigned
    assert AuditEvent.objects.filter(action="assignment.self_assigned").exists()
    assert "could not be sent" in caplog.text
