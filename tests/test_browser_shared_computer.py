"""A shared computer: after signing out, the next person at the keyboard presses Back, or finds a tab left open.

Chromium's back/forward cache restores a page whole, the values typed into its fields included, unless it was
served `Cache-Control: no-store`; Playwright turns that cache off, so these tests launch Chromium as a person's
browser has it. A tab left open after signing out in another asks to sign in again rather than failing to read
the sign-in page as data.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import TOKENBAY_SECRET
from tests.test_browser import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def real_chromium(monkeypatch):
    """The suite's Chromium with its back/forward cache on."""
    from django.db import connections
    from playwright.sync_api import sync_playwright

    from tests.chromium import launch

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = launch(p, back_forward_cache=True)
        yield browser
        browser.close()
        connections.close_all()


NEW_SECRET = "sk-tokenbay-pasted-on-the-meeting-room-pc-0123"
NEW_PASSWORD = "a-much-longer-new-pw-123"
FIELDS = "() => [...document.querySelectorAll('input, textarea')].map(e => e.value)"


def _sign_out(page):
    page.locator("form.signout button").first.click()
    page.wait_for_url(lambda url: "/login/" in url)


def _what_back_shows(page, steps: int) -> list[tuple[str, list[str]]]:
    """Press Back `steps` times after sign-out; each page's address and the values in its fields."""
    seen = []
    for _ in range(steps):
        page.evaluate("history.back()")
        page.wait_for_timeout(700)
        seen.append((page.url, page.evaluate(FIELDS)))
    return seen


def _leaked(seen, secret: str) -> list[str]:
    return [url for url, values in seen if any(secret in value for value in values)]


def _confirm_password(page, live_server, password: str):
    page.get_by_label("Password or authenticator code").fill(password)
    page.get_by_role("button", name="Confirm").click()


def test_back_after_sign_out_gives_no_new_password_typed_at_password_change(live_server, alice, real_chromium):
    page = real_chromium.new_context().new_page()
    sign_in(page, live_server, "alice", "pass-alice")
    page.goto(f"{live_server.url}/password_change/")
    page.locator("input[name=old_password]").fill("pass-alice")
    page.locator("input[name=new_password1]").fill(NEW_PASSWORD)
    page.locator("input[name=new_password2]").fill(NEW_PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(lambda url: "/password_change/done/" in url)
    _sign_out(page)

    seen = _what_back_shows(page, 2)
    assert not _leaked(seen, NEW_PASSWORD), f"alice's new password is in the fields of {_leaked(seen, NEW_PASSWORD)}"
    assert not _leaked(seen, "pass-alice")


def test_back_after_sign_out_gives_no_password_typed_at_the_sudo_prompt(live_server, alice, real_chromium):
    page = real_chromium.new_context().new_page()
    sign_in(page, live_server, "alice", "pass-alice")
    page.goto(f"{live_server.url}/sudo/?next=/tokens/")
    _confirm_password(page, live_server, "pass-alice")
    page.wait_for_url(lambda url: url.endswith("/tokens/"))
    _sign_out(page)

    seen = _what_back_shows(page, 2)
    assert not _leaked(seen, "pass-alice"), f"alice's password is in the fields of {_leaked(seen, 'pass-alice')}"


def test_back_after_sign_out_gives_no_secret_pasted_to_rotate_a_key(live_server, alice, tokenbay_key, real_chromium):
    page = real_chromium.new_context().new_page()
    sign_in(page, live_server, "alice", "pass-alice")
    page.goto(f"{live_server.url}/keys/{tokenbay_key.id}/rotate/")
    page.wait_for_url(lambda url: "/sudo/" in url)
    _confirm_password(page, live_server, "pass-alice")
    page.wait_for_url(lambda url: url.endswith("/rotate/"))
    page.locator("input[name=secret]").fill(NEW_SECRET)
    page.get_by_role("button", name="Rotate").click()
    page.wait_for_url(lambda url: url.endswith(f"/keys/{tokenbay_key.id}/"))
    tokenbay_key.refresh_from_db()
    assert tokenbay_key.masked.endswith(NEW_SECRET[-4:])
    _sign_out(page)

    seen = _what_back_shows(page, 2)
    assert not _leaked(seen, NEW_SECRET), f"the new gateway key is in the fields of {_leaked(seen, NEW_SECRET)}"


def test_back_after_sign_out_gives_no_secret_pasted_to_add_a_key(live_server, alice, tokenbay, real_chromium):
    page = real_chromium.new_context().new_page()
    sign_in(page, live_server, "alice", "pass-alice")
    page.goto(f"{live_server.url}/teams/web/keys/new/?gateway=tokenbay")
    page.get_by_label("Label").fill("pairing station")
    page.locator("input[name=secret]").fill(NEW_SECRET)
    page.get_by_role("button", name="Store key").click()
    page.wait_for_url(lambda url: "/keys/" in url and "/new/" not in url)
    _sign_out(page)

    seen = _what_back_shows(page, 2)
    assert not _leaked(seen, NEW_SECRET), f"the new gateway key is in the fields of {_leaked(seen, NEW_SECRET)}"


def _operation(page, method: str, path: str):
    block = page.locator(f".opblock-{method.lower()}").filter(has=page.get_by_text(path, exact=True)).first
    block.locator(".opblock-summary").first.click()
    block.get_by_role("button", name="Try it out").click()
    return block


def _back_to_the_docs_after_sign_out(page, live_server):
    page.goto(f"{live_server.url}/devices/")
    page.locator("form.signout button").first.click()
    page.wait_for_url(lambda url: "/login/" in url)
    for _ in range(2):
        page.evaluate("history.back()")
        page.wait_for_timeout(800)


def test_back_after_sign_out_gives_no_configuration_tried_in_the_api_docs(live_server, bob_assignment, real_chromium):
    page = real_chromium.new_context(accept_downloads=True).new_page()
    sign_in(page, live_server, "bob", "pass-bob")
    page.goto(f"{live_server.url}/api/v1/docs/")
    page.wait_for_load_state("networkidle")
    block = _operation(page, "GET", "/api/v1/me/configs/{assignment_id}/{format_name}")
    block.locator("input[placeholder=assignment_id]").fill(str(bob_assignment.id))
    block.locator("input[placeholder=format_name]").fill("bash")
    block.get_by_role("button", name="Execute").click()
    block.get_by_role("link", name="Download file").wait_for()

    _back_to_the_docs_after_sign_out(page, live_server)
    link = page.get_by_role("link", name="Download file")
    got_back = ""
    if link.count():
        with page.expect_download() as download:
            link.first.click()
        got_back = Path(download.value.path()).read_text()
    assert TOKENBAY_SECRET not in got_back, f"signed out, {page.url} still hands out bob's key"


def test_back_after_sign_out_gives_no_install_link_made_in_the_api_docs(live_server, bob_assignment, real_chromium):
    page = real_chromium.new_context().new_page()
    sign_in(page, live_server, "bob", "pass-bob")
    page.goto(f"{live_server.url}/api/v1/docs/")
    page.wait_for_load_state("networkidle")
    block = _operation(page, "POST", "/api/v1/me/configs/{assignment_id}/devices/")
    block.locator("input[placeholder=assignment_id]").fill(str(bob_assignment.id))
    block.locator("textarea.body-param__text").fill(json.dumps({"name": "pairing station", "platform": "linux"}))
    block.get_by_role("button", name="Execute").click()
    # The answer's link, not the schema's field name, which the docs show before the answer arrives.
    # (A locator, not wait_for_function: the page's Content-Security-Policy forbids evaluating a string.)
    expect(page.locator("body")).to_contain_text("/api/v1/device/install/", timeout=30_000)

    _back_to_the_docs_after_sign_out(page, live_server)
    shown = re.search(r"https?://[^\s\"'<]+/api/v1/device/install/[\w-]+", page.content())
    works = ""
    if shown:  # what the next person at the keyboard can do with it: install a device of bob's, and fetch his key
        with urllib.request.urlopen(shown.group(0)) as answer:
            works = f" (it answers {answer.status} with a device token: {'pkf_' in answer.read().decode()})"
    assert shown is None, f"signed out, {page.url} still shows bob's unused install link{works}"


def _sign_out_in_another_tab(context, live_server):
    other = context.new_page()
    other.goto(f"{live_server.url}/setup/")
    other.locator("form.signout button").first.click()
    other.wait_for_url(lambda url: "/login/" in url)


def test_reveal_in_a_tab_left_open_after_sign_out_says_to_sign_in(live_server, bob_assignment, chromium):
    context = chromium.new_context()
    page = context.new_page()
    sign_in(page, live_server, "bob", "pass-bob")
    page.goto(f"{live_server.url}/setup/")
    _sign_out_in_another_tab(context, live_server)

    page.get_by_role("button", name="Reveal key").first.click()
    note = page.locator("[data-reveal-note]").first
    expect(note).not_to_have_text(re.compile(r"^Your key is masked"))
    assert TOKENBAY_SECRET not in page.content()
    said = note.inner_text()
    assert "sign in" in said.lower() or "/login/" in page.url, f"the tab says: {said!r}"


def test_probe_in_a_tab_left_open_after_sign_out_says_to_sign_in(live_server, alice, tokenbay_key, chromium):
    context = chromium.new_context()
    page = context.new_page()
    sign_in(page, live_server, "alice", "pass-alice")
    page.goto(f"{live_server.url}/keys/{tokenbay_key.id}/")
    _sign_out_in_another_tab(context, live_server)

    page.get_by_role("button", name="Probe now").click()
    out = page.locator(f"#probe-result-{tokenbay_key.id}")
    expect(out).not_to_have_text(re.compile(r"Probing"), timeout=10000)
    said = out.inner_text()
    assert "sign in" in said.lower() or "/login/" in page.url, f"the tab says: {said!r}"
