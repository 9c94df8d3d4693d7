"""The key page's settings form and the team's SSO-groups form in real Chromium: keyboard only, with JavaScript
on and off. A save changes only what was changed on the page, says so when nothing was, keeps a refused
form's typing, and shows every stored value as it is (the betas override too)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from gateways.models import GatewayKey
from gateways.services import update_key_settings
from portal.models import Team
from tests.test_browser_a11y import open_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def key(tokaify_key, alice):
    expiry = (timezone.now() + dt.timedelta(days=30)).replace(second=17, microsecond=0)
    return update_key_settings(
        key=tokaify_key,
        changes={
            "expires_at": expiry,
            "custom_headers": {"X-Team": "web", "X-Other": 'a "quoted" <b>&amp; value'},
            "timeout_ms": 60000,
            "model": "claude-x",
        },
        actor=alice,
    )


def snapshot(key_id):
    k = GatewayKey.objects.get(pk=key_id)
    return {
        n: getattr(k, n)
        for n in (
            "label",
            "expires_at",
            "custom_headers",
            "timeout_ms",
            "disable_experimental_betas",
            "model",
            "opus_model",
        )
    }


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_unchanged_save_says_nothing_changed(key, alice, live_server, chromium, js):
    before = snapshot(key.id)
    context, page = open_page(chromium, live_server, alice, js=js)
    page.goto(f"{live_server.url}/keys/{key.id}/")
    page.get_by_role("button", name="Save settings").focus()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_contain_text("Nothing was changed")
    assert snapshot(key.id) == before
    context.close()


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_two_tabs_each_keep_the_others_change(key, alice, live_server, chromium, js):
    context, a = open_page(chromium, live_server, alice, js=js)
    b = context.new_page()
    a.goto(f"{live_server.url}/keys/{key.id}/")
    b.goto(f"{live_server.url}/keys/{key.id}/")
    b.get_by_label("Label").fill("Renamed in B")
    b.get_by_label("Label").press("Enter")
    b.wait_for_load_state()
    expect(b.locator("main")).to_contain_text("Key settings saved")
    a.locator("summary", has_text="Model overrides").focus()
    a.keyboard.press("Enter")
    a.get_by_label("Opus model override").fill("opus-a")
    a.get_by_label("Opus model override").press("Enter")
    a.wait_for_load_state()
    expect(a.locator("main")).to_contain_text("Key settings saved")
    after = snapshot(key.id)
    assert after["label"] == "Renamed in B"
    assert after["opus_model"] == "opus-a"
    context.close()


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_a_refused_setting_keeps_what_was_typed(key, alice, live_server, chromium, js):
    context, page = open_page(chromium, live_server, alice, js=js)
    page.goto(f"{live_server.url}/keys/{key.id}/")
    page.get_by_label("Label").fill("My new label")
    page.locator("summary", has_text="Model overrides").focus()
    page.keyboard.press("Enter")
    page.get_by_label("Custom headers (JSON object)").fill('{"X-Broken": ')
    page.get_by_role("button", name="Save settings").focus()
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.locator("main")).to_contain_text("JSON")
    # What the person typed is still in the form, beside the sentence saying what to fix.
    expect(page.get_by_label("Label")).to_have_value("My new label")
    expect(page.get_by_label("Custom headers (JSON object)")).to_have_value('{"X-Broken": ')
    context.close()


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_the_betas_override_is_shown_and_survives_a_label_change(key, alice, live_server, chromium, js):
    update_key_settings(key=key, changes={"disable_experimental_betas": True}, actor=alice)
    context, page = open_page(chromium, live_server, alice, js=js)
    page.goto(f"{live_server.url}/keys/{key.id}/")
    # The key's override is Yes: its form must show Yes, not "Gateway default".
    select = page.get_by_label("Disable experimental betas")
    shown = select.evaluate("s => s.options[s.selectedIndex].text")
    page.get_by_label("Label").fill("Renamed")
    page.get_by_label("Label").press("Enter")
    expect(page.locator("main")).to_contain_text("Key settings saved")
    assert GatewayKey.objects.get(pk=key.id).disable_experimental_betas is True, "renaming cleared the override"
    assert shown == "Yes"
    context.close()


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_an_unchanged_save_keeps_the_betas_override(key, alice, live_server, chromium, js):
    update_key_settings(key=key, changes={"disable_experimental_betas": False}, actor=alice)
    context, page = open_page(chromium, live_server, alice, js=js)
    page.goto(f"{live_server.url}/keys/{key.id}/")
    page.get_by_role("button", name="Save settings").focus()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_contain_text("Nothing was changed")
    assert GatewayKey.objects.get(pk=key.id).disable_experimental_betas is False
    context.close()


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_an_unchanged_groups_save_says_nothing_changed(alice, live_server, chromium, js):
    Team.objects.filter(slug="web").update(sso_member_group="web-devs")
    context, page = open_page(chromium, live_server, alice, js=js)
    page.goto(f"{live_server.url}/teams/web/")
    page.get_by_role("button", name="Save groups").focus()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_contain_text("Nothing was changed")
    expect(page.locator("main")).not_to_contain_text("SSO groups saved")
    context.close()
