"""The pages with JavaScript off, at the HTTP level: what a browser without app.js (or Swagger UI) is left with.

My set-up's Reveal answers with a redirect, as every other shown-once answer does; its Download links save only
a download; the key form's hints each say which gateway they are for; the API page says what needs JavaScript;
and a form's address opened as a page says what it is instead of an empty 405.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from gateways.services import assign_key, rotate_key_secret, set_key_enabled, store_key
from portal.models import AuditEvent
from tests.conftest import TOKENBAY_SECRET

pytestmark = pytest.mark.django_db

REVEALED = f"export ANTHROPIC_AUTH_TOKEN=&#x27;{TOKENBAY_SECRET}&#x27;"


def downloads(username: str) -> list[str]:
    events = AuditEvent.objects.filter(action="config.downloaded", actor_username=username).order_by("id")
    return [event.details.get("format") for event in events]


# --- Reveal without JavaScript: Post/Redirect/Get -------------------------------------------------------------


def test_reveal_without_javascript_redirects_to_the_card_shows_the_key_once_and_records_one_download(
    client, bob, bob_assignment
):
    client.force_login(bob)
    revealed = client.post(f"/setup/{bob_assignment.id}/reveal/", {"purpose": "reveal"})
    assert revealed.status_code == 303
    assert revealed["Location"] == f"/setup/#assignment-{bob_assignment.id}"
    assert TOKENBAY_SECRET not in revealed.content.decode()

    shown = client.get(revealed["Location"])
    html = shown.content.decode()
    assert shown.status_code == 200 and "no-store" in shown["Cache-Control"]
    assert REVEALED in html and 'data-revealed="true"' in html
    assert "this counts as a download" in html
    assert downloads("bob") == ["reveal"]

    again = client.get("/setup/").content.decode()  # a reload, or Back to the page: a GET, masked again
    assert TOKENBAY_SECRET not in again and 'data-revealed="true"' not in again
    assert downloads("bob") == ["reveal"]


def test_the_revealed_texts_wait_in_the_session_encrypted(client, bob, bob_assignment):
    client.force_login(bob)
    client.post(f"/setup/{bob_assignment.id}/reveal/", {"purpose": "reveal"})
    assert TOKENBAY_SECRET not in str(dict(client.session))


def test_a_refused_reveal_without_javascript_says_why_on_my_setup(client, alice, bob, bob_assignment):
    set_key_enabled(key=bob_assignment.key, enabled=False, actor=alice)
    client.force_login(bob)
    refused = client.post(f"/setup/{bob_assignment.id}/reveal/", {"purpose": "reveal"}, follow=True)
    assert refused.redirect_chain[-1][0] == "/setup/"
    assert "disabled" in " ".join(str(m) for m in refused.context["messages"])
    assert downloads("bob") == []


def test_opening_the_reveal_address_leads_to_the_card_masked_and_records_nothing(client, bob, bob_assignment):
    client.force_login(bob)
    opened = client.get(f"/setup/{bob_assignment.id}/reveal/")
    assert opened.status_code == 302 and opened["Location"] == f"/setup/#assignment-{bob_assignment.id}"
    html = client.get(opened["Location"]).content.decode()
    assert TOKENBAY_SECRET not in html and "press Reveal key" in html
    assert downloads("bob") == []


def test_the_reveal_address_of_another_persons_card_is_still_not_found(client, alice, bob_assignment):
    client.force_login(alice)
    assert client.get(f"/setup/{bob_assignment.id}/reveal/").status_code == 404
    assert client.post(f"/setup/{bob_assignment.id}/reveal/").status_code == 404


def test_signing_in_again_after_a_form_sent_from_the_reveal_address_lands_on_the_card(client, bob, bob_assignment):
    """A page left open at the reveal address (before this was fixed, or from the history) whose session ended."""
    client.force_login(bob)
    client.logout()
    sent = client.post(
        f"/setup/{bob_assignment.id}/devices/",
        {"name": "laptop", "platform": "linux"},
        HTTP_REFERER=f"http://testserver/setup/{bob_assignment.id}/reveal/",
    )
    next_page = parse_qs(urlsplit(sent["Location"]).query)["next"][0]
    landed = client.post(sent["Location"], {"username": "bob", "password": "pass-bob", "next": next_page}, follow=True)
    assert landed.status_code == 200
    assert landed.redirect_chain[-1][0] == f"/setup/#assignment-{bob_assignment.id}"


# --- My set-up's Download links -----------------------------------------------------------------------------


def _percent_key_assignment(alice, web, tokenbay):
    key = store_key(
        team=web,
        gateway=tokenbay,
        label="Pct",
        secret="sk-pct-0123456789abcdef",
        actor=alice,
        custom_model_option="claude-sonnet-4-5",
        custom_model_option_name="Sonnet 100%",
    )
    return assign_key(key=key, username="bob", actor=alice)


def test_no_download_link_on_my_setup_saves_what_comes_back_as_a_file(client, alice, bob, bob_assignment, time_machine):
    """A refusal comes back as My set-up with its sentence: a `download` link would save that page as a file."""
    client.force_login(bob)
    client.get(f"/setup/{bob_assignment.id}/bash")  # downloaded, then the key is rotated: "Download bash again"
    time_machine.move_to(timezone.now() + timedelta(minutes=2))
    rotate_key_secret(key=bob_assignment.key, secret="sk-tokenbay-new-0123456789abcdef", actor=alice)
    html = client.get("/setup/").content.decode()
    links = re.findall(r'<a [^>]*href="/setup/\d+/[^"]+"[^>]*>', html)
    assert len(links) > 10 and "Download bash again" in html
    assert [link for link in links if re.search(r"\sdownload[\s>=]", link)] == []


def test_a_download_refused_after_the_page_was_shown_comes_back_as_the_page_with_why(
    client, alice, bob, bob_assignment
):
    client.force_login(bob)
    set_key_enabled(key=bob_assignment.key, enabled=False, actor=alice)
    refused = client.get(f"/setup/{bob_assignment.id}/bash", follow=True)
    assert refused.redirect_chain == [("/setup/", 302)]
    assert "Content-Disposition" not in refused
    assert "disabled" in " ".join(str(m) for m in refused.context["messages"])


def test_a_format_my_setup_refuses_offers_no_download_of_it(client, alice, bob, web, tokenbay):
    assignment = _percent_key_assignment(alice, web, tokenbay)
    client.force_login(bob)
    html = client.get("/setup/").content.decode()
    cmd_panel = html.split(f'id="panel-{assignment.id}-cmd"', 1)[1].split('id="panel-', 1)[0]
    assert "CMD cannot carry" in cmd_panel
    assert f'href="/setup/{assignment.id}/cmd"' not in cmd_panel
    assert f'href="/setup/{assignment.id}/install.ps1"' in cmd_panel  # the installer carries it: still offered
    assert f'href="/setup/{assignment.id}/powershell"' in html


# --- Add a key: every gateway's hint, named ------------------------------------------------------------------


def test_the_key_form_sends_every_gateways_hint_visible_and_named(client, alice, tokaify, tokenbay):
    client.force_login(alice)
    html = client.get("/teams/web/keys/new/?gateway=tokenbay").content.decode()
    hints = dict(re.findall(r'<p data-hint="([^"]+)"([^>]*)>', html))
    assert {"tokaify", "tokenbay"} <= set(hints)
    assert all("hidden" not in attributes for attributes in hints.values()), hints
    for gateway in (tokaify, tokenbay):
        assert f"Where to find a <bdi>{gateway.name}</bdi> key: {escape(gateway.console_hint)}" in html


# --- The API page -------------------------------------------------------------------------------------------


def test_the_api_page_says_what_needs_javascript_and_where_the_schema_is(client, bob):
    client.force_login(bob)
    html = client.get("/api/v1/docs/").content.decode()
    noscript = html.split("<noscript>", 1)[1].split("</noscript>", 1)[0]
    assert "needs JavaScript" in noscript
    assert 'href="/api/v1/schema/?format=json"' in noscript and 'href="/api/v1/schema/?format=yaml"' in noscript


# --- A form's address opened as a page ----------------------------------------------------------------------


def test_a_forms_address_opened_as_a_page_says_what_it_is_and_keeps_allow(client, alice, tokaify_key):
    client.force_login(alice)
    opened = client.get(f"/keys/{tokaify_key.id}/toggle/")
    assert opened.status_code == 405 and opened["Allow"] == "POST"
    assert opened["Content-Type"].startswith("text/html")
    html = opened.content.decode()
    assert "takes a form's submission only" in html and 'href="/"' in html

    key_page = f"/keys/{tokaify_key.id}/"
    from_page = client.get(f"/keys/{tokaify_key.id}/revoke/", HTTP_REFERER=f"http://testserver{key_page}")
    assert from_page.status_code == 405 and f'<a href="{key_page}">back to that page</a>' in from_page.content.decode()


def test_signed_out_a_forms_address_opened_as_a_page_says_so_too():
    opened = Client().get("/logout/")  # Django's LogoutView takes POST only
    assert opened.status_code == 405 and "takes a form's submission only" in opened.content.decode()


def test_the_apis_and_the_device_doors_405s_are_left_as_they_were(api, bob, bob_assignment):
    refused = api(bob).post(f"/api/v1/me/configs/{bob_assignment.id}/bash")
    assert refused.status_code == 405 and refused["Content-Type"].startswith("application/json")
    door = Client().post("/api/v1/device/key")
    assert door.status_code == 405 and "form" not in door.content.decode()
