"""What a keyboard, screen-reader or phone user meets, in real headless Chromium (as tests/test_browser*.py).

My set-up's Copy and shell tabs, with and without JavaScript; long unbroken names at a 375 px phone; where
focus lands after a refused form; and that every aria-describedby names an element the page has.
"""

from __future__ import annotations

import re

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from gateways.config.guide import TABS
from gateways.models import Assignment, Gateway, GatewayKey
from gateways.services import assign_key, store_key
from portal.models import Membership, Role, Team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PHONE = {"width": 375, "height": 812}
LINUX = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156"
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"
DANGLING = """[...document.querySelectorAll('[aria-describedby]')].flatMap(e =>
  e.getAttribute('aria-describedby').split(/\\s+/).filter(id => id && !document.getElementById(id)).map(id => e.name + ' -> #' + id))"""

# What the button shows on screen: its text without the visually-hidden words meant for screen readers.
SHOWN_WORDS = """b => { const shown = b.cloneNode(true);
  shown.querySelectorAll('.visually-hidden').forEach((e) => e.remove()); return shown.textContent.trim(); }"""


def open_page(browser, live_server, user, *, js=True, viewport=None, clipboard=False):
    """A signed-in page (the session made by Django's test client), JavaScript on or off."""
    client = Client()
    client.force_login(user)
    options = {"java_script_enabled": js, "user_agent": LINUX}
    if viewport:
        options["viewport"] = viewport
    context = browser.new_context(**options)
    name, value = django_settings.SESSION_COOKIE_NAME, client.cookies[django_settings.SESSION_COOKIE_NAME].value
    context.add_cookies([{"name": name, "value": value, "url": live_server.url}])
    if clipboard:
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    return context, context.new_page()


# --- My set-up: Copy, its announcement, and the shell tabs -------------------------------------------------


def test_the_copy_button_reads_copy_again_and_keeps_its_hidden_words(bob_assignment, bob, live_server, chromium):
    context, page = open_page(chromium, live_server, bob, clipboard=True)
    page.goto(f"{live_server.url}/setup/")
    button = page.locator("[data-panel=bash] [data-copy]")
    expect(button).to_have_accessible_name("Copy the bash set-up")
    width = button.bounding_box()["width"]
    button.focus()
    page.keyboard.press("Enter")
    expect(button).to_have_text("Copied")
    expect(button).to_have_accessible_name("Copy the bash set-up", timeout=5000)  # back after 2 s
    assert button.evaluate(SHOWN_WORDS) == "Copy"
    assert button.locator(".visually-hidden").count() == 1, button.evaluate("b => b.outerHTML")
    assert button.bounding_box()["width"] == pytest.approx(width, abs=1), "the button shows its hidden words"
    context.close()


def test_a_copy_is_announced_in_a_status_region(bob_assignment, bob, live_server, chromium):
    context, page = open_page(chromium, live_server, bob, clipboard=True)
    page.goto(f"{live_server.url}/setup/")
    panel = page.locator("[data-panel=bash]")
    panel.get_by_role("button", name="Copy the bash set-up").press("Enter")
    expect(panel.get_by_role("status")).to_have_text("Copied to the clipboard.")
    context.close()


def test_a_failed_reveal_is_announced_in_a_status_region(bob_assignment, bob, live_server, chromium):
    context, page = open_page(chromium, live_server, bob)
    page.goto(f"{live_server.url}/setup/")
    bob_assignment.delete()  # the card is stale: the reveal is refused
    panel = page.locator("[data-panel=bash]")
    panel.get_by_role("button", name="Reveal key").click()
    expect(panel.get_by_role("status")).to_contain_text("The key could not be fetched")
    context.close()


def test_each_shell_snippet_shows_under_its_heading_without_javascript(bob_assignment, bob, live_server, chromium):
    context, page = open_page(chromium, live_server, bob, js=False)
    page.goto(f"{live_server.url}/setup/")
    expect(page.get_by_role("tab")).to_have_count(0)
    expect(page.get_by_role("tablist")).to_have_count(0)
    for tab in TABS:
        panel = page.locator(f"[data-panel={tab.slug}]")
        expect(panel.get_by_role("heading", name=tab.title, exact=True)).to_be_visible()
        expect(panel.locator("pre")).to_be_visible()
        expect(panel.get_by_role("link", name=f"Download {tab.format}", exact=True)).to_be_visible()
    context.close()


def test_the_shell_tabs_keep_arrow_keys_and_a_roving_tab_stop(bob_assignment, bob, live_server, chromium):
    context, page = open_page(chromium, live_server, bob)
    page.goto(f"{live_server.url}/setup/")
    bash = page.get_by_role("tab", name="bash", exact=True)
    expect(bash).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("tab", selected=True)).to_have_count(1)
    expect(page.get_by_role("tabpanel")).to_have_count(1)  # the others are hidden
    expect(page.get_by_role("tabpanel")).to_have_accessible_name("bash")
    expect(page.locator("[data-panel=bash]").get_by_role("heading", name="bash", exact=True)).to_be_hidden()
    bash.focus()
    page.keyboard.press("ArrowRight")
    following = page.get_by_role("tab", selected=True)
    assert following.get_attribute("data-tab") != "bash"
    assert page.evaluate("document.activeElement.getAttribute('aria-selected')") == "true"
    assert page.evaluate("document.activeElement.tabIndex") == 0
    expect(bash).to_have_attribute("tabindex", "-1")
    page.keyboard.press("ArrowLeft")
    expect(bash).to_be_focused()
    expect(page.locator("[data-panel=bash]")).to_be_visible()
    context.close()


# --- Long unbroken names at a 375 px phone --------------------------------------------------------------------

LONG_USER = "u" * 60
LONG_LABEL = "k" * 100  # GatewayKey.label's limit
LONG_TEAM = "x" * 100  # Team.name's limit


@pytest.fixture
def longworld(db):
    users = get_user_model().objects
    admin = users.create_user("alice", "alice@example.com", "pw")
    longname = users.create_user(LONG_USER, "long@example.com", "pw")
    member = users.create_user("m" * 40, "m@example.com", "pw")
    team = Team.objects.create(name=LONG_TEAM, slug="long")
    Membership.objects.create(team=team, user=admin, role=Role.ADMIN)
    Membership.objects.create(team=team, user=member, role=Role.MEMBER)
    Membership.objects.create(team=team, user=longname, role=Role.MEMBER)
    key = store_key(
        team=team,
        gateway=Gateway.objects.get(slug="tokenbay"),
        label=LONG_LABEL,
        secret="sk-tokenbay-0123456789abcdef",
        actor=admin,
    )
    GatewayKey.objects.filter(pk=key.pk).update(last_probe_verdict="timeout", last_probe_at=timezone.now())
    assignment = assign_key(key=key, username=member.username, actor=admin)
    # The member downloaded it: the offboard page lists the static copy in its table.
    Assignment.objects.filter(pk=assignment.pk).update(last_download_at=timezone.now(), last_download_format="bash")
    return {"longname": longname, "admin": admin, "member": member}


def assert_on_screen(page, locator, what):
    assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{what}: the page scrolls sideways"
    box = locator.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"{what} reaches {box}"


def test_the_header_fits_a_phone_with_a_long_user_name(longworld, live_server, chromium):
    context, page = open_page(chromium, live_server, longworld["longname"], viewport=PHONE)
    page.goto(f"{live_server.url}/teams/")
    assert_on_screen(page, page.locator("header.top").get_by_role("link", name=LONG_USER), "the account link")
    context.close()


def test_the_dashboard_fits_a_phone_with_a_long_key_label_and_team_name(longworld, live_server, chromium):
    context, page = open_page(chromium, live_server, longworld["admin"], viewport=PHONE)
    page.goto(f"{live_server.url}/dashboard/")
    failing = page.locator("#failing")
    expect(failing.locator(".table-scroll")).to_have_count(1)  # the table scrolls in its own box
    assert_on_screen(page, failing.locator(".table-scroll"), "the failing keys' table box")
    assert_on_screen(page, failing.get_by_role("link", name=LONG_TEAM), "the team link")
    context.close()


def test_the_team_page_fits_a_phone_with_a_long_failing_key_label(longworld, live_server, chromium):
    context, page = open_page(chromium, live_server, longworld["admin"], viewport=PHONE)
    page.goto(f"{live_server.url}/teams/long/")
    failing = page.get_by_role("region", name="Failing keys")
    assert_on_screen(page, failing.get_by_role("link", name=LONG_LABEL), "the failing key's link")
    context.close()


def test_the_offboard_page_fits_a_phone_with_long_names(longworld, live_server, chromium):
    member = longworld["member"].username
    context, page = open_page(chromium, live_server, longworld["admin"], viewport=PHONE)
    page.goto(f"{live_server.url}/teams/long/members/{member}/offboard/")
    assert_on_screen(page, page.get_by_role("button", name=f"Offboard {member}"), "the Offboard button")
    assert_on_screen(page, page.get_by_role("region", name="Static copies").locator(".table-scroll"), "the copies")
    context.close()


# --- Refused forms --------------------------------------------------------------------------------------------


def test_a_refused_key_puts_focus_on_the_field_at_fault(alice, web, live_server, chromium):
    context, page = open_page(chromium, live_server, alice)
    page.goto(f"{live_server.url}/teams/web/keys/new/?gateway=tokenbay")
    page.get_by_label("Label").fill("CI")
    page.get_by_label("Secret").fill("not-a-key-0123456789abcdef")
    page.get_by_role("button", name="Store key").click()
    expect(page.get_by_role("alert")).to_contain_text("keys start with sk-")
    expect(page.get_by_label("Secret")).to_be_focused()
    context.close()


def test_a_refused_member_puts_focus_on_the_user_name(alice, web, live_server, chromium):
    context, page = open_page(chromium, live_server, alice)
    page.goto(f"{live_server.url}/teams/web/")
    page.get_by_label("User name").fill("nosuch")
    page.get_by_role("button", name="Save member").click()
    expect(page.get_by_role("alert")).to_contain_text("There is no active user called 'nosuch'")
    expect(page.get_by_label("User name")).to_be_focused()
    expect(page.get_by_label("User name")).to_have_accessible_description(
        re.compile(r"^An existing account's user name\. There is no active user called 'nosuch'")
    )
    context.close()


def test_the_team_page_describes_its_fields_with_elements_it_has(alice, web, live_server, chromium):
    context, page = open_page(chromium, live_server, alice)
    page.goto(f"{live_server.url}/teams/web/")
    assert page.evaluate(DANGLING) == []
    expect(page.get_by_label("User name")).to_have_accessible_description("An existing account's user name.")
    context.close()
