"""What one SSO answer may grant: only what its own start asked for (sudo mode, an invitation), and never a
second provider account's way into a linked account or a team left without an admin.

The fast tests drive the portal's real start and callback views; the provider's side is played by signing ID
tokens with a key the test holds (tests/portal/sso_answers.py). The browser tests at the end use the real
provider of tests/portal/test_sso.py.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import RequestFactory
from playwright.sync_api import expect

from portal import oidc
from portal.invitations import INVITATION_SESSION_KEY, create_invitation
from portal.models import Action, AuditEvent, ExternalIdentity, Invitation, Membership, Role
from tests.portal.sso_answers import deliver, signed_in, sso_sign_in, start
from tests.portal.test_sso import browser, sign_in_at_provider, sso, team_key, web_with_groups  # noqa: F401

# 1. Sudo mode: only the answer to the start that asked for it, and only from a fresh sign-in at the provider.


@pytest.fixture
def alice_by_sso(client, provider, alice):
    response = sso_sign_in(client, provider, sub="alice-sub", email="alice@example.com")
    assert response.status_code == 302 and signed_in(client) == "alice"
    return alice


@pytest.mark.django_db
def test_only_a_sudo_start_asks_the_provider_for_a_fresh_sign_in(client, alice_by_sso):
    plain = parse_qs(urlsplit(start(client)).query)
    assert "prompt" not in plain and "max_age" not in plain
    sudo = parse_qs(urlsplit(start(client, sudo="1")).query)
    assert (sudo["prompt"], sudo["max_age"]) == (["login"], ["0"])


@pytest.mark.django_db
def test_a_plain_answer_delivered_after_a_sudo_start_does_not_open_sudo_mode(
    client, provider, alice_by_sso, tokenbay_key
):
    plain = start(client)
    earlier_answer = provider.answer(plain, sub="alice-sub", email="alice@example.com")
    start(client, sudo="1", next=f"/keys/{tokenbay_key.id}/rotate/")  # abandoned at the provider's password page
    deliver(client, plain, earlier_answer)
    assert signed_in(client) == "alice"
    rotate = client.get(f"/keys/{tokenbay_key.id}/rotate/")
    assert rotate.status_code == 302 and rotate["Location"].startswith("/sudo/")


@pytest.mark.django_db
def test_the_answer_to_a_sudo_start_opens_sudo_mode(client, provider, alice_by_sso, tokenbay_key):
    rotate_page = f"/keys/{tokenbay_key.id}/rotate/"
    url = start(client, sudo="1", next=rotate_page)
    response = deliver(client, url, provider.answer(url, sub="alice-sub", email="alice@example.com"))
    assert response["Location"] == rotate_page
    assert client.get(rotate_page).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("auth_time", "says"),
    [(None, "its ID token has no auth_time"), (-300, "answered with an earlier sign-in")],
    ids=["no-auth-time", "earlier-sign-in"],
)
def test_a_sudo_answer_without_a_fresh_sign_in_at_the_provider_does_not_open_sudo_mode(
    client, provider, alice_by_sso, tokenbay_key, auth_time, says
):
    rotate_page = f"/keys/{tokenbay_key.id}/rotate/"
    url = start(client, sudo="1", next=rotate_page)
    when = None if auth_time is None else int(time.time()) + auth_time
    deliver(client, url, provider.answer(url, sub="alice-sub", email="alice@example.com", auth_time=when))
    assert signed_in(client) == "alice"
    rotate = client.get(rotate_page)
    assert rotate.status_code == 302 and rotate["Location"].startswith("/sudo/")
    assert says in client.get(rotate["Location"]).content.decode()


@pytest.mark.django_db
def test_a_sudo_answer_for_another_provider_account_does_not_open_sudo_mode(client, provider, alice_by_sso, bob):
    url = start(client, sudo="1", next="/teams/")
    response = deliver(client, url, provider.answer(url, sub="bob-sub", email="bob@example.com"))
    assert signed_in(client) == "bob"
    assert (
        "as someone else than the account that asked" in client.get(response["Location"], follow=True).content.decode()
    )
    assert "sudo_until" not in client.session


def test_sudo_refusal_allows_a_little_clock_skew_only():
    asked = oidc.SignInStart(started_at=1000.0, sudo_for=7)
    for auth_time, confirmed in [(1000, True), (1000 - oidc.AUTH_TIME_SKEW_SECONDS, True), (900, False)]:
        asked.auth_time = auth_time
        assert (oidc.sudo_refusal(asked, 7) is None) == confirmed
    asked.auth_time = "1000"  # not a number: the provider's claim is not understood
    assert oidc.sudo_refusal(asked, 7) is not None
    asked.auth_time = 1000
    assert "someone else" in oidc.sudo_refusal(asked, 8)


# 2. A second provider account with a linked account's address does not get into it.


@pytest.mark.django_db
def test_a_second_provider_account_with_a_linked_accounts_address_is_refused_and_recorded(client, provider, bob):
    assert sso_sign_in(client, provider, sub="bob-sub", email="bob@example.com").status_code == 302
    client.logout()
    response = sso_sign_in(client, provider, sub="someone-else", email="bob@example.com")
    assert response.status_code == 403
    assert "already signs in with another account at the identity provider" in response.content.decode()
    assert "Ask staff" in response.content.decode()
    assert signed_in(client) is None
    assert list(ExternalIdentity.objects.filter(user=bob).values_list("subject", flat=True)) == ["bob-sub"]
    refused = AuditEvent.objects.filter(action=Action.SIGN_IN_FAILED).get()
    assert refused.target == "bob"
    assert refused.details["via"] == "sso" and "another account at the identity provider" in refused.details["reason"]


@pytest.mark.django_db
def test_an_account_linked_at_another_issuer_only_is_still_found_by_address(client, provider, bob):
    ExternalIdentity.objects.create(user=bob, issuer="https://old-idp.example.com", subject="bob-old")
    assert sso_sign_in(client, provider, sub="bob-sub", email="bob@example.com").status_code == 302
    assert signed_in(client) == "bob"


# 3. An invitation joins only through the sign-in its own accept page started.


@pytest.fixture
def opened_invitation(client, charlie, data_team):
    """charlie's invitation to data for some address, opened in this browser (a cross-site GET can do that)."""
    invitation, raw = create_invitation(team=data_team, email="someone@example.com", role=Role.MEMBER, actor=charlie)
    assert client.get(f"/invitations/{raw}/").status_code == 302
    assert client.session[INVITATION_SESSION_KEY] == raw
    return invitation


def accept_page_sso_link(client) -> dict[str, str]:
    """The query of the accept page's "Sign in with SSO" link, as this browser's session gets it."""
    request = RequestFactory().get("/invitations/accept/")
    request.session = client.session
    url = oidc.invitation_sign_in_url(request, next_url="/teams/data/")
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.mark.django_db
def test_an_opened_invitation_is_not_accepted_by_a_plain_sso_sign_in(client, provider, bob, opened_invitation):
    assert sso_sign_in(client, provider, sub="bob-sub", email="bob@example.com").status_code == 302
    assert signed_in(client) == "bob"
    assert not Membership.objects.filter(team__slug="data", user=bob).exists()
    opened_invitation.refresh_from_db()
    assert opened_invitation.state == "pending"
    assert not AuditEvent.objects.filter(action=Action.INVITATION_ACCEPTED).exists()


@pytest.mark.django_db
def test_a_start_with_a_forged_invitation_proof_joins_nothing(client, provider, bob, opened_invitation):
    query = accept_page_sso_link(client)
    query["invitation"] = oidc._invitation_proof("the-attackers-own-session", client.session[INVITATION_SESSION_KEY])
    assert sso_sign_in(client, provider, sub="bob-sub", email="bob@example.com", **query).status_code == 302
    assert signed_in(client) == "bob"
    assert not Membership.objects.filter(team__slug="data", user=bob).exists()


@pytest.mark.django_db
def test_the_accept_pages_sso_link_joins_the_opened_invitation(client, provider, bob, opened_invitation):
    response = sso_sign_in(client, provider, sub="bob-sub", email="bob@example.com", **accept_page_sso_link(client))
    assert response["Location"] == "/teams/data/"
    assert signed_in(client) == "bob"
    assert Membership.objects.get(team__slug="data", user=bob).role == Role.MEMBER
    opened_invitation.refresh_from_db()
    assert opened_invitation.state == "accepted" and opened_invitation.accepted_by == bob
    assert INVITATION_SESSION_KEY not in client.session


@pytest.mark.django_db
def test_no_account_is_made_for_an_invitation_merely_opened(client, provider, opened_invitation):
    response = sso_sign_in(client, provider, sub="newcomer-sub", email="newcomer@example.com")
    assert response.status_code == 403
    assert "no invitation for it" in response.content.decode()
    assert signed_in(client) is None
    assert not get_user_model().objects.filter(email="newcomer@example.com").exists()
    assert Invitation.objects.get(pk=opened_invitation.pk).state == "pending"


# 4. The groups claim never leaves a team without an admin.


@pytest.fixture
def web_by_groups(web, alice):
    web.sso_member_group, web.sso_admin_group = "eng", "eng-leads"
    web.save()
    Membership.objects.filter(user=alice).update(via_sso=True)
    return web


@pytest.mark.django_db
@pytest.mark.parametrize(("groups", "would"), [(["sales"], "remove"), (["eng"], "demote")])
def test_group_sync_keeps_the_last_admin_and_says_so(client, provider, web_by_groups, alice, caplog, groups, would):
    url = start(client)
    with caplog.at_level(logging.WARNING, logger="portal.oidc"):
        deliver(client, url, provider.answer(url, sub="alice-sub", email="alice@example.com", groups=groups))
    assert signed_in(client) == "alice"
    assert Membership.objects.get(team=web_by_groups, user=alice).role == Role.ADMIN
    assert not AuditEvent.objects.filter(action=Action.MEMBER_REMOVED).exists()
    kept = AuditEvent.objects.get(action=Action.MEMBER_ROLE_CHANGED, target="alice")
    assert (kept.details["from"], kept.details["to"]) == (Role.ADMIN, Role.ADMIN)
    assert kept.details["groups_wanted"] == ("none" if would == "remove" else Role.MEMBER)
    assert "last admin" in kept.details["kept"]
    assert f"would {would} the last admin of team web" in caplog.text


@pytest.mark.django_db
def test_group_sync_removes_an_admin_while_another_remains(client, provider, web_by_groups, alice, bob):
    Membership.objects.filter(user=bob).update(role=Role.ADMIN)
    url = start(client)
    deliver(client, url, provider.answer(url, sub="alice-sub", email="alice@example.com", groups=["sales"]))
    assert not Membership.objects.filter(team=web_by_groups, user=alice).exists()
    assert AuditEvent.objects.get(action=Action.MEMBER_REMOVED).target == "alice"


# The same, through the real provider in a browser.


def _held_answer(page) -> str:
    page.wait_for_load_state()
    if page.get_by_role("button", name="Continue").count():
        page.get_by_role("button", name="Continue").click()
        page.wait_for_load_state()
    return page.locator("#callback").get_attribute("href")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_held_plain_answer_opened_after_a_sudo_start_does_not_open_sudo_mode_in_a_browser(
    browser,  # noqa: F811
    live_server,
    sso,  # noqa: F811
    web_with_groups,  # noqa: F811
):
    with sso(HOLD_CALLBACK="1") as idp:
        idp.set_claims("carol", groups=["eng-leads"])
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(15000)
        sign_in_at_provider(page, live_server)
        page.locator("#callback").click()
        page.wait_for_url("**/dashboard/")
        carol = get_user_model().objects.get(email="carol@example.com")
        key = team_key(web_with_groups, carol)
        page.goto(f"{live_server.url}/oidc/authenticate/")  # the provider's live session answers at once
        plain_answer = _held_answer(page)
        page.goto(f"{live_server.url}/oidc/authenticate/?sudo=1")  # abandoned at the provider's password page
        expect(page.locator("input[name=login]")).to_be_visible()
        page.goto(plain_answer)
        page.goto(f"{live_server.url}/keys/{key.id}/rotate/")
        page.wait_for_url("**/sudo/?next=*")  # still asked to confirm
        expect(page.get_by_role("link", name="carol")).to_be_visible()  # signed in as carol all along
        context.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_second_provider_account_with_carols_address_is_refused_in_a_browser(
    browser,  # noqa: F811
    live_server,
    sso,  # noqa: F811
    web_with_groups,  # noqa: F811
):
    with sso() as idp:
        idp.set_claims("mallory", email="carol@example.com", email_verified=True, groups=["eng"])
        context = browser.new_context()
        page = context.new_page()
        sign_in_at_provider(page, live_server)  # carol: her account is made and linked
        page.wait_for_url("**/setup/")
        context.close()
        context = browser.new_context()
        page = context.new_page()
        sign_in_at_provider(page, live_server, login="mallory")
        expect(page.get_by_role("alert")).to_contain_text("already signs in with another account")
        context.close()
    carol = get_user_model().objects.get(email="carol@example.com")
    assert list(ExternalIdentity.objects.filter(user=carol).values_list("subject", flat=True)) == ["carol"]
    refused = AuditEvent.objects.get(action=Action.SIGN_IN_FAILED)
    assert refused.target == "carol" and refused.details["via"] == "sso"
