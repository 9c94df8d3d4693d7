"""Two people acting on the same thing, one from a page opened before the other's change.

Each test replays it in order with two browsers (the test client): the page is read as a browser posts
it back, hidden fields included, so what the later save does is what a person pressing the button gets.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from gateways import offboarding
from gateways.models import GatewayKey
from portal import services as portal_services
from portal.models import Action, AuditEvent, Membership, Role, Team
from tests.admin_forms import form_data as admin_form_data
from tests.conftest import make_user
from tests.page_forms import form_on

pytestmark = pytest.mark.django_db


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def said(response) -> str:
    """The messages a redirected page shows, as one text."""
    return " ".join(str(message) for message in response.context["messages"])


@pytest.fixture
def erin(web):
    """A second admin of web."""
    user = make_user("erin")
    Membership.objects.create(team=web, user=user, role=Role.ADMIN)
    return user


# An access token in the admin


def test_a_token_revoked_meanwhile_stays_revoked_when_staff_save_its_admin_page(root, alice):
    token, raw = portal_services.issue_token(user=alice, name="laptop", actor=alice)
    staff_tab = browser(root)
    url = f"/admin/portal/accesstoken/{token.pk}/change/"
    shown = admin_form_data(staff_tab.get(url))
    assert browser(alice).post(f"/tokens/{token.pk}/revoke/").status_code == 302

    shown["name"] = "alice laptop (old)"
    assert staff_tab.post(url, shown).status_code == 302

    token.refresh_from_db()
    assert token.revoked_at is not None and token.name == "alice laptop (old)"
    answer = APIClient().get("/api/v1/me/configs/", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert answer.status_code == 401


def test_a_revoked_tokens_admin_page_shows_its_revocation_without_a_field_to_undo_it(root, alice):
    token, _ = portal_services.issue_token(user=alice, name="laptop", actor=alice)
    portal_services.revoke_token(token=token, actor=alice)
    page = browser(root).get(f"/admin/portal/accesstoken/{token.pk}/change/")
    assert "revoked_at" not in page.context["adminform"].form.fields
    assert 'name="revoked_at_0"' not in page.content.decode()


# A key's Disable button


def test_two_admins_pressing_disable_on_a_key_leave_it_disabled(alice, erin, tokenbay_key):
    key_page, toggle = f"/keys/{tokenbay_key.id}/", f"/keys/{tokenbay_key.id}/toggle/"
    alice_tab, erin_tab = browser(alice), browser(erin)
    alice_form, erin_form = form_on(alice_tab.get(key_page), toggle), form_on(erin_tab.get(key_page), toggle)

    assert "Key disabled." in said(alice_tab.post(toggle, alice_form, follow=True))
    second = erin_tab.post(toggle, erin_form, follow=True)

    assert not GatewayKey.objects.get(pk=tokenbay_key.pk).is_enabled
    assert "already disabled" in said(second)
    toggles = AuditEvent.objects.filter(action__in=[Action.KEY_ENABLED, Action.KEY_DISABLED])
    assert list(toggles.values_list("action", "actor_username")) == [(Action.KEY_DISABLED, "alice")]


def test_the_enable_button_of_a_disabled_key_enables_it(alice, tokenbay_key):
    GatewayKey.objects.filter(pk=tokenbay_key.pk).update(is_enabled=False)
    tab = browser(alice)
    page = tab.get(f"/keys/{tokenbay_key.id}/")
    assert b">Enable<" in page.content
    answer = tab.post(
        f"/keys/{tokenbay_key.id}/toggle/", form_on(page, f"/keys/{tokenbay_key.id}/toggle/"), follow=True
    )
    assert "Key enabled." in said(answer)
    assert GatewayKey.objects.get(pk=tokenbay_key.pk).is_enabled


@pytest.mark.parametrize("posted", [{}, {"enabled": "maybe"}])
def test_a_toggle_post_not_saying_enable_or_disable_is_refused_with_a_sentence(alice, tokenbay_key, posted):
    answer = browser(alice).post(f"/keys/{tokenbay_key.id}/toggle/", posted, follow=True)
    assert answer.status_code == 200
    assert "does not say whether to enable or disable the key" in said(answer)
    assert GatewayKey.objects.get(pk=tokenbay_key.pk).is_enabled
    assert not AuditEvent.objects.filter(action__in=[Action.KEY_ENABLED, Action.KEY_DISABLED]).exists()


# A team's SSO groups


def test_a_team_groups_form_opened_before_another_admins_save_keeps_that_save(alice, erin, web):
    groups = "/teams/web/sso-groups/"
    alice_tab, erin_tab = browser(alice), browser(erin)
    alice_form, erin_form = form_on(alice_tab.get("/teams/web/"), groups), form_on(erin_tab.get("/teams/web/"), groups)

    erin_form["sso_admin_group"] = "web-admins"
    assert erin_tab.post(groups, erin_form).status_code == 302
    alice_form["sso_member_group"] = "web-devs"
    assert "SSO groups saved" in said(alice_tab.post(groups, alice_form, follow=True))

    team = Team.objects.get(pk=web.pk)
    assert (team.sso_member_group, team.sso_admin_group) == ("web-devs", "web-admins")
    alices = AuditEvent.objects.get(action=Action.TEAM_UPDATED, actor_username="alice")
    assert alices.details == {"sso_member_group": {"from": "", "to": "web-devs"}}


def test_a_group_emptied_on_the_team_page_is_cleared(alice, web):
    Team.objects.filter(pk=web.pk).update(sso_member_group="web-devs", sso_admin_group="web-admins")
    tab = browser(alice)
    form = form_on(tab.get("/teams/web/"), "/teams/web/sso-groups/")
    form["sso_member_group"] = ""
    assert tab.post("/teams/web/sso-groups/", form).status_code == 302
    team = Team.objects.get(pk=web.pk)
    assert (team.sso_member_group, team.sso_admin_group) == ("", "web-admins")


def test_a_groups_post_naming_one_group_leaves_the_other(alice, web):
    """A script posting without the page's hidden fields changes the groups it sends, no other."""
    Team.objects.filter(pk=web.pk).update(sso_admin_group="web-admins")
    assert browser(alice).post("/teams/web/sso-groups/", {"sso_member_group": "web-devs"}).status_code == 302
    team = Team.objects.get(pk=web.pk)
    assert (team.sso_member_group, team.sso_admin_group) == ("web-devs", "web-admins")


# An account in the admin


def test_an_account_offboarded_meanwhile_is_not_reactivated_by_an_admin_page_opened_before(root, alice, bob):
    staff_tab = browser(root)
    url = f"/admin/auth/user/{bob.pk}/change/"
    page = staff_tab.get(url)
    assert 'name="opened_as"' in page.content.decode()  # what a browser posts back, not only this test
    shown = admin_form_data(page)
    offboarding.offboard(offboarding.for_account(bob), actor=alice)

    shown["email"] = "bob@new.example.com"
    answer = staff_tab.post(url, shown)

    assert answer.status_code == 200
    assert "changed since this page was opened (Active)" in answer.content.decode()
    bob.refresh_from_db()
    assert not bob.is_active and bob.email == "bob@example.com"
    assert not AuditEvent.objects.filter(action=Action.ACCOUNT_UPDATED, target="bob").exists()


def test_an_account_page_opened_after_offboarding_saves_and_leaves_it_deactivated(root, alice, bob):
    offboarding.offboard(offboarding.for_account(bob), actor=alice)
    staff_tab = browser(root)
    url = f"/admin/auth/user/{bob.pk}/change/"
    shown = admin_form_data(staff_tab.get(url))
    shown["email"] = "bob@new.example.com"
    assert staff_tab.post(url, shown).status_code == 302
    bob.refresh_from_db()
    assert not bob.is_active and bob.email == "bob@new.example.com"
    event = AuditEvent.objects.get(action=Action.ACCOUNT_UPDATED, target="bob")
    assert event.details["changed"] == {"email": {"from": "bob@example.com", "to": "bob@new.example.com"}}


def test_a_sign_in_meanwhile_neither_blocks_an_admin_save_nor_is_put_back_by_it(root, bob):
    staff_tab = browser(root)
    url = f"/admin/auth/user/{bob.pk}/change/"
    shown = admin_form_data(staff_tab.get(url))
    assert Client().post("/login/", {"username": "bob", "password": "pass-bob"}).status_code == 302
    signed_in_at = get_user_model().objects.get(pk=bob.pk).last_login
    assert signed_in_at is not None

    shown["first_name"] = "Bob"
    assert staff_tab.post(url, shown).status_code == 302
    bob.refresh_from_db()
    assert bob.first_name == "Bob" and bob.last_login == signed_in_at


@pytest.mark.parametrize("opened_as", ["", "not json", "[1, 2]"])
def test_an_account_form_not_saying_what_it_showed_is_refused_with_a_sentence(root, bob, opened_as):
    staff_tab = browser(root)
    url = f"/admin/auth/user/{bob.pk}/change/"
    shown = {**admin_form_data(staff_tab.get(url)), "opened_as": opened_as, "email": "bob@new.example.com"}
    answer = staff_tab.post(url, shown)
    assert answer.status_code == 200
    assert "does not say what the account looked like when it was shown" in answer.content.decode()
    assert get_user_model().objects.get(pk=bob.pk).email == "bob@example.com"


# --- A key's settings: the page's form and the admin's ------------------------------------------------------


def test_a_key_settings_form_opened_before_another_admins_save_keeps_that_save(alice, erin, tokenbay_key):
    page, url = f"/keys/{tokenbay_key.id}/", f"/keys/{tokenbay_key.id}/settings/"
    alice_tab, erin_tab = browser(alice), browser(erin)
    alices_form = form_on(alice_tab.get(page), url)
    erins_form = form_on(erin_tab.get(page), url)
    erins_form["timeout_ms"] = "600000"
    erin_tab.post(url, erins_form)

    alices_form["label"] = "Bob desktop"
    assert "Key settings saved" in said(alice_tab.post(url, alices_form, follow=True))
    key = GatewayKey.objects.get(pk=tokenbay_key.pk)
    assert (key.label, key.timeout_ms) == ("Bob desktop", 600000)
    event = AuditEvent.objects.filter(action=Action.KEY_UPDATED, actor_username="alice").get()
    assert set(event.details["changed"]) == {"label"}, event.details


def test_a_key_settings_form_saved_unchanged_saves_nothing(alice, tokenbay_key):
    page, url = f"/keys/{tokenbay_key.id}/", f"/keys/{tokenbay_key.id}/settings/"
    tab = browser(alice)
    answer = tab.post(url, form_on(tab.get(page), url), follow=True)
    assert "Nothing was changed" in said(answer)
    assert not AuditEvent.objects.filter(action=Action.KEY_UPDATED).exists()


def test_a_key_admin_page_opened_before_a_team_admins_save_keeps_that_save(root, alice, tokenbay_key):
    staff_tab = browser(root)
    url = f"/admin/gateways/gatewaykey/{tokenbay_key.pk}/change/"
    staffs_form = admin_form_data(staff_tab.get(url))
    api = APIClient()
    api.force_authenticate(alice)
    assert api.patch(f"/api/v1/keys/{tokenbay_key.id}/", {"timeout_ms": 600000}, format="json").status_code == 200

    staffs_form["label"] = "Bob desktop"
    assert staff_tab.post(url, staffs_form).status_code == 302
    key = GatewayKey.objects.get(pk=tokenbay_key.pk)
    assert (key.label, key.timeout_ms) == ("Bob desktop", 600000)
