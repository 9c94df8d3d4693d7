"""Single sign-on with OpenID Connect: authorization code with PKCE, configured by OIDC_ISSUER and its client.

mozilla-django-oidc runs the protocol (state, nonce, PKCE, code exchange, JWKS). This module adds what it leaves
out: endpoints from the issuer's discovery document, the ID token's issuer and audience checks, accounts matched
by subject or verified e-mail (never by a display name), invitations, and team memberships that follow the
groups claim at every sign-in. Every refusal is a page with a sentence (`SSOError`), never a 500.

What a sign-in was started for (to confirm it is you for sudo mode, or to join the team of the invitation page
it was started from) is kept with that sign-in's `state`, never loose in the session: an answer only ever grants
what its own start asked for, so an earlier or unrelated answer delivered later cannot turn sudo mode on or
accept an invitation the browser merely opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from urllib.parse import parse_qs, parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx
import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.encoding import smart_str
from django.views.generic import View
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from portal import audit, mail
from portal.email_confirmation import email_unconfirmed
from portal.errors import RuleError
from portal.http import public_url
from portal.invitations import (
    INVITATION_SESSION_KEY,
    accept_invitation,
    create_account,
    email_spellings,
    known_addresses,
    left_since_invited,
    normalize_email,
    same_address,
    unique_username,
    withdraw_for_address,
    withdraw_one,
)
from portal.models import Action, ExternalIdentity, Invitation, Membership, Role, Team
from portal.services import end_membership, refuse_last_admin
from portal.signals import member_added
from portal.sudo import enter_sudo_mode

logger = logging.getLogger(__name__)

DISCOVERY_SECONDS = 3600
# The provider's key set lives as long as discovery (or its Cache-Control max-age, when shorter); a token for a
# key not in it (rotated in since) has it fetched again, but at most once in this many seconds.
KEYS_SECONDS = DISCOVERY_SECONDS
KEYS_AGAIN_SECONDS = 60
TIMEOUT = 10  # mozilla-django-oidc's own requests; the portal's are bounded whole by OIDC_DEADLINE_SECONDS
# The provider's discovery document, keys, token and userinfo answers are a few KiB; more is not read.
ANSWER_MAX_BYTES = 1024 * 1024
# The key type each signing algorithm needs, to pick the one key for an ID token that names none (no kid).
KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
# Asymmetric algorithms only: an ID token signed with the client secret (HS256) or unsigned is refused.
SIGNING_ALGORITHMS = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
# Where a sign-in's start is kept: inside mozilla-django-oidc's entry for its state (which it drops once answered).
START_KEY = "portal_start"
# The newest sign-in this browser had pending when an answer to none of its sign-ins was last recorded.
UNMATCHED_RECORDED_KEY = "oidc_unmatched_recorded_for"
# How much earlier than the sudo start the provider's clock may put the new sign-in (auth_time).
AUTH_TIME_SKEW_SECONDS = 30
_discovered: dict[str, tuple[float, dict]] = {}
KEYS_UNUSABLE = "The ID token's signature cannot be checked against the provider's keys"
# What no database column holds: a NUL (PostgreSQL refuses it) and half a UTF-16 surrogate pair (no driver sends it).
UNSTORABLE_CHARACTER = re.compile(r"[\x00\ud800-\udfff]")
OTHER_AUDIENCE = "The ID token was made for another application, not this portal."


class SSOError(Exception):
    """A sign-in with SSO is refused; the message says why and what to do."""

    def __init__(self, message: str, *, status: int = 400, target: str = ""):
        super().__init__(message)
        self.status = status
        self.target = target  # the account concerned, for the audit row (never shown to the person)


class NoFittingKey(SSOError):
    """None of the provider's keys (as cached) fits the ID token: perhaps it rotated them since."""


@dataclass
class SignInStart:
    """What one sign-in was started for, kept with its state; the ID token's auth_time is added at the answer."""

    started_at: float
    sudo_for: int | None = None  # the signed-in account that asked to confirm it is them (sudo mode)
    invitation: str = ""  # the token of the invitation whose page started this sign-in
    auth_time: float | None = None


def sudo_refusal(start: SignInStart, account_pk: int | None) -> str | None:
    """Why the answer to a sudo start (`start.sudo_for` set) does not turn sudo mode on for the account it
    signed in (and stayed in), as a sentence.

    None when it does: the sign-in was started to confirm it is that account, and the provider says the person
    signed in there after that start (auth_time), not that it answered from its remembered session.
    """
    if account_pk is None or start.sudo_for != account_pk:
        return (
            "Sudo mode is not on: you signed in at the identity provider as someone else than the account that "
            "asked to confirm it is you."
        )
    auth_time = start.auth_time
    if isinstance(auth_time, bool) or not isinstance(auth_time, int | float):
        return (
            "Sudo mode is not on: the identity provider did not say when you signed in (its ID token has no "
            "auth_time), so the portal cannot tell that you signed in again. Ask staff to check the provider."
        )
    if auth_time < start.started_at - AUTH_TIME_SKEW_SECONDS:
        return (
            "Sudo mode is not on: the identity provider answered with an earlier sign-in instead of asking you to "
            "sign in again. Confirm again; if it lasts, ask staff to check the provider honours prompt=login."
        )
    return None


def _invitation_proof(session_key: str | None, token: str) -> str:
    """Only the accept page of this browser's session can know it: an attacker knows the token, not the session."""
    return salted_hmac("portal.oidc.invitation", f"{session_key}:{token}", algorithm="sha256").hexdigest()


def invitation_sign_in_url(request: HttpRequest, *, next_url: str) -> str:
    """The accept page's "Sign in with SSO" link: the sign-in it starts joins the invitation this session opened."""
    token = request.session.get(INVITATION_SESSION_KEY, "")
    query = {"invitation": _invitation_proof(request.session.session_key, token), "next": next_url}
    return f"{reverse('oidc-start')}?{urlencode(query)}"


def _invitation_asked_for(request: HttpRequest) -> str:
    """The invitation token this start joins: the session's, when the start came with its accept page's proof."""
    token = request.session.get(INVITATION_SESSION_KEY, "")
    proof = request.GET.get("invitation", "")
    if token and proof and constant_time_compare(proof, _invitation_proof(request.session.session_key, token)):
        return token
    return ""


@dataclass
class ProviderAnswer:
    """One answer of the identity provider, read whole within the deadline and the size cap."""

    status: int
    body: bytes
    cache_control: str = ""

    def json(self):
        """The answer as JSON; ValueError when it is not."""
        return json.loads(self.body)


def deadline_seconds() -> float:
    return float(settings.OIDC_DEADLINE_SECONDS)


def provider_answer(method: str, url: str, *, what: str, **kwargs) -> ProviderAnswer:
    """Ask the identity provider, waiting at most OIDC_DEADLINE_SECONDS for the whole exchange (connecting, the
    status line and headers, the body) and reading at most ANSWER_MAX_BYTES of it.

    A timeout per read bounds no answer: a provider (or anything on its path) that sends a byte every few seconds,
    in its headers or its body, or sends without end, would hold the web thread serving the sign-in. So the
    exchange runs in an event loop of its own under one deadline that cancels it wherever it waits. Slow or huge
    is an SSOError with a sentence; an unreachable provider or a broken answer is a requests.RequestException,
    for the caller to put in its own words.
    """
    seconds = deadline_seconds()
    # Not asyncio.run: on its way out it waits for a name lookup still running in its thread, past the deadline.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_exchange(method, url, what=what, seconds=seconds, **kwargs))
    except (TimeoutError, httpx.TimeoutException):
        logger.warning("OIDC %s at %s took longer than %g s.", what, url, seconds)
        raise SSOError(
            f"The identity provider took longer than {seconds:g} seconds to answer ({what}), so the portal "
            "stopped waiting. Try again; if it lasts, ask staff to check the provider.",
            status=502,
        ) from None
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        raise requests.ConnectionError(f"asking {url} failed: {exc}") from None
    finally:
        loop.close()


async def _exchange(method: str, url: str, *, what: str, seconds: float, **kwargs) -> ProviderAnswer:
    too_big = SSOError(
        f"The identity provider's answer ({what}) is larger than {ANSWER_MAX_BYTES // 1024} KiB, so the portal "
        "did not read it. Ask staff to check the provider.",
        status=502,
    )
    async with (
        asyncio.timeout(seconds),
        httpx.AsyncClient(timeout=seconds, follow_redirects=True) as client,
        client.stream(method, url, **kwargs) as response,
    ):
        announced = response.headers.get("Content-Length", "")
        if announced.isdigit() and int(announced) > ANSWER_MAX_BYTES:
            logger.warning("OIDC %s at %s announced %s bytes.", what, url, announced)
            raise too_big
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > ANSWER_MAX_BYTES:
                logger.warning("OIDC %s at %s sent more than %d bytes.", what, url, ANSWER_MAX_BYTES)
                raise too_big
        return ProviderAnswer(
            status=response.status_code, body=bytes(body), cache_control=response.headers.get("Cache-Control", "")
        )


def oidc_setting(name: str, *default):
    """mozilla-django-oidc's settings, answered from the portal's own names (OIDC_ISSUER, OIDC_CLIENT_ID...)."""
    ours = {
        "OIDC_RP_CLIENT_ID": settings.OIDC_CLIENT_ID,
        "OIDC_RP_CLIENT_SECRET": settings.OIDC_CLIENT_SECRET,
        "OIDC_RP_SCOPES": scopes(),
        "OIDC_USE_PKCE": True,
        "OIDC_PKCE_CODE_CHALLENGE_METHOD": "S256",
        "OIDC_USE_NONCE": True,
        "OIDC_AUTHENTICATION_CALLBACK_URL": "oidc-callback",
        "OIDC_TIMEOUT": TIMEOUT,
        "OIDC_VERIFY_SSL": True,
        "OIDC_STORE_ACCESS_TOKEN": False,
        "OIDC_STORE_ID_TOKEN": False,
    }
    if name in ours:
        return ours[name]
    return import_from_settings(name, *default)


def scopes() -> str:
    wanted = settings.OIDC_SCOPES.split()
    return " ".join(wanted if "openid" in wanted else ["openid", *wanted])


def discovery() -> dict:
    """The issuer's discovery document, checked to name the configured issuer; cached for an hour."""
    issuer = settings.OIDC_ISSUER
    cached = _discovered.get(issuer)
    if cached and time.monotonic() - cached[0] < DISCOVERY_SECONDS:
        return cached[1]
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        answer = provider_answer("GET", url, what="its discovery document")
        if answer.status != 200:
            raise requests.HTTPError(f"HTTP {answer.status}")
        document = answer.json()
    except (requests.RequestException, ValueError) as exc:
        logger.warning("OIDC discovery at %s failed: %s", url, exc)
        raise SSOError(
            f"The identity provider's settings at {url} cannot be read right now. Try again later; "
            "if it lasts, ask staff to check OIDC_ISSUER.",
            status=502,
        ) from None
    named = str(document.get("issuer", "")).rstrip("/") if isinstance(document, dict) else ""
    if named != issuer:
        raise SSOError(
            f"The identity provider at {issuer} calls itself {named or 'nothing'!r} in its discovery document, "
            "so the portal does not trust it. Ask staff to check OIDC_ISSUER.",
            status=502,
        )
    missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not document.get(k)]
    if missing:
        raise SSOError(f"The identity provider's discovery document has no {', '.join(missing)}.", status=502)
    endpoints = ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint")
    garbled = [k for k in endpoints if k in document and not _is_web_address(document[k])]
    if garbled:
        raise SSOError(
            f"The identity provider's discovery document gives no web address for {', '.join(garbled)}. "
            "Ask staff to check the provider.",
            status=502,
        )
    # A fresh discovery document starts a fresh key set, so the keys never outlive the document that named them.
    cache.delete(_keys_cache_key(document["jwks_uri"]))
    _discovered[issuer] = (time.monotonic(), document)
    return document


def _keys_cache_key(jwks_uri: str, what: str = "keys") -> str:
    return f"portal.oidc.{what}:{hashlib.sha256(jwks_uri.encode()).hexdigest()}"


def signing_keys(jwks_uri: str, *, again: bool = False) -> tuple[list[dict], bool]:
    """The provider's key set and whether it was fetched just now (else it came from Django's cache).

    Every sign-in needs it, so it is kept in Django's cache, shared by the servers: for KEYS_SECONDS (as long as
    discovery), or for the key set's Cache-Control max-age when the provider asks for less, but never less than
    KEYS_AGAIN_SECONDS. `again` fetches it anew (a token names a key the cached set lacks). A set that cannot be
    fetched or is of the wrong shape is never cached.
    """
    if not again:
        cached = cache.get(_keys_cache_key(jwks_uri))
        if isinstance(cached, list):
            return cached, False
    answer = provider_answer("GET", jwks_uri, what="its signing keys")
    if answer.status != 200:
        raise requests.HTTPError(f"HTTP {answer.status}")
    try:
        document = answer.json()
    except ValueError:
        raise SSOError(f"{KEYS_UNUSABLE}: its key set at {jwks_uri} is not JSON.", status=502) from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise SSOError(
            f"{KEYS_UNUSABLE}: its key set at {jwks_uri} is not a list of keys. Ask staff to check the provider.",
            status=502,
        )
    max_age = re.search(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", answer.cache_control, re.IGNORECASE)
    seconds = min(KEYS_SECONDS, int(max_age[1])) if max_age else KEYS_SECONDS
    cache.set(_keys_cache_key(jwks_uri), keys, max(seconds, KEYS_AGAIN_SECONDS))
    return keys, True


def may_fetch_keys_again(jwks_uri: str) -> bool:
    """True for the first caller in KEYS_AGAIN_SECONDS: tokens naming made-up keys must not make the portal
    hammer the provider, one fetch per token."""
    return cache.add(_keys_cache_key(jwks_uri, "fetched-again"), True, KEYS_AGAIN_SECONDS)


def _is_web_address(value: object) -> bool:
    return isinstance(value, str) and urlsplit(value).scheme in ("http", "https") and bool(urlsplit(value).netloc)


def failure_page(request: HttpRequest, message: str, status: int = 400) -> HttpResponse:
    return render(request, "registration/sso_failed.html", {"message": message}, status=status)


class SSOBackend(OIDCAuthenticationBackend):
    """Authenticates the OIDC callback only; password sign-ins pass it by."""

    def __init__(self, *args, **kwargs):
        # mozilla-django-oidc reads fixed endpoints from settings here; ours come from discovery, per sign-in.
        self.UserModel = get_user_model()

    get_settings = staticmethod(oidc_setting)

    def authenticate(self, request, **kwargs):
        if request is None or "nonce" not in kwargs or not settings.OIDC_ISSUER:
            return None
        self.document = discovery()
        self.OIDC_OP_TOKEN_ENDPOINT = self.document["token_endpoint"]
        self.OIDC_OP_USER_ENDPOINT = self.document.get("userinfo_endpoint")
        self.OIDC_OP_JWKS_ENDPOINT = self.document["jwks_uri"]
        self.OIDC_RP_CLIENT_ID = settings.OIDC_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_CLIENT_SECRET
        self.OIDC_RP_IDP_SIGN_KEY = None
        return super().authenticate(request, **kwargs)

    def get_user(self, user_id):
        user = super().get_user(user_id)
        return user if user is not None and user.is_active else None  # a deactivated account's sessions end

    def get_token(self, payload: dict) -> dict:
        """Exchange the code; a refusal (expired or used code) becomes a sentence."""
        methods = self.document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        data, auth = {**payload, "redirect_uri": callback_url(self.request)}, None  # the one the sign-in sent
        if "client_secret_basic" in methods:
            auth = (quote(data["client_id"], safe=""), quote(data.pop("client_secret"), safe=""))
        try:
            response = provider_answer(
                "POST", self.OIDC_OP_TOKEN_ENDPOINT, what="the sign-in code exchange", data=data, auth=auth
            )
        except requests.RequestException as exc:
            logger.warning("OIDC token request failed: %s", exc)
            raise SSOError(
                "The identity provider cannot be reached to finish the sign-in. Try again.", status=502
            ) from None
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status != 200 or not isinstance(answer, dict):
            error = str(answer.get("error", "")) if isinstance(answer, dict) else ""
            if error == "invalid_grant":
                raise SSOError(
                    "The identity provider refused the sign-in code: it has expired or was already used. "
                    "Sign in again from the start."
                )
            raise SSOError(
                f"The identity provider refused to finish the sign-in ({error or f'HTTP {response.status}'}). "
                "Ask staff to check the portal's client settings.",
                status=502,
            )
        return answer

    def verify_token(self, token, **kwargs) -> dict:
        """Check the ID token: signature from the issuer's keys, issuer, audience, expiry and nonce."""
        if not token:
            raise SSOError("The identity provider's answer holds no ID token.", status=502)
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise SSOError("The identity provider's ID token cannot be read.", status=502) from None
        offered = self.document.get("id_token_signing_alg_values_supported") or ["RS256"]
        if algorithm not in SIGNING_ALGORITHMS or algorithm not in offered:
            raise SSOError(f"The ID token is signed with {algorithm!r}, which the portal does not accept.", status=502)
        self.fetch_keys_again = False
        try:
            try:
                payload = self._decoded(token, algorithm)
            except (NoFittingKey, jwt.InvalidSignatureError):
                # The provider may have rotated its keys since the cached set: look once more, unless the set is
                # fresh from this sign-in or someone looked a moment ago.
                if getattr(self, "keys_fetched_now", True) or not may_fetch_keys_again(self.OIDC_OP_JWKS_ENDPOINT):
                    raise
                self.fetch_keys_again = True
                payload = self._decoded(token, algorithm)
        except (SuspiciousOperation, requests.RequestException, jwt.InvalidKeyError, jwt.PyJWKError, KeyError):
            raise SSOError(f"{KEYS_UNUSABLE}.", status=502) from None
        except jwt.ExpiredSignatureError:
            raise SSOError("The ID token has expired. Sign in again.") from None
        except jwt.InvalidAudienceError:
            raise SSOError(OTHER_AUDIENCE, status=403) from None
        except jwt.PyJWTError as exc:
            raise SSOError(f"The ID token does not check out ({exc}).", status=403) from None
        # OIDC Core 3.1.3.7: an ID token also made for another client is refused (the portal trusts none but
        # itself), and so is one that another client asked for (azp).
        audience = payload["aud"]
        audiences = audience if isinstance(audience, list) else [audience]
        if not audiences or any(a != settings.OIDC_CLIENT_ID for a in audiences):
            raise SSOError(OTHER_AUDIENCE, status=403)
        if "azp" in payload and payload["azp"] != settings.OIDC_CLIENT_ID:
            raise SSOError(OTHER_AUDIENCE, status=403)
        if not str(payload["sub"]).strip():
            # An empty subject would be linked to the account and then find it for anyone else's empty subject.
            raise SSOError(
                "The identity provider's ID token names no one (its sub claim is empty), so the portal cannot tell "
                "which account is yours. Ask staff to check the provider.",
                status=403,
            )
        refuse_unstorable_claims(payload)
        issuer = str(payload.get("iss", "")).rstrip("/")
        if issuer != settings.OIDC_ISSUER:
            raise SSOError(
                f"The ID token was issued by {payload.get('iss')!r}, not by this portal's identity provider "
                f"({settings.OIDC_ISSUER}). The sign-in is refused.",
                status=403,
            )
        if "nonce" in kwargs and payload.get("nonce") != kwargs["nonce"]:
            raise SSOError("The ID token belongs to another sign-in (its nonce does not match). Sign in again.")
        return payload

    def _decoded(self, token: str, algorithm: str) -> dict:
        return jwt.decode(
            token,
            self.retrieve_matching_jwk(token),
            algorithms=[algorithm],
            audience=settings.OIDC_CLIENT_ID,
            leeway=60,
            options={"require": ["exp", "iat", "iss", "aud", "sub"], "verify_iss": False},
        )

    def retrieve_matching_jwk(self, token):
        """The provider's key that signed `token`: the one named by its kid, or with no kid the only key that
        fits its algorithm. The key set comes from the cache, or is read like every answer of the provider
        (deadline, size cap): see signing_keys."""
        keys, self.keys_fetched_now = signing_keys(
            self.OIDC_OP_JWKS_ENDPOINT, again=getattr(self, "fetch_keys_again", False)
        )
        header = jwt.get_unverified_header(token)
        algorithm = smart_str(header.get("alg"))
        kty = KEY_TYPES.get(algorithm[:2])
        fitting = [
            k
            for k in keys
            if k.get("use", "sig") == "sig" and k.get("alg", algorithm) == algorithm and k.get("kty") == kty
        ]
        if "kid" in header:
            fitting = [k for k in fitting if k.get("kid") == smart_str(header["kid"])]
        if not fitting:
            raise NoFittingKey(f"{KEYS_UNUSABLE}: none of its keys fits the ID token.", status=502)
        if len(fitting) > 1:
            raise SSOError(
                f"{KEYS_UNUSABLE}: several of its keys fit the ID token, which names none of them (no kid). "
                "Ask staff to check the provider.",
                status=502,
            )
        return jwt.PyJWK(fitting[0], algorithm=algorithm)

    def get_userinfo(self, access_token, id_token, payload) -> dict:
        """The ID token's claims, completed by the userinfo endpoint for the same subject."""
        claims = dict(payload)
        endpoint = self.document.get("userinfo_endpoint")
        if not endpoint or not access_token:
            return claims
        try:
            answer = provider_answer(
                "GET", endpoint, what="who you are (userinfo)", headers={"Authorization": f"Bearer {access_token}"}
            )
            if answer.status != 200:
                raise requests.HTTPError(f"HTTP {answer.status}")
            info = answer.json()
        except (requests.RequestException, ValueError):
            raise SSOError(
                "The identity provider did not say who you are (userinfo failed). Try again.", status=502
            ) from None
        if not isinstance(info, dict) or str(info.get("sub")) != str(payload.get("sub")):
            raise SSOError("The identity provider described someone else than the ID token did.", status=403)
        claims.update(info)
        refuse_unstorable_claims(claims)
        return claims

    def get_or_create_user(self, access_token, id_token, payload):
        claims = self.get_userinfo(access_token, id_token, payload)
        start = getattr(self.request, "sso_start", None) or SignInStart(started_at=time.time())
        start.auth_time = payload.get("auth_time")  # from the signed ID token only, never from userinfo
        return sign_in_from_claims(self.request, claims, invitation_token=start.invitation)


def refuse_unstorable_claims(claims: dict) -> None:
    """SSOError for a claim the portal keeps or looks an account up by that no database could hold.

    A NUL, half a surrogate pair (JSON "\\ud83d") or a subject past its column fails on PostgreSQL where SQLite
    stores it: refused before any query, so both answer with the same sentence and the refusal is recorded.
    """
    longest = {
        "sub": ExternalIdentity._meta.get_field("subject").max_length,
        "email": ExternalIdentity._meta.get_field("email").max_length,
    }
    # Not "name", which the portal does not keep, nor "preferred_username", whose user name unique_username makes
    # of letters, digits and @.+-_ only: a provider's odd display name must not stop a sign-in.
    for claim in ("sub", "email", settings.OIDC_GROUPS_CLAIM):
        value = claims.get(claim)
        for item in value if isinstance(value, list) else [value]:
            text = str(item) if claim == "sub" else item  # the subject is looked up as text, whatever its type
            if not isinstance(text, str):
                continue
            if UNSTORABLE_CHARACTER.search(text):
                raise SSOError(
                    f"The identity provider's {claim} claim holds a character the portal cannot store (a NUL or half "
                    "a surrogate pair), so the sign-in is refused. Ask staff to check the provider.",
                    status=403,
                )
            limit = longest.get(claim)
            if limit is not None and len(text) > limit:
                raise SSOError(
                    f"The identity provider's {claim} claim is {len(text)} characters long; the portal keeps at most "
                    f"{limit}, so the sign-in is refused. Ask staff to check the provider.",
                    status=403,
                )


def vouched_for(claims: dict) -> bool:
    """Whether the provider says the e-mail address is the person's (email_verified), whatever the settings."""
    return claims.get("email_verified") in (True, "true", "True")


def verified_email(claims: dict) -> str:
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        return ""
    return email.strip() if vouched_for(claims) or not settings.OIDC_REQUIRE_EMAIL_VERIFIED else ""


GROUPS_OVERAGE = (
    "The identity provider did not send your groups: you are in too many of them, so it sent only a pointer to "
    "look them up elsewhere (Entra ID calls this group overage), and the portal cannot tell which of its teams "
    "you belong to. The sign-in is refused. Ask your identity provider's administrator to send only the groups "
    'assigned to this application (in Entra ID: the groups claim\'s "Groups assigned to the application" option).'
)


def groups_overage(claims: dict) -> bool:
    """True when the groups claim is missing because the provider names it as a distributed claim instead
    (`_claim_names`, OIDC Core 5.6.2): Entra ID's answer for someone in more groups than a token holds."""
    distributed = claims.get("_claim_names")
    return (
        settings.OIDC_GROUPS_CLAIM not in claims
        and isinstance(distributed, dict)
        and settings.OIDC_GROUPS_CLAIM in distributed
    )


def refuse_groups_overage(claims: dict, user) -> None:
    """SSOError when the provider withheld the person's groups (overage) and some team follows groups: signing in
    without them would keep whatever the groups gave before, as if nothing had changed."""
    if groups_overage(claims) and teams_with_groups().exists():
        raise SSOError(GROUPS_OVERAGE, status=403, target=user.get_username() if user is not None else "")


def groups_from(claims: dict) -> set[str] | None:
    """The groups claim as a set; None when the provider sent no such claim (then memberships are left alone)."""
    groups = claims.get(settings.OIDC_GROUPS_CLAIM)
    if groups is None:
        return None
    if isinstance(groups, str):
        return {groups}
    if isinstance(groups, list):
        return {str(g) for g in groups}
    return set()


def teams_with_groups():
    return Team.objects.exclude(sso_member_group="", sso_admin_group="")


def role_from_groups(team: Team, groups: set[str]) -> str | None:
    if team.sso_admin_group and team.sso_admin_group in groups:
        return Role.ADMIN
    if team.sso_member_group and team.sso_member_group in groups:
        return Role.MEMBER
    return None


@transaction.atomic
def sign_in_from_claims(request: HttpRequest, claims: dict, *, invitation_token: str = ""):
    """The account for these claims: found by subject (it then takes the address the provider vouches for), else by
    verified e-mail, else made for an invitation or a team group. Then its invitations are accepted (not one sent
    before it left that team) and its team memberships follow the groups claim.

    `invitation_token` is the invitation whose accept page started this sign-in; one the browser merely opened
    (its token in the session) is never accepted by a sign-in started elsewhere.
    """
    User = get_user_model()
    subject = str(claims.get("sub", ""))
    email = verified_email(claims)
    groups = groups_from(claims)
    opened = Invitation.objects.find(invitation_token) if invitation_token else None
    identity = (
        ExternalIdentity.objects.select_related("user").filter(issuer=settings.OIDC_ISSUER, subject=subject).first()
    )
    linked = identity is not None
    if identity is not None:
        user = identity.user
    else:
        if not email:
            raise SSOError(
                "The identity provider did not vouch for your e-mail address (no verified email claim), so the "
                "portal cannot tell which account is yours. Ask staff.",
                status=403,
            )
        matches = list(User.objects.filter(same_address("email", email))[:2])
        if len(matches) > 1:
            raise SSOError(f"Several accounts here use {email}. Ask staff to give each its own address.", status=403)
        if matches and ExternalIdentity.objects.filter(user=matches[0], issuer=settings.OIDC_ISSUER).exists():
            # Another account at the provider signs in to it already: an address reused or handed on there must
            # not take it over, and staff decide which of the two it is.
            raise SSOError(
                f"The account here for {email} already signs in with another account at the identity provider, "
                "so the portal does not link yours to it. Ask staff to sort out which account is yours.",
                status=403,
                target=matches[0].get_username(),
            )
        if matches and email_unconfirmed(matches[0]):
            # Made from an invitation link by whoever held it: the address is not shown to be its holder's,
            # so the address's owner must not land in (and so share) an account someone else may have prepared.
            raise SSOError(
                f"An account here uses {email}, but it was made from an invitation link and its address is not "
                "confirmed yet, so single sign-on does not sign in to it. If the account is yours, sign in with its "
                "password and confirm the address from your account page; if it is not, ask staff.",
                status=403,
                target=matches[0].get_username(),
            )
        if matches:
            user = matches[0]
        else:
            refuse_groups_overage(claims, None)  # before an account is made for groups it cannot see
            # A lapsed invitation (its maker no longer an admin) opens nothing, here as on its page.
            invited = Invitation.objects.usable().filter(same_address("email", email)).exists() or (
                opened is not None and opened.refusal() is None
            )
            grouped = groups and any(role_from_groups(t, groups) for t in teams_with_groups())
            if not invited and not grouped and opened is not None and (refusal := opened.refusal()):
                # The sign-in began on a page whose invitation ran out meanwhile: say that, not "no invitation".
                raise SSOError(refusal, status=403)
            if not invited and not grouped:
                raise SSOError(
                    f"There is no account for {email} here, no invitation for it, and none of your groups belongs "
                    "to a team. Ask a team admin to invite you.",
                    status=403,
                )
            if mail.address_problem(email):
                # zoë@example.com: mail can only reach it through SMTPUTF8, and Django would send it as an
                # encoded word that names no mailbox.
                raise SSOError(
                    f"The identity provider gives your e-mail address as {email[:200]!r}, which the portal cannot "
                    "mail (the part before the @ must be plain ASCII), so it makes no account for it. Ask staff, or "
                    "your identity provider's admins, for an address it can use.",
                    status=403,
                )
            # Kept as invitations keep it, its domain in ASCII, where it is one; a provider's address that Django's
            # validator would not take (dev@intranet) is the provider's to vouch for, and kept as it is.
            with contextlib.suppress(RuleError):
                email = normalize_email(email)
            wanted = claims.get("preferred_username") or email.split("@")[0]
            user = create_account(
                username=unique_username(str(wanted).split("@")[0]), email=email, password=None, via="sso"
            )
        identity = ExternalIdentity(user=user, issuer=settings.OIDC_ISSUER, subject=subject)
    if not user.is_active:
        if linked:
            refusal = "This account is deactivated. Ask staff if that is a mistake."
        else:
            # Found by its address only: whoever signs in may be someone else who holds that address now.
            refusal = (
                "An account here with this address is deactivated, so single sign-on does not sign in to it. "
                "Ask the portal's staff."
            )
        raise SSOError(refusal, status=403, target=user.get_username())
    refuse_groups_overage(claims, user)
    if linked and email and vouched_for(claims):
        adopt_address(request, user, email, seen_before=identity.email)
    identity.email = email or identity.email
    identity.last_sign_in_at = timezone.now()
    try:
        with transaction.atomic():
            identity.save()
    except IntegrityError:
        raise SSOError("You signed in twice at the same moment. Sign in again.") from None
    _accept_invitations(request, user, email, opened)
    if opened is not None and request.session.get(INVITATION_SESSION_KEY) == invitation_token:
        request.session.pop(INVITATION_SESSION_KEY, None)  # this browser's invitation is used up
    if groups is not None:
        sync_memberships(request, user, groups)
    return user


def adopt_address(request: HttpRequest, user, email: str, *, seen_before: str) -> None:
    """The account linked to this identity takes the address the provider now vouches for, audited.

    The account's address is where password resets, invitations' checks and notices go; the provider may hand the
    old one to someone else. Not when another account here has the address (audited and logged once, when the
    provider first gives it; the sign-in goes on with the old address), nor an address mail cannot reach.

    The pending invitations to the old address are withdrawn (audited): they were meant for this person, and left
    standing they would make whoever holds that address next a member (perhaps an admin) of their teams. A team's
    admin can invite the new address.
    """
    with contextlib.suppress(RuleError):
        email = normalize_email(email)  # kept as invitations and new SSO accounts keep it
    User = get_user_model()
    holders = list(User.objects.filter(same_address("email", email)).values_list("pk", "username")[:2])
    if any(pk == user.pk for pk, _ in holders):
        return
    old = user.email
    if not holders and not mail.address_problem(email):
        user.email = email
        user.save(update_fields=["email"])
        details = {"via": "sso", "changed": {"email": {"from": old, "to": email}}}
        audit.record(Action.ACCOUNT_UPDATED, actor=user, request=request, target=user.get_username(), details=details)
        withdraw_for_address(
            team=None,
            emails=[old],
            actor=user,
            request=request,
            reason=f"{user.get_username()}'s account moved to the address {email} the identity provider gives it",
            details={"via": "sso"},
        )
        return
    if email.casefold() in {spelling.casefold() for spelling in email_spellings(seen_before)}:
        return  # not adopted at an earlier sign-in already, and recorded then
    if holders:
        why = f"another account here ({holders[0][1]}) uses it; staff decide which account it belongs to"
    else:
        why = "mail cannot reach it (not ASCII before the @); the provider's admins can give an ASCII one"
    logger.warning(
        "The identity provider gives %s the address %s, which is not adopted: %s.", user.get_username(), email, why
    )
    details = {
        "via": "sso",
        "email": old,
        "provider_email": email,
        "kept": f"the identity provider's address is not adopted: {why}",
    }
    audit.record(Action.ACCOUNT_UPDATED, actor=user, request=request, target=user.get_username(), details=details)


def invitation_not_joined(token: str, user) -> str | None:
    """Why the invitation whose page started a sign-in did not bring `user` into its team (it ran out meanwhile,
    was withdrawn or used, or they left the team after it was made), as its sentence; None when it did, or no
    invitation page started the sign-in."""
    invitation = Invitation.objects.find(token) if token else None
    if invitation is None or Membership.objects.filter(team=invitation.team_id, user=user).exists():
        return None
    return left_since_invited(invitation, user) or invitation.refusal()


def _accept_invitations(request: HttpRequest, user, email: str, opened: Invitation | None) -> None:
    """The invitation whose page started this sign-in, and every pending one for the verified address."""
    usable = Invitation.objects.usable()
    invitations = list(usable.filter(same_address("email", email)).select_related("team")) if email else []
    if opened is not None and opened.refusal() is None and opened.pk not in {i.pk for i in invitations}:
        invitations.append(opened)
    for invitation in invitations:
        if left := left_since_invited(invitation, user):
            # Sent before the person left the team (to an address not yet known as theirs when they left):
            # withdrawn, so it is not offered again. The page that started the sign-in says it (login_success).
            reason = f"{user.get_username()} left the team after it was sent; signing in does not bring them back"
            withdrawn = withdraw_one(invitation, actor=user, request=request, reason=reason, details={"via": "sso"})
            if withdrawn and invitation != opened:
                messages.warning(request, left, fail_silently=True)
            continue
        try:
            accept_invitation(invitation=invitation, user=user, request=request)
        except RuleError:
            continue  # used by a parallel request a moment ago: nothing left to do


def sync_memberships(request: HttpRequest, user, groups: set[str]) -> None:
    """Memberships in teams that name SSO groups follow the groups claim; hand-made ones outside the groups stay."""
    held = {m.team_id: m for m in Membership.objects.select_for_update().filter(user=user).select_related("team")}
    for team in teams_with_groups():
        wanted = role_from_groups(team, groups)
        membership = held.get(team.pk)
        via = {"via": "sso", "groups_claim": settings.OIDC_GROUPS_CLAIM}
        if membership is None and wanted:
            membership = Membership.objects.create(team=team, user=user, role=wanted, via_sso=True)
            _record_for_groups(request, user, team, Action.MEMBER_ADDED, {"role": wanted, **via})
            # The groups decide the role from now on: an invitation from before must not raise it, nor bring
            # the person back once the groups no longer name them.
            withdraw_for_address(
                team=team,
                emails=known_addresses(user),
                actor=user,
                request=request,
                reason=f"{user.get_username()} joined the team through its SSO groups",
                details=via,
            )
            member_added.send(sender=Membership, membership=membership, actor=None)  # the groups did it
        elif membership is not None and wanted:
            if membership.role != wanted and _kept_as_last_admin(request, membership, wanted, via):
                continue
            if membership.role != wanted:
                _record_for_groups(
                    request, user, team, Action.MEMBER_ROLE_CHANGED, {"from": membership.role, "to": wanted, **via}
                )
            membership.role, membership.via_sso = wanted, True
            membership.save(update_fields=["role", "via_sso"])
        elif membership is not None and membership.via_sso:
            if _kept_as_last_admin(request, membership, None, via):
                continue
            details = end_membership(membership, actor=None)  # the groups did it; the audit row names the sign-in
            _record_for_groups(request, user, team, Action.MEMBER_REMOVED, {**details, **via})


def _record_for_groups(request: HttpRequest, user, team: Team, action: str, details: dict) -> None:
    """The audit row of a membership change the groups claim made at `user`'s sign-in."""
    audit.record(action, actor=user, request=request, team=team, target=user.get_username(), details=details)


def _kept_as_last_admin(request: HttpRequest, membership: Membership, wanted: str | None, via: dict) -> bool:
    """True (audited, logged) when the groups would remove or demote the team's last admin, which is kept instead.

    A team without an admin cannot be run or handed over; the same rule as for a change by hand
    (services.refuse_last_admin), but a sign-in must not fail because of it.
    """
    try:
        refuse_last_admin(membership, new_role=wanted)  # it locks the team: of two admins leaving at once, one stays
    except RuleError:
        pass
    else:
        return False
    user, team = membership.user, membership.team
    logger.warning(
        "SSO groups of %s would %s the last admin of team %s; kept as admin.",
        user.get_username(),
        "demote" if wanted else "remove",
        team.slug,
    )
    _record_for_groups(
        request,
        user,
        team,
        Action.MEMBER_ROLE_CHANGED,
        {
            "from": membership.role,
            "to": membership.role,
            "groups_wanted": wanted or "none",
            "kept": "last admin of the team: make someone else admin first",
            **via,
        },
    )
    return True


class SSOStartView(OIDCAuthenticationRequestView):
    """/oidc/authenticate/: send the browser to the identity provider (with ?sudo=1: to confirm it is you)."""

    get_settings = staticmethod(oidc_setting)

    def __init__(self, *args, **kwargs):
        View.__init__(self, *args, **kwargs)  # the endpoints come from discovery in get(), not from settings

    def get(self, request):
        if not settings.OIDC_ISSUER:
            raise Http404("Single sign-on is not configured here.")
        try:
            endpoint = urlsplit(discovery()["authorization_endpoint"])
        except SSOError as exc:
            audit.record(Action.SIGN_IN_FAILED, request=request, details={"via": "sso", "reason": str(exc)[:300]})
            return failure_page(request, str(exc), exc.status)
        # mozilla-django-oidc appends "?<its query>"; the endpoint's own query is merged back in below.
        self.OIDC_OP_AUTH_ENDPOINT = urlunsplit(endpoint._replace(query="", fragment=""))
        self.OIDC_RP_CLIENT_ID = settings.OIDC_CLIENT_ID
        sudo = request.GET.get("sudo") == "1" and request.user.is_authenticated
        self.start = SignInStart(
            started_at=time.time(),
            sudo_for=request.user.pk if sudo else None,
            invitation=_invitation_asked_for(request),
        )
        response = super().get(request)
        response["Location"] = with_own_query(response["Location"], endpoint.query, redirect_uri=callback_url(request))
        state = parse_qs(urlsplit(response["Location"]).query)["state"][0]
        request.session["oidc_states"][state][START_KEY] = asdict(self.start)
        request.session.modified = True
        return response

    def get_extra_params(self, request) -> dict:
        # Sudo mode must be a fresh sign-in at the provider, not its remembered session.
        return {"prompt": "login", "max_age": "0"} if self.start.sudo_for is not None else {}


def callback_url(request: HttpRequest) -> str:
    """The redirect URI the provider has registered: at PORTAL_URL when it is set, as every link the portal gives out,
    since a proxy may pass a Host without the public port (nginx's `$host`)."""
    return public_url(request, reverse("oidc-callback"))


def with_own_query(location: str, own_query: str, *, redirect_uri: str) -> str:
    """The sign-in address with the authorization endpoint's own query kept (RFC 6749 3.1), the portal's
    parameters winning where both name one, and the portal's redirect URI."""
    parts = urlsplit(location)
    asked = [
        (name, redirect_uri if name == "redirect_uri" else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    named = {name for name, _ in asked}
    own = [(name, value) for name, value in parse_qsl(own_query, keep_blank_values=True) if name not in named]
    return urlunsplit(parts._replace(query=urlencode(own + asked)))


NOT_STARTED_HERE = (
    "This sign-in answer does not belong to a sign-in started in this browser (its state does not "
    "match), so it is refused. Sign in again from the start."
)


class SSOCallbackView(OIDCAuthenticationCallbackView):
    """/oidc/callback/: the identity provider's answer. Anything wrong is a page that says what, never a 500."""

    get_settings = staticmethod(oidc_setting)

    def get(self, request):
        if not settings.OIDC_ISSUER:
            raise Http404("Single sign-on is not configured here.")
        states = request.session.get("oidc_states") or {}
        state = request.GET.get("state", "")
        if (state and state not in states) or (not state and request.GET.get("error")):
            # Before the error branch: an error answer's text is shown and recorded only for a sign-in this
            # browser started, or anyone could mail a link that puts their words on the portal's page.
            return self._refuse_unmatched(NOT_STARTED_HERE, states)
        if request.GET.get("error"):
            states.pop(state, None)
            request.session["oidc_states"] = states
            reason = request.GET.get("error_description") or request.GET.get("error")
            return self._refuse(f"The identity provider did not sign you in: {reason[:300]}.", 403)
        if not request.GET.get("code") or not state:
            no_code = "The identity provider's answer carries no sign-in code. Sign in again from the start."
            return self._refuse(no_code) if state else self._refuse_unmatched(no_code, states)
        answered_by = request.GET.get("iss")  # RFC 9207: providers that send it name themselves in the answer
        if answered_by is not None and answered_by.rstrip("/") != settings.OIDC_ISSUER:
            states.pop(state, None)
            request.session["oidc_states"] = states
            return self._refuse(
                f"This sign-in answer comes from {answered_by[:200]!r}, not from this portal's identity provider "
                f"({settings.OIDC_ISSUER}). The sign-in is refused.",
                403,
            )
        kept = states[state].get(START_KEY) or {}
        request.sso_start = SignInStart(
            started_at=float(kept.get("started_at", 0)),
            sudo_for=kept.get("sudo_for"),
            invitation=str(kept.get("invitation", "")),
        )
        try:
            return super().get(request)
        except SSOError as exc:
            return self._refuse(str(exc), exc.status, target=exc.target)

    def _refuse(self, message: str, status: int = 400, target: str = "") -> HttpResponse:
        event = audit.record(
            Action.SIGN_IN_FAILED,
            request=self.request,
            target=target,
            details={"via": "sso", "reason": message[:300]},
        )
        # For the operator on call, who has only the log: the audit row's account and sentence (the sentence names
        # the address when no account is concerned), on one line; never the answer's code or tokens.
        who = event.target or event.actor_username
        logger.warning(
            "SSO sign-in refused (HTTP %d)%s from %s: %s",
            status,
            f" for account {who!r}" if who else "",
            event.ip_address or "an unknown address",
            "".join(ch if ch.isprintable() else " " for ch in message[:300]),
        )
        return failure_page(self.request, message, status)

    def _refuse_unmatched(self, message: str, pending: dict) -> HttpResponse:
        """An answer to none of this browser's sign-ins: refused with its sentence, and recorded only when the browser
        has one pending (an answer tampered with on its way), once per newest sign-in started. Any web page can make
        a visitor's browser open such a link (an image), and that is no sign-in anyone attempted."""
        newest = next(reversed(pending), None)
        if newest is None or self.request.session.get(UNMATCHED_RECORDED_KEY) == newest:
            return failure_page(self.request, message)
        self.request.session[UNMATCHED_RECORDED_KEY] = newest
        return self._refuse(message)

    def login_failure(self):
        return self._refuse("The sign-in with SSO did not complete. Sign in again from the start.")

    def login_success(self):
        start = self.request.sso_start
        same_user = self.request.user.is_authenticated and self.request.user.pk == self.user.pk
        response = super().login_success()
        if (not_joined := invitation_not_joined(start.invitation, self.user)) is not None:
            # Signed in, but not into the invitation's team: its page (the `next`) would answer Not found.
            messages.error(self.request, not_joined)
            response = redirect("home")
        if start.sudo_for is not None:
            refusal = sudo_refusal(start, self.user.pk if same_user else None)
            if refusal is None:
                enter_sudo_mode(self.request)
            else:
                messages.warning(self.request, refusal)
        return response
