"""Fixtures shared by the account tests."""

from __future__ import annotations

import pytest

from portal import oidc
from tests.portal.sso_answers import CLIENT_ID, ISSUER, SIGNING_KEY, Provider


@pytest.fixture
def provider(settings, monkeypatch):
    settings.OIDC_ISSUER = ISSUER
    settings.OIDC_CLIENT_ID, settings.OIDC_CLIENT_SECRET = CLIENT_ID, "tests-only-client-secret"
    idp = Provider()
    document = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/auth",
        "token_endpoint": f"{ISSUER}/token",
        "jwks_uri": f"{ISSUER}/jwks",
    }
    monkeypatch.setattr(oidc, "discovery", lambda: document)
    monkeypatch.setattr(
        oidc.SSOBackend, "get_token", lambda self, payload: {"id_token": idp.id_tokens[payload["code"]]}
    )
    monkeypatch.setattr(oidc.SSOBackend, "retrieve_matching_jwk", lambda self, token: SIGNING_KEY.public_key())
    return idp
