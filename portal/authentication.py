"""`Authorization: Bearer <personal access token>` for the REST API."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from portal import stamps
from portal.models import AccessToken, TokenScope, token_scope
from portal.times import written_time

# A refusal may be piped into sh (`curl … /install.sh | sh`), so its sentences hold no character a
# shell acts on inside the JSON's double quotes: no backtick, $, backslash or !.
INVALID = "The access token is invalid, expired or revoked. Make a new one on the Access tokens page: {url}"
# Said only to whoever sent the token itself (its digest matched): it proves nothing they did not hold.
REVOKED = "This access token was revoked on {when}; make a new one at {url}."
EXPIRED = "This access token expired on {when}; make a new one at {url}."
# A device token (TokenScope.KEY_FETCH) fetches its device's key and does nothing else.
WRONG_SCOPE = (
    "This is a device token: it can only fetch its device's key (GET /api/v1/device/key). "
    "Use a personal access token for the API."
)


def refusal(token: AccessToken | None, url: str) -> str:
    """Why a token is refused: what ran out, and when, for a genuine token; nothing about existence otherwise.

    A deactivated account's token gets the general sentence: a new token would not help.
    """
    if token is None or not token.user.is_active:
        return INVALID.format(url=url)
    if token.revoked_at:
        return REVOKED.format(when=written_time(token.revoked_at), url=url)
    if token.expires_at:
        return EXPIRED.format(when=written_time(token.expires_at), url=url)
    return INVALID.format(url=url)


class AccessTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        raw = raw.strip()
        if not raw:
            raise exceptions.AuthenticationFailed("The Authorization header has no token after Bearer.")
        if token_scope(raw) == TokenScope.KEY_FETCH:
            raise exceptions.AuthenticationFailed(WRONG_SCOPE)
        token = AccessToken.objects.matching(raw)
        if token is None or not token.is_live or not token.user.is_active:
            raise exceptions.AuthenticationFailed(refusal(token, request.build_absolute_uri(reverse("tokens"))))
        stamps.touch(token, "last_used_at")
        return token.user, token

    def authenticate_header(self, request) -> str:
        return self.keyword


class AccessTokenScheme(OpenApiAuthenticationExtension):
    """Describes the token in the OpenAPI schema."""

    target_class = AccessTokenAuthentication
    name = "accessToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal access token from the portal's Access tokens page (/tokens/).",
        }
