"""The identity provider's side of a sign-in with SSO, played by signing ID tokens with a key the test holds.

The portal's real start and callback views run; it still checks the signature, issuer, audience, nonce and expiry.
The `provider` fixture (tests/portal/conftest.py) points the portal at it.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model

ISSUER = "https://idp.example.com"
CLIENT_ID = "gateway-portal"
SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Provider:
    """The identity provider's answers: a code per sign-in, standing for an ID token signed with SIGNING_KEY."""

    def __init__(self):
        self.id_tokens: dict[str, str] = {}

    def answer(self, authorization_url: str, *, sub: str, email: str, **claims) -> str:
        """The code the provider sends back for the sign-in started at `authorization_url`."""
        asked = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": asked["nonce"],
            "sub": sub,
            "email": email,
            "email_verified": True,
            "auth_time": now,
            **claims,
        }
        code = f"code-{len(self.id_tokens)}"
        self.id_tokens[code] = jwt.encode(
            {k: v for k, v in payload.items() if v is not None}, SIGNING_KEY, algorithm="RS256"
        )
        return code


def start(client, **query) -> str:
    """Press a "Sign in with SSO" link; returns where the portal sends the browser (the provider's page)."""
    response = client.get("/oidc/authenticate/" + (f"?{urlencode(query)}" if query else ""))
    assert response.status_code == 302
    return response["Location"]


def deliver(client, authorization_url: str, code: str):
    """Open the provider's answer to the sign-in started at `authorization_url`."""
    state = parse_qs(urlsplit(authorization_url).query)["state"][0]
    return client.get("/oidc/callback/", {"code": code, "state": state})


def sso_sign_in(client, provider, *, sub: str, email: str, **query):
    url = start(client, **query)
    return deliver(client, url, provider.answer(url, sub=sub, email=email))


def signed_in(client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    return get_user_model().objects.get(pk=user_id).username if user_id else None
