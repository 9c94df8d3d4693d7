"""An identity provider's error answer speaks on the portal's page only for a sign-in this browser started:
anyone can build an /oidc/callback/?error=... link and mail it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from portal.models import Action, AuditEvent
from tests.portal.sso_answers import start

pytestmark = pytest.mark.django_db

SPOOF = "Your account is locked. To unlock it, sign in at https://portal-unlock.example.net within 24 hours"


@pytest.mark.parametrize("state", ["", "made-up-state"])
def test_an_error_link_for_no_sign_in_started_here_shows_and_records_none_of_its_text(provider, state):
    page = Client().get("/oidc/callback/", {"error": "access_denied", "error_description": SPOOF, "state": state})
    assert page.status_code in (400, 403)
    text = page.content.decode()
    assert "portal-unlock.example.net" not in text
    assert "does not belong to a sign-in started in this browser" in text
    assert not any("portal-unlock.example.net" in str(e.details) for e in AuditEvent.objects.all())


def test_the_providers_error_for_a_sign_in_started_here_is_shown_and_recorded(provider):
    browser = Client()
    state = parse_qs(urlsplit(start(browser)).query)["state"][0]
    page = browser.get(
        "/oidc/callback/", {"error": "access_denied", "error_description": "The user cancelled.", "state": state}
    )
    assert page.status_code == 403
    assert "The identity provider did not sign you in: The user cancelled." in page.content.decode()
    refused = AuditEvent.objects.filter(action=Action.SIGN_IN_FAILED).last()
    assert refused is not None and "The user cancelled." in str(refused.details)
