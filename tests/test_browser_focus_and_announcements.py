"""Focus and announcements for keyboard and screen-reader users: a probe's fresh chart keeps the focus of whoever
was on it, an empty chart is no Tab stop, a warning after a redirect (signed out before a form was sent, a typed
secret not kept through the password prompt) is an alert, and the notifications table's columns all have names."""

from __future__ import annotations

import re

import pytest
from django.contrib.sessions.backends.db import SessionStore
from playwright.sync_api import expect

from gateways.models import ProbeResult
from portal.sudo import SUDO_SESSION_KEY
from tests import test_browser_pages
from tests.test_browser_pages import AXE, address_of, session_cookie

world = test_browser_pages.world
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

ACTIVE = "(() => { const e = document.activeElement; return e.id || e.tagName; })()"


def signed_in(chromium, live_server, user, *, sudo=False, **options):
    context = chromium.new_context(bypass_csp=True, **options)
    cookie = session_cookie(live_server, user, sudo=sudo)
    context.add_cookies([cookie])
    return context, context.new_page(), cookie


def test_a_probe_does_not_drop_the_focus_of_a_keyboard_user_on_the_latency_chart(live_server, chromium, world):
    """Tab after Probe now lands on the (new) focusable chart region; when the probe ends, refreshRegions swaps
    the region's node and focus falls to <body>: the keyboard/screen-reader user loses their place."""
    context, page, _ = signed_in(chromium, live_server, world["alice"])
    page.goto(live_server.url + address_of(world, "/keys/{key}/"))
    chart = page.locator("#latency-chart")
    chart.focus()
    page.evaluate("document.querySelector('form[data-probe-target]').requestSubmit()")
    expect(page.locator("#latency-chart svg")).to_have_attribute(
        "aria-label", re.compile("last 4 probes"), timeout=30000
    )
    active = page.evaluate(ACTIVE)
    context.close()
    assert active == "latency-chart"


def test_no_probes_yet_is_no_tab_stop(live_server, chromium, world):
    """With no probe, the chart region holds one short sentence that never scrolls, yet it is a Tab stop
    ("Latency chart, region") that does nothing."""
    ProbeResult.objects.all().delete()
    context, page, _ = signed_in(chromium, live_server, world["alice"], viewport={"width": 320, "height": 640})
    page.goto(live_server.url + address_of(world, "/keys/{key}/"))
    chart = page.locator("#latency-chart")
    expect(chart).to_have_text("No probes yet.")
    scrolls = chart.evaluate("e => e.scrollWidth > e.clientWidth")
    tab_index = chart.evaluate("e => e.tabIndex")
    context.close()
    assert not scrolls
    assert tab_index < 0, "a focusable region that cannot scroll"


def test_the_signed_out_warning_is_announced_on_the_sign_in_page(live_server, chromium, world):
    """A form sent after the session ended lands on Sign in, whose User name field takes the focus (autofocus):
    the warning that nothing was saved sits before it in a polite status region present at load, which a screen
    reader does not announce, and the field does not describe it."""
    context, page, _ = signed_in(chromium, live_server, world["alice"])
    page.goto(live_server.url + address_of(world, "/keys/{key}/"))
    keep = [c for c in context.cookies() if c["name"] != "sessionid"]  # signed out in another tab
    context.clear_cookies()
    context.add_cookies(keep)
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    expect(page.locator("ul.messages")).to_contain_text("You were signed out before this form was sent")
    focused = page.evaluate(ACTIVE)
    alerts = page.get_by_role("alert").all_inner_texts()
    context.close()
    assert focused == "id_username"
    assert any("nothing was saved" in text for text in alerts), "the warning is not in an alert"


def test_the_sudo_prompts_secret_not_saved_warning_is_an_alert(live_server, chromium, world):
    """Sudo mode ran out while the rotate form was open: the prompt's warning that the typed secret was lost is a
    status region present at load (not announced)."""
    context, page, cookie = signed_in(chromium, live_server, world["alice"], sudo=True)
    page.goto(live_server.url + address_of(world, "/keys/{key}/rotate/"))
    store = SessionStore(cookie["value"])
    store.pop(SUDO_SESSION_KEY, None)
    store.save()
    page.locator("#id_secret").fill("sk-tokenbay-new-0123456789abcdef")
    page.locator("#id_secret").press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your password")
    expect(page.locator("ul.messages")).to_contain_text("The secret you typed was not saved")
    alerts = page.get_by_role("alert").all_inner_texts()
    context.close()
    assert any("was not saved" in text for text in alerts), "the warning is not in an alert"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_notification_channels_table_passes_axe(live_server, chromium, world, scheme):
    """The admin's Notifications table (now in its own scroll region) has an empty 5th header cell: axe
    empty-table-header; a screen reader announces the Remove/Test column with no name."""
    context, page, _ = signed_in(chromium, live_server, world["alice"], color_scheme=scheme)
    page.goto(live_server.url + "/teams/web/")
    page.add_script_tag(path=str(AXE))
    results = page.evaluate("axe.run('#notifications', {resultTypes: ['violations']})")
    context.close()
    assert [(v["id"], [n["target"] for n in v["nodes"]]) for v in results["violations"]] == []
