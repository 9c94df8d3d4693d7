"""The Django admin's groups and sign-in lock-outs: nothing a superuser changes there escapes the audit trail.

The portal decides who may do what with `is_staff`, `is_superuser` and team roles, never with Django's groups,
so the group admin is not offered (an account's groups and permissions, changed on its page, are audited as
`account.updated`). django-axes' records are looked at; deleting an access attempt lifts a lock-out, which is
audited as `account.unlocked` naming the user name tried and the address, never what was typed as password.
"""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.test import Client

from portal.models import Action, AuditEvent
from tests.admin_forms import form_data

pytestmark = pytest.mark.django_db

UNLOCKED = "account.unlocked"  # spelled out: the test names what an auditor filters on
GUESS = "Guessed-Secret-7731"
GUESSER = "203.0.113.7"


@pytest.fixture
def locked_settings(settings):
    settings.USE_X_FORWARDED_FOR = False
    settings.AXES_FAILURE_LIMIT = 3
    return settings


def sign_in(username: str, password: str, address: str = GUESSER):
    return Client().post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def lock_out(username: str, address: str = GUESSER) -> AccessAttempt:
    """Guess `username`'s password from `address` until django-axes locks them out there."""
    for _ in range(3):
        sign_in(username, GUESS, address)
    assert sign_in(username, f"pass-{username}", address).status_code == 429
    return AccessAttempt.objects.get(username=username, ip_address=address)


def unlocks() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=UNLOCKED).order_by("id"))


def assert_chain_intact(capsys) -> None:
    capsys.readouterr()
    call_command("verify_audit")
    assert "intact" in capsys.readouterr().out


# Groups


def test_the_group_admin_is_not_there_for_groups_the_portal_does_not_use(root_client):
    assert root_client.get("/admin/auth/group/").status_code == 404
    assert root_client.post("/admin/auth/group/add/", {"name": "Helpdesk"}).status_code == 404
    assert not Group.objects.exists()
    assert "/admin/auth/group/" not in root_client.get("/admin/").content.decode()


def test_a_group_is_neither_renamed_nor_deleted_in_the_admin(root_client):
    group = Group.objects.create(name="Helpdesk")
    assert root_client.post(f"/admin/auth/group/{group.pk}/change/", {"name": "Root"}).status_code == 404
    assert root_client.post(f"/admin/auth/group/{group.pk}/delete/", {"post": "yes"}).status_code == 404
    assert Group.objects.get(pk=group.pk).name == "Helpdesk"


def test_a_permission_granted_on_an_account_in_the_admin_is_audited(root_client, root, bob, capsys):
    permission = Permission.objects.get(codename="view_auditevent")
    url = f"/admin/auth/user/{bob.pk}/change/"
    data = form_data(root_client.get(url))
    data["user_permissions"] = [permission.pk]
    assert root_client.post(url, data).status_code == 302
    [event] = AuditEvent.objects.filter(action=Action.ACCOUNT_UPDATED)
    assert (event.actor, event.target) == (root, "bob")
    assert event.details["changed"] == {"user_permissions": {"from": [], "to": [str(permission)]}}
    assert_chain_intact(capsys)


# Lock-outs


def test_lifting_a_lock_out_in_the_admin_is_audited_with_the_user_and_address(
    root_client, root, alice, locked_settings, capsys
):
    attempt = lock_out("alice")
    response = root_client.post(f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not AccessAttempt.objects.exists()
    [event] = unlocks()
    assert (event.actor, event.target, event.ip_address) == (root, "alice", "127.0.0.1")
    failures = attempt.failures_since_start  # the three guesses, and the refused try with the right password
    assert event.details == {"via": "admin", "ip_address": GUESSER, "failed_sign_ins": failures, "locked_out": True}
    assert GUESS not in str(event.details) and GUESS not in event.target
    assert sign_in("alice", "pass-alice").status_code == 302  # unlocked for real
    assert_chain_intact(capsys)


def test_lifting_lock_outs_in_bulk_in_the_admin_audits_each(root_client, alice, bob, locked_settings):
    attempts = [lock_out("alice"), lock_out("bob", "198.51.100.9")]
    sign_in("carol", GUESS, "192.0.2.1")  # one failure: no lock-out yet, but its count starts again
    attempts.append(AccessAttempt.objects.get(username="carol"))
    response = root_client.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": [a.pk for a in attempts], "post": "yes"},
    )
    assert response.status_code == 302
    assert not AccessAttempt.objects.exists()
    assert sorted((e.target, e.details["ip_address"], e.details["locked_out"]) for e in unlocks()) == [
        ("alice", GUESSER, True),
        ("bob", "198.51.100.9", True),
        ("carol", "192.0.2.1", False),
    ]


def test_lock_out_records_are_only_looked_at_in_the_admin(root_client, alice, locked_settings):
    attempt = lock_out("alice")
    seen = {"username": "alice", "ip_address": GUESSER, "user_agent": "x", "http_accept": "*/*"}
    failure = AccessFailureLog.objects.create(**seen, locked_out=True)  # kept when AXES_ENABLE_ACCESS_FAILURE_LOG
    log = AccessLog.objects.create(**seen)
    refused = [
        root_client.post(f"/admin/axes/accessattempt/{attempt.pk}/change/", {"failures_since_start": "0"}),
        root_client.post(f"/admin/axes/accessfailurelog/{failure.pk}/delete/", {"post": "yes"}),
        root_client.post(f"/admin/axes/accesslog/{log.pk}/delete/", {"post": "yes"}),
    ]
    assert [r.status_code for r in refused] == [403] * 3
    for model in ("accessfailurelog", "accesslog"):
        listing = root_client.get(f"/admin/axes/{model}/")
        assert listing.status_code == 200 and "delete_selected" not in listing.content.decode()
    root_client.post(
        "/admin/axes/accessfailurelog/", {"action": "delete_selected", "_selected_action": [failure.pk], "post": "yes"}
    )
    assert AccessFailureLog.objects.filter(pk=failure.pk).exists() and AccessLog.objects.filter(pk=log.pk).exists()
    assert AccessAttempt.objects.get(pk=attempt.pk).failures_since_start == attempt.failures_since_start
    assert root_client.get(f"/admin/axes/accessattempt/{attempt.pk}/change/").status_code == 200  # to look at
    assert unlocks() == []


def test_every_lock_out_admin_is_look_only_or_deletes_through_the_audit(rf, root):
    """Each django-axes admin registered is look-only; only an access attempt is deleted, and that is audited."""
    from portal.admin import LockOutAdmin

    request = rf.get("/admin/")
    request.user = root
    axes_admins = {m: a for m, a in admin.site._registry.items() if m._meta.app_label == "axes"}
    assert set(axes_admins) == {AccessAttempt, AccessLog, AccessFailureLog}
    for model_admin in axes_admins.values():
        assert not model_admin.has_add_permission(request) and not model_admin.has_change_permission(request)
        assert not model_admin.has_delete_permission(request) or isinstance(model_admin, LockOutAdmin)
        assert set(model_admin.get_actions(request)) <= {"delete_selected"}


# django-axes' reset commands, replaced by the portal's of the same names


@pytest.mark.parametrize(
    "command,arguments",
    [
        ("axes_reset", []),
        ("axes_reset_username", ["alice"]),
        ("axes_reset_ip", [GUESSER]),
        ("axes_reset_ip_username", [GUESSER, "alice"]),
    ],
)
def test_lifting_a_lock_out_with_axes_reset_commands_is_audited(alice, locked_settings, capsys, command, arguments):
    lock_out("alice")
    capsys.readouterr()
    call_command(command, *arguments)
    assert capsys.readouterr().out.strip() == "1 attempts removed."
    [event] = unlocks()
    assert (event.actor_username, event.target) == ("", "alice")
    assert event.details == {
        "via": f"manage.py {command}",
        "ip_address": GUESSER,
        "failed_sign_ins": 4,  # three guesses, and the right password refused while locked
        "locked_out": True,
    }
    assert GUESS not in str(event.details)
    assert sign_in("alice", "pass-alice").status_code == 302  # unlocked for real
    assert_chain_intact(capsys)


def test_an_axes_reset_that_matches_nothing_lifts_nothing_and_records_nothing(alice, bob, locked_settings, capsys):
    lock_out("alice")
    call_command("axes_reset_username", "bob")
    assert "No attempts found." in capsys.readouterr().out
    assert unlocks() == []
    assert sign_in("alice", "pass-alice").status_code == 429  # still locked
