"""Today's paged lists and "more" links by keyboard and screen reader, in real headless Chromium (as
tests/test_browser_a11y.py): the key page after a refused Assign, the dashboard's "see them all", the older
page of access tokens, and a device that never fetched its key. tests/gateways/test_list_links.py checks the
same links' addresses without a browser."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from gateways.models import Device
from portal.models import AccessToken
from tests.gateways.test_large_team_pages import DASH, add_devices, add_members, age_keys, give_key
from tests.test_browser_a11y import SHOWN_WORDS, open_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def crowded_key(alice, web, tokenbay_key):
    """A key 120 of 220 members hold, one of them on 110 live devices: both lists of its page have a second page,
    and Assign takes a typed name."""
    assignments = give_key(tokenbay_key, add_members(web, 220)[:120], alice)
    add_devices(assignments[0], 110)
    return tokenbay_key


@pytest.fixture
def key_browser(crowded_key, chromium):  # after the rows
    return chromium


def test_the_key_pages_next_page_links_read_as_the_list_they_turn(crowded_key, alice, live_server, key_browser):
    context, page = open_page(key_browser, live_server, alice)
    page.goto(f"{live_server.url}/keys/{crowded_key.id}/")
    assignees = page.locator("[data-pages=assignees_page] a[rel=next]")
    devices = page.locator("[data-pages=devices_page] a[rel=next]")
    expect(assignees).to_have_accessible_name("Next page of assignees")
    expect(devices).to_have_accessible_name("Next page of devices")
    expect(page.get_by_role("link", name="Next page", exact=True)).to_have_count(0)
    shown = [assignees.evaluate(SHOWN_WORDS), devices.evaluate(SHOWN_WORDS)]
    context.close()
    assert shown == ["Next page", "Next page"]  # on screen, the words stay short


def test_after_a_refused_assign_each_lists_next_page_opens_on_the_key_page(
    crowded_key, alice, live_server, key_browser
):
    context, page = open_page(key_browser, live_server, alice)
    key_page = f"{live_server.url}/keys/{crowded_key.id}/"
    landed = []
    for param, shown in (
        ("assignees_page", f"101{DASH}120 of 120 assignees"),
        ("devices_page", f"101{DASH}110 of 110 devices"),
    ):
        page.goto(key_page)
        field = page.get_by_label("Assign to")
        field.fill("nosuch")
        field.press("Enter")  # the page that answers is the POST's, at /keys/<id>/assign/
        expect(page.get_by_role("alert")).to_contain_text("nosuch")
        page.locator(f"[data-pages={param}] a[rel=next]").focus()
        page.keyboard.press("Enter")
        page.wait_for_url(f"**{param}=2**")
        expect(page.locator(f"[data-pages={param}]")).to_contain_text(shown)
        landed.append(page.url.split("?")[0])
    context.close()
    assert landed == [key_page, key_page]


@pytest.fixture
def many_keys(alice, web, tokenbay, settings):
    now = timezone.now()
    age_keys(web, tokenbay, alice, "Spare", 24, created_at=now - timedelta(days=settings.CONNECTION_STALE_DAYS + 5))
    age_keys(web, tokenbay, alice, "Ending", 22, expires_at=now + timedelta(days=2))


@pytest.fixture
def dash_browser(many_keys, chromium):
    return chromium


def test_the_dashboards_see_them_all_links_name_their_section(many_keys, alice, live_server, dash_browser, settings):
    context, page = open_page(dash_browser, live_server, alice)
    page.goto(f"{live_server.url}/dashboard/")
    expect(page.locator("[data-more] a")).to_have_count(2)
    expect(page.get_by_role("link", name="see them all", exact=True)).to_have_count(0)
    expect(page.locator("#expiring [data-more] a")).to_have_accessible_name(
        f"see them all (keys expiring within {settings.EXPIRY_WARNING_DAYS} days)"
    )
    expect(page.locator("#unused [data-more] a")).to_have_accessible_name(
        f"see them all (keys nobody fetched in {settings.CONNECTION_STALE_DAYS} days)"
    )
    context.close()


FOCUS_IN_KEYS = "!!document.activeElement.closest('#keys')"


def test_see_them_all_and_show_every_key_land_at_the_keys_by_keyboard(many_keys, alice, live_server, dash_browser):
    context, page = open_page(dash_browser, live_server, alice)
    page.goto(f"{live_server.url}/dashboard/")
    page.locator("#unused [data-more] a").focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**state=unused#keys")
    page.keyboard.press("Tab")  # the next stop is in the Keys card, not the add-member form above it
    in_keys = [page.evaluate(FOCUS_IN_KEYS)]
    page.get_by_role("link", name="Show every key").focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/teams/web/#keys")
    expect(page.locator("[data-key-state]")).to_have_count(0)
    page.keyboard.press("Tab")
    in_keys.append(page.evaluate(FOCUS_IN_KEYS))
    context.close()
    assert in_keys == [True, True]


@pytest.fixture
def token_browser(bob, chromium):
    for n in range(105):
        AccessToken.issue(bob, name=f"script {n:03d}")
    return chromium


def test_revoking_a_token_by_keyboard_on_the_older_page_stays_there(bob, live_server, token_browser):
    context, page = open_page(token_browser, live_server, bob)
    page.goto(f"{live_server.url}/tokens/")
    page.get_by_role("link", name="Older tokens").focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**cursor=**")
    older = page.url
    first_name = page.locator("tbody tr td").first.inner_text()
    page.locator("summary", has_text="Revoke…").first.focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Revoke this token").first).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.get_by_role("status").or_(page.get_by_role("alert")).first).to_contain_text(f"{first_name} revoked")
    landed = page.url
    context.close()
    assert landed == older


def test_a_device_that_never_fetched_says_what_to_do_in_words_on_the_page(bob_assignment, bob, live_server, chromium):
    now = timezone.now()
    Device.objects.create(
        user=bob,
        key=bob_assignment.key,
        assignment=bob_assignment,
        name="laptop",
        platform="linux",
        install_lookup_id="Fb6",
        install_digest="0" * 64,
        install_expires_at=now + timedelta(minutes=15),
        installed_at=now,
        token_lookup_id="Gb6",
    )
    context, page = open_page(chromium, live_server, bob)
    page.goto(f"{live_server.url}/devices/")
    badge = page.locator("[data-device-state=never_fetched]")
    expect(badge).to_have_text("installed, key never fetched")
    tooltip = badge.get_attribute("title")
    row = page.locator("tr", has=badge).inner_text()
    context.close()
    assert tooltip is None
    assert "make a new install command on My set-up and remove this device" in row


def test_a_refused_field_keeps_its_error_a_list_in_an_alert(tokenbay_key, alice, live_server, chromium, settings):
    """The rotate page refusing a time the clocks show twice: the error is announced, focused, and axe-clean (a
    list with role="alert" would stop being a list to its items)."""
    from tests.test_browser_a11y import LINUX
    from tests.test_browser_pages import AXE, session_cookie

    settings.TIME_ZONE = "Europe/Paris"
    context = chromium.new_context(user_agent=LINUX, bypass_csp=True)
    context.add_cookies([session_cookie(live_server, alice, sudo=True)])
    page = context.new_page()
    page.goto(f"{live_server.url}/keys/{tokenbay_key.id}/rotate/")
    page.locator("#id_secret").fill("sk-tokenbay-abcdef0123456789")
    page.locator("#id_expires_at").fill("2031-10-26T02:30")
    page.locator("#id_expires_at").press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("happens twice in Europe/Paris")
    expect(page.locator("#id_expires_at")).to_be_focused()
    page.add_script_tag(path=str(AXE))
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    context.close()
    serious = [v["id"] for v in results["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == []
