"""With DEBUG on, an exception deep inside any path that holds a key shows no trace of it.

Each test forces a failure where the key is in hand (building the probe's request, quoting the key
into a snippet, after a config was rendered) and reads what a person would: the answer (Django's
debug page, or the probe's result) and every log record, at every level.
"""

from __future__ import annotations

import logging
import secrets

import pytest
from django.test import Client
from rest_framework.test import APIClient

from gateways.services import assign_key, store_key
from portal.crypto import reveal
from portal.models import AccessToken
from tests.gateway_emulator import GatewayRules, running_emulator
from tests.portal.test_redaction import leaks

pytestmark = pytest.mark.django_db


@pytest.fixture
def canary():
    """A new key per test, so no other test's key (still in memory) can redact this one by chance.

    It holds the characters HTML and JSON escape, so an escaped copy would be missed by a plain search.
    """
    part = secrets.token_hex(12)
    return f'sk-{part[:6]}/{part[6:12]}+{part[12:18]}="{part[18:]}'


@pytest.fixture
def canary_key(settings, caplog, web, tokenbay, alice, bob, canary):
    settings.DEBUG = True
    caplog.set_level(logging.DEBUG)
    key = store_key(team=web, gateway=tokenbay, label="Canary", secret=canary, actor=alice)
    assignment = assign_key(key=key, username="bob", actor=alice)
    with running_emulator(GatewayRules(auth_scheme="bearer", keys={canary})) as gw:
        tokenbay.base_url = gw.base_url
        tokenbay.save()
        yield key, assignment


def api_as(user) -> APIClient:
    _, raw = AccessToken.issue(user, name="leak tests")
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def web_as(user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def assert_no_trace_of_the_key(response, caplog, canary: str) -> str:
    body = response.content.decode()
    assert leaks(body, canary) == [], body[:2000]
    logged = caplog.text + "\n".join(record.getMessage() for record in caplog.records)
    assert leaks(logged, canary) == [], logged[:2000]
    return body


def assert_a_debug_page_without_the_key(response, caplog, canary: str, error: str) -> None:
    assert response.status_code == 500
    body = assert_no_trace_of_the_key(response, caplog, canary)
    assert error in body  # it is Django's debug page, with the forced error named
    assert "********" in body  # something was starred out of it
    assert "Internal Server Error" in caplog.text


def fail_with_the_value_in_the_message(monkeypatch, module, name: str, canary: str) -> None:
    """Make module.name fail when it is handed the key, quoting it in its message as some libraries do."""
    original = getattr(module, name)

    def failing(*args, **kwargs):
        texts = [reveal(a) for a in args if isinstance(a, str) or hasattr(a, "reveal")]
        if canary in texts:
            raise ValueError(f"Illegal value in {name}: {texts!r}")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


def fail_plainly(monkeypatch, module, name: str) -> None:
    def failing(*args, **kwargs):
        raise RuntimeError(f"forced failure in {name}")

    monkeypatch.setattr(module, name, failing)


# --- Probes: through the API and the page's button --------------------------------------------------


def test_a_probe_failing_while_it_builds_the_auth_header_answers_a_verdict_without_the_key(
    canary_key, canary, alice, monkeypatch, caplog
):
    import gateways.probes.probe

    key, _ = canary_key
    fail_with_the_value_in_the_message(monkeypatch, gateways.probes.probe, "auth_headers", canary)
    response = api_as(alice).post(f"/api/v1/keys/{key.id}/probes/")
    assert response.status_code == 201
    assert response.json()["verdict"] == "refused"
    assert_no_trace_of_the_key(response, caplog, canary)
    assert "Illegal value in auth_headers" in caplog.text  # the failure was logged, the key starred

    page = web_as(alice).post(f"/keys/{key.id}/probe/", HTTP_ACCEPT="application/json")
    assert page.json()["verdict"] == "refused"
    assert_no_trace_of_the_key(page, caplog, canary)


@pytest.mark.parametrize("door", ["api", "web"])
def test_a_probe_failing_as_it_stores_its_result_shows_a_debug_page_without_the_key(
    canary_key, canary, alice, monkeypatch, caplog, door
):
    import gateways.probes.runner

    key, _ = canary_key
    fail_plainly(monkeypatch, gateways.probes.runner, "save_outcome")
    if door == "api":
        response = api_as(alice).post(f"/api/v1/keys/{key.id}/probes/")
    else:
        response = web_as(alice).post(f"/keys/{key.id}/probe/")
    assert_a_debug_page_without_the_key(response, caplog, canary, "forced failure in save_outcome")


# --- Config downloads and the set-up page -------------------------------------------------------------


def download(door: str, bob, assignment, accept: str = "*/*"):
    if door == "api":
        return api_as(bob).get(f"/api/v1/me/configs/{assignment.id}/bash", HTTP_ACCEPT=accept)
    return web_as(bob).get(f"/setup/{assignment.id}/bash", HTTP_ACCEPT=accept)


# Any type: the HTML debug page; JSON only: its plain-text version.
@pytest.mark.parametrize("accept", ["*/*", "application/json"])
@pytest.mark.parametrize("door", ["api", "web"])
def test_a_download_failing_while_it_quotes_the_key_shows_a_debug_page_without_it(
    canary_key, canary, bob, monkeypatch, caplog, door, accept
):
    import gateways.config.snippets

    _, assignment = canary_key
    fail_with_the_value_in_the_message(monkeypatch, gateways.config.snippets, "posix_quote", canary)
    response = download(door, bob, assignment, accept)
    assert_a_debug_page_without_the_key(response, caplog, canary, "Illegal value in posix_quote")


@pytest.mark.parametrize("door", ["api", "web"])
def test_a_download_failing_after_the_config_is_rendered_shows_a_debug_page_without_the_key(
    canary_key, canary, bob, monkeypatch, caplog, door
):
    import gateways.config.formats

    _, assignment = canary_key
    fail_plainly(monkeypatch, gateways.config.formats, "download_response")
    response = download(door, bob, assignment)
    assert_a_debug_page_without_the_key(response, caplog, canary, "forced failure in download_response")


# My set-up shows the key masked; Reveal (a form without JavaScript, JSON for the page's script) quotes it.
@pytest.mark.parametrize("accept", ["text/html", "application/json"])
def test_revealing_the_setup_failing_while_it_quotes_the_key_shows_a_debug_page_without_it(
    canary_key, canary, bob, monkeypatch, caplog, accept
):
    import gateways.config.snippets

    _, assignment = canary_key
    fail_with_the_value_in_the_message(monkeypatch, gateways.config.snippets, "posix_quote", canary)
    response = web_as(bob).post(f"/setup/{assignment.id}/reveal/", {"purpose": "reveal"}, HTTP_ACCEPT=accept)
    assert_a_debug_page_without_the_key(response, caplog, canary, "Illegal value in posix_quote")


def test_the_revealed_setup_page_failing_after_every_snippet_is_rendered_shows_a_debug_page_without_the_key(
    canary_key, canary, bob, monkeypatch, caplog
):
    import gateways.views

    _, assignment = canary_key
    fail_plainly(monkeypatch, gateways.views, "render")
    browser = web_as(bob)
    revealed = browser.post(f"/setup/{assignment.id}/reveal/", {"purpose": "reveal"})
    assert revealed.status_code == 303  # the snippets wait, encrypted, for My set-up to show them once
    response = browser.get(revealed["Location"])
    assert_a_debug_page_without_the_key(response, caplog, canary, "forced failure in render")


def test_the_key_itself_prints_as_stars(canary_key, canary):
    key, _ = canary_key
    secret = key.reveal_secret()
    assert canary not in repr(secret) + str(secret) + f"{secret}" + repr([secret]) + repr({"k": secret})
    assert secret == canary and secret.reveal() == canary
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(secret)
