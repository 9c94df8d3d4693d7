"""Staff editing the gateway catalogue: no change is lost without a word, none leaves no trace,
and the gateway page does not show a probe of the old address as the latest."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from gateways import services
from gateways.models import Gateway, GatewayKey
from gateways.probes.runner import probe_key
from portal.models import AuditEvent
from tests.admin_forms import form_data
from tests.conftest import TOKAIFY_SECRET, make_user
from tests.gateway_emulator import GatewayRules, running_emulator

pytestmark = pytest.mark.django_db

STALE = "Another change was saved since you opened this page"


def page_data(page) -> dict:
    """The gateway form as a browser posts it back unchanged (unchecked boxes are not sent)."""
    form = page.context["form"]
    data = {name: form[name].value() for name in form.fields if not form.fields[name].disabled}
    return {
        name: ("on" if value is True else "" if value is None else value)
        for name, value in data.items()
        if value is not False
    }


def gateway_updates(slug: str) -> list[dict]:
    events = AuditEvent.objects.filter(action="gateway.updated", gateway_slug=slug).order_by("id")
    return [event.details["changed"] for event in events]


def test_a_gateway_page_opened_before_anothers_change_refuses_the_save_and_says_why(api, staff, tokenbay):
    other = make_user("staff2", staff=True)
    browser = Client()
    browser.force_login(staff)
    data = page_data(browser.get("/gateways/tokenbay/edit/"))
    moved = api(other).patch("/api/v1/gateways/tokenbay/", {"base_url": "https://eu.tokenbay.com"}, format="json")
    assert moved.status_code == 200

    data["notes"] = "EU customers: see the EU console."
    response = browser.post("/gateways/tokenbay/edit/", data)
    assert response.status_code == 200
    text = response.content.decode()
    assert STALE in text and "staff2" in text and "base_url" in text
    tokenbay.refresh_from_db()
    assert tokenbay.base_url == "https://eu.tokenbay.com"
    assert tokenbay.notes != "EU customers: see the EU console."

    # Reloaded, the page shows the new address, and the note is saved without moving it back.
    data = page_data(browser.get("/gateways/tokenbay/edit/"))
    assert data["base_url"] == "https://eu.tokenbay.com"
    data["notes"] = "EU customers: see the EU console."
    assert browser.post("/gateways/tokenbay/edit/", data).status_code == 302
    tokenbay.refresh_from_db()
    assert (tokenbay.base_url, tokenbay.notes) == ("https://eu.tokenbay.com", "EU customers: see the EU console.")
    assert [set(changed) for changed in gateway_updates("tokenbay")] == [{"base_url"}, {"notes"}]


def test_an_admin_change_form_opened_before_anothers_change_refuses_the_save_and_says_why(root_client, api, tokenbay):
    url = f"/admin/gateways/gateway/{tokenbay.pk}/change/"
    data = form_data(root_client.get(url))
    other = make_user("staff2", staff=True)
    moved = api(other).patch("/api/v1/gateways/tokenbay/", {"base_url": "https://eu.tokenbay.com"}, format="json")
    assert moved.status_code == 200

    data["notes"] = "EU customers: see the EU console."
    response = root_client.post(url, data)
    assert response.status_code == 200
    assert STALE in response.content.decode()
    tokenbay.refresh_from_db()
    assert tokenbay.base_url == "https://eu.tokenbay.com"
    assert tokenbay.notes != "EU customers: see the EU console."

    data = form_data(root_client.get(url))
    data["notes"] = "EU customers: see the EU console."
    assert root_client.post(url, data).status_code == 302
    tokenbay.refresh_from_db()
    assert (tokenbay.base_url, tokenbay.notes) == ("https://eu.tokenbay.com", "EU customers: see the EU console.")
    assert [set(changed) for changed in gateway_updates("tokenbay")] == [{"base_url"}, {"notes"}]


def test_two_patches_that_read_the_gateway_before_either_saved_both_stay_and_the_trail_matches(api, staff, tokenbay):
    """The API view loads the gateway before the service's transaction: the service must decide on the row."""
    other = make_user("staff2", staff=True)
    read_by_first = Gateway.objects.get(slug="tokenbay")
    read_by_second = Gateway.objects.get(slug="tokenbay")
    services.update_gateway(gateway=read_by_first, changes={"base_url": "https://eu.tokenbay.com"}, actor=staff)
    services.update_gateway(gateway=read_by_second, changes={"timeout_ms": 900000}, actor=other)

    shown = api(staff).get("/api/v1/gateways/tokenbay/").json()
    assert (shown["base_url"], shown["timeout_ms"]) == ("https://eu.tokenbay.com", 900000)
    # The object the second caller holds (and the API answers with) is the row as saved, not its stale read.
    assert (read_by_second.base_url, read_by_second.timeout_ms) == ("https://eu.tokenbay.com", 900000)
    assert gateway_updates("tokenbay") == [
        {"base_url": {"from": "https://api.tokenbay.com", "to": "https://eu.tokenbay.com"}},
        {"timeout_ms": {"from": tokenbay.timeout_ms, "to": 900000}},
    ]


def test_a_patch_keeps_what_a_probe_saw_of_the_credential_headers_since_the_gateway_was_read(staff, tokenbay):
    seen = {"x_api_key": True, "bearer": False, "seen_at": "2026-11-23T07:00:00+00:00"}
    read_before = Gateway.objects.get(slug="tokenbay")
    Gateway.objects.filter(slug="tokenbay").update(credential_headers=seen)  # as the probe runner writes it
    services.update_gateway(gateway=read_before, changes={"notes": "Ask #llm for a key."}, actor=staff)
    tokenbay.refresh_from_db()
    assert (tokenbay.notes, tokenbay.credential_headers) == ("Ask #llm for a key.", seen)


def test_a_gateway_is_not_deleted_in_the_admin(root_client, api, staff):
    created = api(staff).post(
        "/api/v1/gateways/", {"slug": "acme", "name": "Acme", "base_url": "https://api.acme.example"}, format="json"
    )
    assert created.status_code == 201
    gateway = Gateway.objects.get(slug="acme")
    assert root_client.post(f"/admin/gateways/gateway/{gateway.pk}/delete/", {"post": "yes"}).status_code == 403
    listing = root_client.post(
        "/admin/gateways/gateway/", {"action": "delete_selected", "_selected_action": [gateway.pk], "post": "yes"}
    )
    assert listing.status_code in (200, 302)
    assert Gateway.objects.filter(slug="acme").exists()
    assert "delete_selected" not in root_client.get("/admin/gateways/gateway/").content.decode()


def headline(client) -> str:
    page = client.get("/gateways/tokaify/").content.decode()
    return re.search(r"<h1>.*?</h1>", page, re.S).group(0)


def test_the_gateway_headline_leaves_out_a_probe_of_the_old_base_url(alice, tokaify_key, staff):
    browser = Client()
    browser.force_login(alice)
    with running_emulator(GatewayRules(keys={TOKAIFY_SECRET})) as old:
        Gateway.objects.filter(slug="tokaify").update(base_url=old.base_url)
        key = GatewayKey.objects.select_related("gateway", "team").get(pk=tokaify_key.pk)
        assert probe_key(key, trigger="web", user=alice).verdict == "ok"
        assert 'data-verdict="ok"' in headline(browser)

        services.update_gateway(
            gateway=Gateway.objects.get(slug="tokaify"), changes={"base_url": "https://eu.tokaify.example"}, actor=staff
        )
        page = browser.get("/gateways/tokaify/").content.decode()
        assert "not probed" in page.split("<tbody>")[1]  # the key table
        assert "latest probe" not in headline(browser), headline(browser)

        # Probed again at the new address (the emulator stands in for it): the headline shows that probe.
        Gateway.objects.filter(slug="tokaify").update(base_url=old.base_url)
        key = GatewayKey.objects.select_related("gateway", "team").get(pk=tokaify_key.pk)
        assert probe_key(key, trigger="web", user=alice).verdict == "ok"
        assert 'data-verdict="ok"' in headline(browser)
