"""What a superuser changes in the Django admin (/admin/) is in the audit trail, like the same change on the portal.

Accounts (added, changed, a password set), authenticators removed and key settings changed each write their
audit row in the same transaction as the change; accounts are offboarded on the portal, never deleted here.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from gateways import services as key_services
from gateways.models import GatewayKey
from portal.models import AccessToken, Action, AuditEvent, Membership, Role
from portal.services import issue_token
from tests.admin_forms import form_data
from tests.conftest import TOKAIFY_SECRET, TOKENBAY_SECRET, make_user

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "A-new-long-password-91"


def new_events() -> list[AuditEvent]:
    """The trail, oldest first, but for the sign-in rows of the test client's force_login."""
    return list(AuditEvent.objects.exclude(action=Action.SIGN_IN).order_by("id"))


def assert_chain_intact(capsys) -> None:
    capsys.readouterr()
    call_command("verify_audit")
    assert "intact" in capsys.readouterr().out


def enrol(user) -> TOTPDevice:
    """An authenticator and its recovery codes, as confirm_enrolment leaves them."""
    device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    static = StaticDevice.objects.create(user=user, name="Recovery codes", confirmed=True)
    StaticToken.objects.create(device=static, token="abcd1234")
    return device


# Accounts


def test_a_password_set_in_the_admin_is_audited_without_the_hash(root_client, root, bob, capsys):
    before = bob.password
    response = root_client.post(
        f"/admin/auth/user/{bob.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )
    assert response.status_code == 302
    bob.refresh_from_db()
    assert bob.check_password(NEW_PASSWORD)
    [event] = new_events()
    assert (event.action, event.actor_username, event.actor, event.target) == (
        Action.PASSWORD_CHANGED,
        "root",
        root,
        "bob",
    )
    assert event.details == {"via": "admin", "password_sign_in": True}
    assert event.ip_address == "127.0.0.1"
    assert before not in str(event.details) and bob.password not in str(event.details)
    assert_chain_intact(capsys)


def test_turning_password_sign_in_off_in_the_admin_is_audited(root_client, bob):
    response = root_client.post(
        f"/admin/auth/user/{bob.pk}/password/", {"usable_password": "false", "unset-password": "1"}
    )
    assert response.status_code == 302
    bob.refresh_from_db()
    assert not bob.has_usable_password()
    [event] = new_events()
    assert (event.action, event.target, event.details) == (
        Action.PASSWORD_CHANGED,
        "bob",
        {"via": "admin", "password_sign_in": False},
    )


def test_a_refused_password_in_the_admin_writes_no_row(root_client, bob):
    response = root_client.post(
        f"/admin/auth/user/{bob.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD + "x", "usable_password": "true"},
    )
    assert response.status_code == 200  # the form again, with the error
    bob.refresh_from_db()
    assert bob.check_password("pass-bob")
    assert new_events() == []


def test_granting_staff_and_superuser_in_the_admin_is_audited_with_what_changed(root_client, root, bob, capsys):
    url = f"/admin/auth/user/{bob.pk}/change/"
    data = form_data(root_client.get(url))
    data.update(is_staff="on", is_superuser="on", email="bob@corp.example")
    response = root_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    bob.refresh_from_db()
    assert bob.is_staff and bob.is_superuser
    [event] = new_events()
    assert (event.action, event.actor, event.target) == (Action.ACCOUNT_UPDATED, root, "bob")
    assert event.details == {
        "via": "admin",
        "changed": {
            "email": {"from": "bob@example.com", "to": "bob@corp.example"},
            "is_staff": {"from": False, "to": True},
            "is_superuser": {"from": False, "to": True},
        },
    }
    assert_chain_intact(capsys)


def test_deactivating_and_regrouping_in_the_admin_is_audited(root_client, bob):
    from django.contrib.auth.models import Group

    group = Group.objects.create(name="Helpdesk")
    url = f"/admin/auth/user/{bob.pk}/change/"
    data = form_data(root_client.get(url))
    data.pop("is_active")
    data["groups"] = [group.pk]
    assert root_client.post(url, data).status_code == 302
    [event] = new_events()
    assert event.details["changed"] == {
        "is_active": {"from": True, "to": False},
        "groups": {"from": [], "to": ["Helpdesk"]},
    }


def test_saving_an_account_unchanged_in_the_admin_writes_no_row(root_client, bob):
    url = f"/admin/auth/user/{bob.pk}/change/"
    assert root_client.post(url, form_data(root_client.get(url))).status_code == 302
    assert new_events() == []


def test_a_rename_to_another_accounts_name_but_for_case_is_refused_in_the_admin(root_client, bob, dave):
    """BOB beside bob would look alike on the team pages and in "Assign to"; the add form refuses it already."""
    url = f"/admin/auth/user/{dave.pk}/change/"
    page = root_client.post(url, {**form_data(root_client.get(url)), "username": "BOB"})
    assert page.status_code == 200
    assert "An account is called BOB already, but for case" in page.content.decode()
    dave.refresh_from_db()
    assert dave.username == "dave" and new_events() == []
    # A change of the account's own case is a rename like any other.
    page = root_client.post(url, {**form_data(root_client.get(url)), "username": "Dave"})
    assert page.status_code == 302
    dave.refresh_from_db()
    assert dave.username == "Dave"


def test_renaming_an_account_in_the_admin_tells_each_of_its_teams_in_their_own_trail(
    root_client, root, api, bob, dave, charlie, data_team, capsys
):
    """The rename's account.updated row belongs to no team; each team's auditors read their own trail, where the
    member's earlier rows keep the old name, so each team gets a member.renamed row linking the two names."""
    Membership.objects.create(team=data_team, user=bob, role=Role.AUDITOR)
    url = f"/admin/auth/user/{bob.pk}/change/"
    assert root_client.post(url, {**form_data(root_client.get(url)), "username": "robert"}).status_code == 302
    [account, *renamed] = new_events()
    assert (account.action, account.team_slug, account.target) == (Action.ACCOUNT_UPDATED, "", "robert")
    assert account.details["changed"] == {"username": {"from": "bob", "to": "robert"}}
    assert [(e.action, e.team_slug, e.actor, e.target, e.details) for e in renamed] == [
        (
            Action.MEMBER_RENAMED,
            slug,
            root,
            "robert",
            {"via": "account.updated", "role": role, "from": "bob", "to": "robert"},
        )
        for slug, role in (("data", "auditor"), ("web", "member"))
    ]
    # Each team's auditor finds it in their team's trail, and only their team's.
    rows = api(dave).get("/api/v1/audit-events/", {"team": "web", "action": "member.renamed"}).json()["results"]
    assert [(r["target"], r["details"]["from"], r["details"]["to"]) for r in rows] == [("robert", "bob", "robert")]
    rows = api(charlie).get("/api/v1/audit-events/", {"action": "member.renamed"}).json()["results"]
    assert [r["team"] for r in rows] == ["data"]
    assert_chain_intact(capsys)


def test_an_account_changed_but_not_renamed_in_the_admin_writes_no_team_row(root_client, bob):
    url = f"/admin/auth/user/{bob.pk}/change/"
    assert root_client.post(url, {**form_data(root_client.get(url)), "first_name": "Bobby"}).status_code == 302
    assert [e.action for e in new_events()] == [Action.ACCOUNT_UPDATED]


def test_an_address_another_account_has_is_refused_in_the_admin(root_client, bob, dave):
    """A reset for bob@ would mail dave's link to bob's mailbox, and SSO refuses an address two accounts share."""
    url = f"/admin/auth/user/{dave.pk}/change/"
    page = root_client.post(url, {**form_data(root_client.get(url)), "email": "BOB@example.com"})
    assert page.status_code == 200
    assert "Another account has the address BOB@example.com" in page.content.decode()
    dave.refresh_from_db()
    assert dave.email == "dave@example.com" and new_events() == []
    # The account's own address, saved again, is no clash.
    assert root_client.post(url, {**form_data(root_client.get(url)), "email": "Dave@example.com"}).status_code == 302


def test_an_account_added_in_the_admin_is_audited(root_client, root, capsys):
    response = root_client.post(
        "/admin/auth/user/add/",
        {"username": "mallory", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )
    assert response.status_code == 302
    mallory = get_user_model().objects.get(username="mallory")
    [event] = new_events()
    assert (event.action, event.actor, event.target, event.details) == (
        Action.ACCOUNT_CREATED,
        root,
        "mallory",
        {"via": "admin"},
    )
    assert mallory.password not in str(event.details)
    assert_chain_intact(capsys)


def test_an_account_is_not_deleted_in_the_admin_which_points_to_offboarding(root_client, bob, capsys):
    """Deleting would orphan who-did-what; offboarding deactivates and takes back, audited."""
    from portal import audit

    audit.record(Action.SIGN_OUT, actor=bob)
    response = root_client.post(f"/admin/auth/user/{bob.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert "delete_selected" not in root_client.get("/admin/auth/user/").content.decode()
    root_client.post("/admin/auth/user/", {"action": "delete_selected", "_selected_action": [bob.pk], "post": "yes"})
    assert get_user_model().objects.filter(pk=bob.pk).exists()
    page = root_client.get(f"/admin/auth/user/{bob.pk}/change/").content.decode()
    assert 'href="/users/bob/offboard/"' in page and 'href="/users/"' in page
    assert f"/admin/auth/user/{bob.pk}/delete/" not in page
    assert [e.action for e in new_events()] == [Action.SIGN_OUT]
    assert_chain_intact(capsys)


def test_the_offboarding_the_admin_points_to_is_there_for_staff(root_client, bob):
    assert root_client.get("/users/bob/offboard/").status_code == 200
    assert b"/users/bob/offboard/" in root_client.get("/users/").content


# Authenticators


def test_removing_an_authenticator_in_the_admin_is_audited_and_takes_its_recovery_codes(root_client, root, bob, capsys):
    device = enrol(bob)
    response = root_client.post(f"/admin/otp_totp/totpdevice/{device.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=bob).exists()
    assert not StaticDevice.objects.filter(user=bob).exists()  # as Remove on the account page does
    [event] = new_events()
    assert (event.action, event.actor, event.target) == (Action.TWO_FACTOR_DISABLED, root, "bob")
    assert_chain_intact(capsys)


def test_removing_authenticators_in_bulk_in_the_admin_audits_each(root_client, bob, alice):
    devices = [enrol(bob), enrol(alice)]
    response = root_client.post(
        "/admin/otp_totp/totpdevice/",
        {"action": "delete_selected", "_selected_action": [d.pk for d in devices], "post": "yes"},
    )
    assert response.status_code == 302
    assert not TOTPDevice.objects.exists()
    assert sorted((e.action, e.target) for e in new_events()) == [
        (Action.TWO_FACTOR_DISABLED, "alice"),
        (Action.TWO_FACTOR_DISABLED, "bob"),
    ]


def test_removing_an_unfinished_enrolment_in_the_admin_leaves_the_second_factor_and_is_audited(root_client, bob):
    confirmed = enrol(bob)
    pending = TOTPDevice.objects.create(user=bob, name="new phone", confirmed=False)
    assert root_client.post(f"/admin/otp_totp/totpdevice/{pending.pk}/delete/", {"post": "yes"}).status_code == 302
    assert list(TOTPDevice.objects.filter(user=bob)) == [confirmed]
    assert StaticDevice.objects.filter(user=bob).exists()
    [event] = new_events()
    assert (event.action, event.target, event.details) == (
        Action.ACCOUNT_UPDATED,
        "bob",
        {"via": "admin", "removed": "an unconfirmed authenticator (an enrolment never finished)"},
    )


def test_authenticators_and_recovery_codes_are_neither_added_nor_changed_in_the_admin(root_client, bob):
    device = enrol(bob)
    static = StaticDevice.objects.get(user=bob)
    refused = [
        root_client.post("/admin/otp_totp/totpdevice/add/", {"user": bob.pk, "name": "mine", "key": "00" * 20}),
        root_client.post(f"/admin/otp_totp/totpdevice/{device.pk}/change/", {"user": bob.pk, "confirmed": ""}),
        root_client.post("/admin/otp_static/staticdevice/add/", {"user": bob.pk, "name": "mine"}),
        root_client.post(f"/admin/otp_static/staticdevice/{static.pk}/change/", {"user": bob.pk, "name": "x"}),
        root_client.post(f"/admin/otp_static/staticdevice/{static.pk}/delete/", {"post": "yes"}),
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert TOTPDevice.objects.get(pk=device.pk).confirmed
    assert StaticToken.objects.filter(device__user=bob).count() == 1
    assert root_client.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/").status_code == 200  # to look at
    assert new_events() == []


def test_every_second_factor_admin_writes_its_changes_to_the_trail(rf, root):
    """Any django-otp device admin registered (each plugin brings one) is look-only, or deletes through the audit."""
    from portal.admin import AuditedTOTPDeviceAdmin

    request = rf.get("/admin/")
    request.user = root
    device_admins = {m: a for m, a in admin.site._registry.items() if issubclass(m, Device)}
    assert set(device_admins) == {TOTPDevice, StaticDevice}
    for model_admin in device_admins.values():
        assert not model_admin.has_add_permission(request) and not model_admin.has_change_permission(request)
        assert not model_admin.has_delete_permission(request) or isinstance(model_admin, AuditedTOTPDeviceAdmin)


# Access tokens


def test_renaming_an_access_token_in_the_admin_is_audited_with_its_old_and_new_name(root_client, root, bob, capsys):
    """The trail names a token by its lookup id and the name it was issued with: a new name is recorded."""
    token, _raw = issue_token(user=bob, name="deploy", actor=bob)
    url = f"/admin/portal/accesstoken/{token.pk}/change/"
    assert root_client.post(url, {**form_data(root_client.get(url)), "name": "harmless"}).status_code == 302
    assert AccessToken.objects.get(pk=token.pk).name == "harmless"
    [issued, renamed] = new_events()
    assert (issued.action, renamed.action) == (Action.TOKEN_ISSUED, Action.TOKEN_UPDATED)
    assert (renamed.actor, renamed.target, renamed.team_slug) == (root, token.lookup_id, "")
    assert renamed.details == {"via": "admin", "user": "bob", "changed": {"name": {"from": "deploy", "to": "harmless"}}}
    assert_chain_intact(capsys)


def test_a_token_renamed_and_revoked_in_one_save_is_renamed_first_then_revoked_under_its_new_name(root_client, bob):
    """Staff rename deploy to harmless and enter a Revoked date in one save: the trail reads renamed deploy to
    harmless, then revoked harmless, never a revocation of "harmless" before any row gives the token that name."""
    token, _raw = issue_token(user=bob, name="deploy", actor=bob)
    url = f"/admin/portal/accesstoken/{token.pk}/change/"
    data = {**form_data(root_client.get(url)), "revoked_at_0": "2026-01-01", "revoked_at_1": "00:00:00"}
    assert root_client.post(url, {**data, "name": "harmless"}).status_code == 302
    assert AccessToken.objects.get(pk=token.pk).revoked_at is not None
    [issued, renamed, revoked] = new_events()
    assert [e.action for e in (issued, renamed, revoked)] == [
        Action.TOKEN_ISSUED,
        Action.TOKEN_UPDATED,
        Action.TOKEN_REVOKED,
    ]
    assert renamed.details["changed"] == {"name": {"from": "deploy", "to": "harmless"}}
    assert revoked.details == {"user": "bob", "name": "harmless"}
    assert revoked.target == renamed.target == token.lookup_id


def test_saving_an_access_token_unchanged_in_the_admin_writes_no_row(root_client, bob):
    token, _raw = issue_token(user=bob, name="deploy", actor=bob)
    url = f"/admin/portal/accesstoken/{token.pk}/change/"
    assert root_client.post(url, form_data(root_client.get(url))).status_code == 302
    assert [e.action for e in new_events()] == [Action.TOKEN_ISSUED]


# Keys


def test_a_key_label_changed_in_the_admin_goes_through_the_audited_service(root_client, root, tokaify_key, capsys):
    url = f"/admin/gateways/gatewaykey/{tokaify_key.pk}/change/"
    page = root_client.get(url)
    assert TOKAIFY_SECRET not in page.content.decode()
    assert "secret_ciphertext" not in page.context["adminform"].form.fields
    data = form_data(page)
    data.update(label="Renamed in admin", timeout_ms="120000")
    before = len(new_events())
    response = root_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    key = GatewayKey.objects.get(pk=tokaify_key.pk)
    assert (key.label, key.timeout_ms) == ("Renamed in admin", 120000)
    assert key.config_changed_at > tokaify_key.config_changed_at  # earlier downloads are stale, as on the key's page
    [event] = new_events()[before:]
    assert (event.action, event.actor, event.team_slug, event.gateway_slug) == (
        Action.KEY_UPDATED,
        root,
        "web",
        "tokaify",
    )
    assert event.details["changed"] == {
        "label": {"from": "Alice laptop", "to": "Renamed in admin"},
        "timeout_ms": {"from": None, "to": 120000},
    }
    assert TOKAIFY_SECRET not in str(event.details)
    assert_chain_intact(capsys)


def test_a_key_label_another_key_of_the_team_has_is_refused_in_the_admin(root_client, tokaify_key, tokenbay_key):
    url = f"/admin/gateways/gatewaykey/{tokaify_key.pk}/change/"
    data = form_data(root_client.get(url))
    data["label"] = tokenbay_key.label
    before = AuditEvent.objects.count()
    response = root_client.post(url, data)
    assert response.status_code == 200  # the form again, with the service's sentence
    assert "already has a key labelled" in response.content.decode().replace("&#x27;", "'")
    assert GatewayKey.objects.get(pk=tokaify_key.pk).label == "Alice laptop"
    assert AuditEvent.objects.count() == before


def test_a_revoked_key_is_only_looked_at_in_the_admin(root_client, alice, tokaify_key):
    key_services.revoke_key(key=tokaify_key, actor=alice)
    url = f"/admin/gateways/gatewaykey/{tokaify_key.pk}/change/"
    page = root_client.get(url)
    assert page.status_code == 200
    before = AuditEvent.objects.count()
    assert root_client.post(url, {"label": "Back from the dead"}).status_code == 403
    assert GatewayKey.objects.get(pk=tokaify_key.pk).label == "Alice laptop"
    assert AuditEvent.objects.count() == before


def test_the_key_admin_shows_no_secret(root_client, tokenbay_key):
    listing = root_client.get("/admin/gateways/gatewaykey/").content.decode()
    page = root_client.get(f"/admin/gateways/gatewaykey/{tokenbay_key.pk}/change/").content.decode()
    ciphertext = GatewayKey.objects.get(pk=tokenbay_key.pk).secret_ciphertext
    for body in (listing, page):
        assert TOKENBAY_SECRET not in body and ciphertext not in body
        assert tokenbay_key.masked in body


def test_a_staff_user_who_is_no_superuser_changes_no_account_in_the_admin(client, bob):
    helper = make_user("helper", staff=True)
    client.force_login(helper)
    assert client.post(f"/admin/auth/user/{bob.pk}/password/", {"usable_password": "false"}).status_code == 403
    assert new_events() == []
