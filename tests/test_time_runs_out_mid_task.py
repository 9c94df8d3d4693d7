"""A time limit that runs out in the middle of a task: sudo mode, a pending action, an invitation, a session."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory
from django.utils import timezone

from config.views import csrf_failure
from gateways.models import GatewayKey, KeyState
from portal.models import Membership
from portal.sudo import PENDING_SECONDS, SUDO_SESSION_KEY
from tests.conftest import confirm_password
from tests.portal.conftest import provider  # noqa: F401 (fixture)
from tests.portal.sso_answers import deliver, signed_in

pytestmark = pytest.mark.django_db

NEW_SECRET = "sk-tok-rotated-0000111122223333"


def main_of(html: str) -> str:
    return html[html.index("<main") : html.index("</main>")]


def next_of(location: str) -> str:
    return parse_qs(urlsplit(location).query).get("next", [""])[0]


def csrf_of(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


# --- 1. Rotate pressed after sudo mode ran out ----------------------------------------------------------------------


def test_rotate_pressed_after_sudo_ran_out_says_the_secret_was_not_saved_and_returns_to_the_rotate_form(
    client, alice, tokaify_key, settings, time_machine
):
    client.force_login(alice)
    confirm_password(client, alice)
    rotate_url = f"/keys/{tokaify_key.id}/rotate/"
    assert client.get(rotate_url).status_code == 200
    time_machine.move_to(timezone.now() + timedelta(seconds=settings.SUDO_MODE_SECONDS + 5))
    pressed = client.post(rotate_url, {"secret": NEW_SECRET}, follow=True)
    prompt = main_of(pressed.content.decode())
    assert "Confirm your password" in prompt
    assert "The secret you typed was not saved" in prompt and "paste it again" in prompt
    assert NEW_SECRET not in pressed.content.decode()
    assert GatewayKey.objects.get(pk=tokaify_key.pk).masked == tokaify_key.masked
    done = client.post("/sudo/", {"password": "pass-alice", "next": next_of(pressed.redirect_chain[-1][0])})
    assert done.status_code == 302 and done["Location"] == rotate_url
    assert 'name="secret"' in client.get(rotate_url).content.decode()


def test_revoke_after_sudo_ran_out_still_completes_with_the_password_alone(client, alice, tokaify_key, settings):
    """The forms that carry their fields through the prompt (no typed secret) keep doing so."""
    client.force_login(alice)
    key_url = f"/keys/{tokaify_key.id}/"
    asked = client.post(f"/keys/{tokaify_key.id}/revoke/", {"next": key_url}, follow=True)
    html = asked.content.decode()
    assert 'name="sudo_password"' in html and f'value="{key_url}"' in html
    client.post(f"/keys/{tokaify_key.id}/revoke/", {"next": key_url, "sudo_password": "pass-alice"})
    assert GatewayKey.objects.get(pk=tokaify_key.pk).state == KeyState.REVOKED


# --- 2. An SSO confirmation back after the pending action expired -----------------------------------------------


def _stale_prompt(client, alice, tokaify_key, time_machine) -> str:
    client.force_login(alice)
    asked = client.post(f"/keys/{tokaify_key.id}/revoke/", {"next": f"/keys/{tokaify_key.id}/"})
    time_machine.move_to(timezone.now() + timedelta(seconds=PENDING_SECONDS + 30))
    return asked["Location"]


def test_sso_confirmation_back_after_the_pending_action_expired_says_it_was_not_done(
    client, alice, tokaify_key, settings, time_machine
):
    settings.OIDC_ISSUER = "https://idp.example"
    prompt_url = _stale_prompt(client, alice, tokaify_key, time_machine)
    session = client.session
    session[SUDO_SESSION_KEY] = time.time() + 600  # what a confirming SSO sign-in leaves (portal.oidc)
    session.save()
    back = client.get(prompt_url, follow=True)
    assert back.redirect_chain[-1][0] == f"/keys/{tokaify_key.id}/"  # its `next`: no password asked again
    main = unescape(main_of(back.content.decode()))
    assert 'name="password"' not in main
    assert f"The action to revoke the key {tokaify_key.label!r}" in main, main
    assert "waited more than 5 minutes" in main and "it was not done. Do it again." in main, main
    assert GatewayKey.objects.get(pk=tokaify_key.pk).state == KeyState.ACTIVE


def test_a_password_prompt_opened_after_its_action_expired_says_it_was_not_done(
    client, alice, tokaify_key, time_machine
):
    prompt_url = _stale_prompt(client, alice, tokaify_key, time_machine)
    page = client.get(prompt_url)
    main = unescape(main_of(page.content.decode()))
    assert page.status_code == 200 and 'name="password"' in main  # not confirmed yet: the plain prompt
    assert "it was not done. Do it again." in main, main
    assert 'name="sudo_password"' not in main  # no expired action carried


def test_the_prompt_opened_again_after_its_action_was_done_does_not_say_it_was_not_done(client, alice, tokaify_key):
    client.force_login(alice)
    key_url = f"/keys/{tokaify_key.id}/"
    prompt_url = client.post(f"/keys/{tokaify_key.id}/revoke/", {"next": key_url})["Location"]
    client.post(f"/keys/{tokaify_key.id}/revoke/", {"next": key_url, "sudo_password": "pass-alice"})
    assert GatewayKey.objects.get(pk=tokaify_key.pk).state == KeyState.REVOKED
    back = client.get(prompt_url, follow=True)  # Back in the browser, to the prompt
    main = main_of(back.content.decode())
    assert "it was done already" in main and "so it was not done" not in main, main


# --- 3. SSO from an invitation page finished after the invitation expired --------------------------------------


def _sso_link_on_the_accept_page(client, link: str) -> str:
    assert client.get(urlsplit(link).path).status_code == 302
    html = client.get("/invitations/accept/").content.decode()
    return unescape(re.search(r'href="(/oidc/authenticate/\?[^"]+)"', html).group(1))


@pytest.mark.parametrize("has_account", [False, True])
def test_sso_from_the_invitation_page_finished_after_it_expired_says_the_invitation_expired(
    api,
    alice,
    provider,  # noqa: F811 (the fixture)
    client,
    settings,
    time_machine,
    has_account,
):
    if has_account:
        get_user_model().objects.create_user("frank", "frank@example.com", "pass-frank")
    made = api(alice).post("/api/v1/teams/web/invitations/", {"email": "frank@example.com"}, format="json")
    link = made.json()["accept_url"]
    time_machine.move_to(timezone.now() + timedelta(days=settings.INVITATION_DAYS) - timedelta(minutes=2))
    started = client.get(_sso_link_on_the_accept_page(client, link))
    assert started.status_code == 302
    time_machine.move_to(timezone.now() + timedelta(minutes=5))  # the provider's MFA took a few minutes
    code = provider.answer(started["Location"], sub="frank-at-idp", email="frank@example.com")
    answer = deliver(client, started["Location"], code)
    if has_account:
        assert answer.status_code == 302 and answer["Location"] == "/"  # home, not the team page (Not found)
        assert signed_in(client) == "frank"
        page = client.get("/", follow=True)
        assert page.status_code == 200
        html = page.content.decode()
    else:
        assert answer.status_code == 403 and signed_in(client) is None
        html = answer.content.decode()
    assert not Membership.objects.filter(team__slug="web", user__username="frank").exists()
    main = unescape(main_of(html))
    assert "This invitation has expired. Ask the team's admin for a new one." in main, main
    assert "no invitation for it" not in main


# --- 4. A form posted after signing in again in another tab -------------------------------------------------------


def sign_in(browser: Client, username: str) -> None:
    page = browser.get("/login/")
    form = {"username": username, "password": f"pass-{username}", "csrfmiddlewaretoken": csrf_of(page.content.decode())}
    assert browser.post("/login/", form).status_code == 302


def key_form(tokaify, token: str) -> dict:
    return {"csrfmiddlewaretoken": token, "gateway": tokaify.slug, "label": "CI runner", "secret": NEW_SECRET}


def test_a_form_sent_after_signing_in_again_in_another_tab_gets_the_portals_page_with_what_to_do(
    alice, tokaify, settings, time_machine
):
    browser = Client(enforce_csrf_checks=True)
    sign_in(browser, "alice")
    token = csrf_of(browser.get("/teams/web/keys/new/").content.decode())
    time_machine.move_to(timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE + 60))
    sign_in(browser, "alice")  # the other tab: a new sign-in changes the CSRF token
    sent = browser.post("/teams/web/keys/new/", key_form(tokaify, token))
    html = sent.content.decode()
    assert sent.status_code == 403
    assert not GatewayKey.objects.filter(label="CI runner").exists()
    assert "CSRF verification failed" not in html and "Gateway portal" in html
    assert "was opened before you signed in again" in main_of(html)
    assert "Reload the page and fill it in again." in main_of(html)
    assert NEW_SECRET not in html


def test_a_session_write_to_the_api_without_its_token_keeps_its_json_answer(alice, tokaify_key):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    assert browser.get(f"/keys/{tokaify_key.id}/").status_code == 200  # a page with forms sets the CSRF cookie
    sent = browser.delete(f"/api/v1/keys/{tokaify_key.id}/")
    assert sent.status_code == 403
    assert sent.json() == {"detail": "CSRF Failed: CSRF token missing."}
    assert GatewayKey.objects.get(pk=tokaify_key.pk).state == KeyState.ACTIVE


def test_the_csrf_failure_view_answers_json_under_the_api():
    answer = csrf_failure(RequestFactory().post("/api/v1/anything/"), reason="CSRF token missing.")
    assert answer.status_code == 403
    assert answer["Content-Type"] == "application/json"
    assert answer.content == b'{"detail": "CSRF Failed: CSRF token missing."}'


# --- 5. A form sent after the session ran out ---------------------------------------------------------------------


def test_a_form_sent_after_the_session_ran_out_says_on_the_sign_in_page_that_nothing_was_saved(
    alice, tokaify, settings, time_machine
):
    browser = Client(enforce_csrf_checks=True)
    sign_in(browser, "alice")
    token = csrf_of(browser.get("/teams/web/keys/new/").content.decode())
    time_machine.move_to(timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE + 60))
    sent = browser.post("/teams/web/keys/new/", key_form(tokaify, token), follow=True)
    assert sent.redirect_chain[-1][0].startswith("/login/?next=")
    assert not GatewayKey.objects.filter(label="CI runner").exists()
    main = main_of(sent.content.decode())
    assert "Sign in" in main
    assert (
        "You were signed out before this form was sent, so nothing was saved. Sign in, then send it again." in main
    ), main


@pytest.mark.parametrize("told", ["next", "referer"])
def test_signing_in_again_after_a_form_was_not_sent_returns_to_the_forms_page(
    alice, tokaify_key, settings, time_machine, told
):
    """Revoke and Assign post to an address that takes POST only: going there after signing in was a 405."""
    page = f"/keys/{tokaify_key.id}/"
    browser = Client()
    browser.force_login(alice)
    time_machine.move_to(timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE + 60))
    if told == "next":
        sent = browser.post(f"/keys/{tokaify_key.id}/revoke/", {"next": page}, follow=True)
    else:
        sent = browser.post(
            f"/keys/{tokaify_key.id}/assign/", {"username": "bob"}, HTTP_REFERER=f"http://testserver{page}", follow=True
        )
    assert "nothing was saved" in sent.content.decode()
    login_url = sent.redirect_chain[-1][0]
    assert parse_qs(urlsplit(login_url).query)["next"] == [page]
    back = browser.post(login_url, {"username": "alice", "password": "pass-alice"}, follow=True)
    assert (back.status_code, back.redirect_chain[-1][0]) == (200, page)
    tokaify_key.refresh_from_db()
    assert tokaify_key.state == KeyState.ACTIVE  # nothing was sent on its own


def test_a_referer_from_another_site_is_not_where_signing_in_leads(alice, tokaify_key, settings, time_machine):
    browser = Client()
    browser.force_login(alice)
    time_machine.move_to(timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE + 60))
    sent = browser.post(f"/keys/{tokaify_key.id}/assign/", {"username": "bob"}, HTTP_REFERER="https://evil.example/x")
    assert sent.status_code == 302
    assert parse_qs(urlsplit(sent["Location"]).query)["next"] == [f"/keys/{tokaify_key.id}/assign/"]


def test_signing_out_says_nothing_about_a_form_not_saved(client, alice):
    client.force_login(alice)
    out = client.post("/logout/", follow=True)
    assert "/login/" in out.redirect_chain[-1][0]
    assert "nothing was saved" not in out.content.decode()
