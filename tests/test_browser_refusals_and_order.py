"""Pages a person meets after a refusal, and lists of keys, in Chromium: a refused export's links lead to the
rows the page shows, an error that concerns no field is said once, a refused device name is shown at its field
with what was typed, and the gateway page lists keys in reading order as the team page does."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from gateways.services import store_key
from portal.invitations import create_invitation
from portal.models import Role
from tests.test_browser_a11y import open_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_the_refused_export_page_links_to_the_rows_it_shows(bob_assignment, alice, live_server, chromium):
    context, page = open_page(chromium, live_server, alice)
    answer = page.goto(f"{live_server.url}/connections/?state=Failing&export=csv")
    assert answer.status == 400
    expect(page.get_by_role("alert")).to_contain_text("Nothing was exported")
    # The page shows every state ("all") and the default sort: its CSV link must export that, once.
    expect(page.get_by_label("State")).to_have_value("")
    csv_href = page.get_by_role("link", name="CSV").get_attribute("href")
    query = parse_qs(urlsplit(csv_href).query)
    assert query.get("export") == ["csv"], csv_href  # export=csv appears once
    assert "state" not in query or query["state"] == [""], csv_href  # not the filter the page set aside
    # A column header (sort by developer) shows the page sorted, not a second refusal.
    page.get_by_role("link", name="Developer", exact=True).click()
    page.wait_for_load_state()
    assert "Nothing was exported" not in page.locator("main").inner_text(), page.url
    # And the CSV link, followed, downloads the list the page showed.
    with page.expect_download() as download:
        page.goto(f"{live_server.url}/connections/?state=Failing&export=csv")
        page.get_by_role("link", name="CSV").click()
    assert download.value.suggested_filename == "connections.csv"
    context.close()


LABELS = ["Zeta", "\u00c9mile laptop", "alpha", "beta"]
READING = ["alpha", "beta", "\u00c9mile laptop", "Zeta"]


@pytest.fixture
def keys(web, tokenbay, alice):
    for n, label in enumerate(LABELS):
        store_key(team=web, gateway=tokenbay, label=label, secret=f"sk-order-{n}-0123456789abcdef", actor=alice)


def test_the_team_page_and_the_gateway_page_list_keys_in_reading_order(keys, alice, live_server, chromium):
    context, page = open_page(chromium, live_server, alice)
    page.goto(f"{live_server.url}/teams/web/")
    on_team_page = [t for t in page.locator("main table a[href^='/keys/']").all_inner_texts() if t in LABELS]
    assert on_team_page == READING
    for _ in range(2):  # and after a reload
        page.goto(f"{live_server.url}/gateways/tokenbay/")
        on_gateway_page = page.locator("[role=region][aria-label^='Keys on'] tbody a").all_inner_texts()
        assert on_gateway_page == READING, on_gateway_page
    context.close()


def test_an_address_with_an_account_is_said_once(alice, web, charlie, live_server, chromium):
    _, token = create_invitation(team=web, email="charlie@example.com", role=Role.MEMBER, actor=alice)
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(5000)
    page.goto(f"{live_server.url}/invitations/{token}/")
    page.locator("[name=username]").fill("charlie2")
    page.locator("[name=password1]").fill("a-long-fresh-password-42")
    page.locator("[name=password2]").fill("a-long-fresh-password-42")
    page.get_by_role("button", name="Create account and join").click()
    page.wait_for_load_state()
    alerts = [t for t in page.get_by_role("alert").all_inner_texts() if "exists already" in t]
    assert len(alerts) == 1, alerts
    context.close()


@pytest.mark.parametrize("name", ["work \u202elaptop", "\u200b\u200d"], ids=["override", "blank"])
def test_a_refused_device_name_is_shown_at_its_field_and_keeps_the_typing(
    bob_assignment, bob, live_server, chromium, name
):
    context, page = open_page(chromium, live_server, bob)
    page.goto(f"{live_server.url}/setup/")
    field = page.get_by_label("Device name")
    field.fill(name)
    page.get_by_label("System").select_option("windows")
    field.press("Enter")
    page.wait_for_load_state()
    expect(page.get_by_role("alert").first).to_be_visible()
    field = page.get_by_label("Device name")
    # As the other forms: the field is marked invalid, described by its error, focused, and keeps what was typed.
    assert field.get_attribute("aria-invalid") == "true"
    described = field.get_attribute("aria-describedby") or ""
    assert described and page.locator(f"#{described.split()[0]}").inner_text().strip()
    expect(field).to_be_focused()
    expect(field).to_have_value(name.strip() or name)
    expect(page.get_by_label("System")).to_have_value("windows")
    context.close()
