"""Single sign-on against an identity provider that misbehaves, over real HTTP on 127.0.0.1 (tests/portal/fake_idp.py).

Slow or endless answers end at the portal's deadline, ID tokens for other audiences or for no one are refused,
key sets of the wrong shape or without key ids are handled, and an authorization endpoint keeps its own query.
"""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import parse_qs, parse_qsl, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import Client

from portal import oidc
from portal.models import Action, AuditEvent, ExternalIdentity
from tests.conftest import make_user
from tests.portal.fake_idp import CLIENT_ID, CLIENT_SECRET, KEY, KEY2, IdP, jwk_of, sign_in, signed_in, start, trickle

pytestmark = pytest.mark.django_db

DEADLINE = 1.5  # seconds, set as OIDC_DEADLINE_SECONDS by the slow tests
BOUND = 4  # a refused slow answer must end well before the watchdog
RELEASE = 8  # the watchdog ends the provider's endless answers here, so a failing run still ends


@pytest.fixture
def idp(settings):
    server = IdP()
    settings.OIDC_ISSUER = server.issuer
    settings.OIDC_CLIENT_ID, settings.OIDC_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
    oidc._discovered.clear()
    yield server
    server.close()
    oidc._discovered.clear()


@pytest.fixture
def watchdog(idp, settings):
    """A short deadline, and the provider's endless answers released after RELEASE seconds whatever happens."""
    settings.OIDC_DEADLINE_SECONDS = DEADLINE
    timer = threading.Timer(RELEASE, idp.stop.set)
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()


def failures() -> int:
    return AuditEvent.objects.filter(action=Action.SIGN_IN_FAILED).count()


def message(response) -> str:
    return (response.context or {}).get("message") or ""


# 1. Slow, endless or huge answers ------------------------------------------------------------------------------


def test_a_dribbling_discovery_document_is_refused_at_the_deadline(idp, watchdog):
    idp.behaviour["discovery"] = trickle(idp, every=0.2, length=None)
    began = time.monotonic()
    response = Client().get("/oidc/authenticate/")
    took = time.monotonic() - began
    assert took < BOUND, f"the sign-in start held its thread {took:.1f} s"
    assert response.status_code == 502
    assert f"took longer than {DEADLINE} seconds" in message(response)
    assert failures() == 1


@pytest.mark.parametrize("every", [0.2, 60], ids=["dribbling", "silent"])
@pytest.mark.parametrize("endpoint", ["token", "jwks", "userinfo"])
def test_a_slow_answer_at_the_callback_is_refused_at_the_deadline(idp, bob, watchdog, endpoint, every):
    idp.userinfo = {"sub": "idp-bob"}
    client = Client()
    state, code = start(client, idp)
    idp.behaviour[endpoint] = trickle(idp, every=every, length=None)
    began = time.monotonic()
    response = client.get("/oidc/callback/", {"code": code, "state": state})
    took = time.monotonic() - began
    assert took < BOUND, f"the callback held its thread {took:.1f} s"
    assert response.status_code == 502
    assert f"took longer than {DEADLINE} seconds" in message(response)
    assert failures() == 1
    assert signed_in(client) is None


@pytest.mark.parametrize("length", [None, "100000000"], ids=["no length", "a length over the cap"])
@pytest.mark.parametrize("endpoint", ["token", "jwks"])
def test_an_answer_larger_than_the_cap_is_refused_unread(idp, bob, watchdog, endpoint, length, settings):
    settings.OIDC_DEADLINE_SECONDS = 5  # the size, not the time, must end it
    client = Client()
    state, code = start(client, idp)
    idp.behaviour[endpoint] = trickle(idp, every=0.01, chunk=b" " * 65536, length=length)
    began = time.monotonic()
    response = client.get("/oidc/callback/", {"code": code, "state": state})
    took = time.monotonic() - began
    assert took < BOUND, f"the callback read the answer for {took:.1f} s"
    assert response.status_code == 502
    assert "larger than 1024 KiB" in message(response)
    assert failures() == 1
    assert signed_in(client) is None


# 2. Audiences --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": [CLIENT_ID, "another-app"]},
        {"aud": [CLIENT_ID, "another-app"], "azp": CLIENT_ID},
        {"aud": [CLIENT_ID, "another-app"], "azp": "another-app"},
        {"aud": CLIENT_ID, "azp": "another-app"},
    ],
    ids=["two audiences", "two audiences azp us", "two audiences azp another", "azp another"],
)
def test_a_token_also_made_for_another_application_is_refused(idp, bob, claims):
    idp.claims.update(claims)
    client = Client()
    response = sign_in(client, idp)
    assert response.status_code == 403
    assert "another application" in message(response)
    assert failures() == 1
    assert signed_in(client) is None


@pytest.mark.parametrize("claims", [{"aud": [CLIENT_ID]}, {"aud": [CLIENT_ID], "azp": CLIENT_ID}])
def test_a_token_made_only_for_the_portal_signs_in(idp, bob, claims):
    idp.claims.update(claims)
    client = Client()
    response = sign_in(client, idp)
    assert response.status_code == 302, message(response)
    assert str(signed_in(client)) == str(bob.pk)


# 3. Empty subject ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sub", ["", "   "], ids=["empty", "blanks"])
def test_an_empty_subject_is_refused_and_never_linked(idp, bob, sub):
    idp.claims.update(sub=sub)
    client = Client()
    response = sign_in(client, idp)
    assert response.status_code == 403
    assert "sub claim is empty" in message(response)
    assert failures() == 1
    assert signed_in(client) is None
    assert not ExternalIdentity.objects.exists()


def test_an_empty_subject_does_not_sign_carol_in_as_bob(idp, bob):
    make_user("carol")
    idp.claims.update(sub="")
    sign_in(Client(), idp)
    idp.claims.update(sub="", email="carol@example.com")
    second = Client()
    sign_in(second, idp)
    assert signed_in(second) is None


# 4. Key sets of the wrong shape --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [[], {"keys": None}, {"keys": "k1"}, {"keys": [["k1"]]}, {"keys": {"kid": "k1"}}, "keys"],
    ids=["a list", "keys null", "keys a string", "a key that is a list", "keys an object", "a string"],
)
def test_a_key_set_of_the_wrong_shape_is_a_sentence_and_a_recorded_failure(idp, bob, document):
    idp.behaviour["jwks"] = lambda h: h.send(200, document)
    client = Client(raise_request_exception=False)
    response = sign_in(client, idp)
    assert response.status_code == 502
    assert "signature cannot be checked" in message(response)
    assert failures() == 1
    assert signed_in(client) is None


# 5. Tokens without a key id ------------------------------------------------------------------------------------


def ec_jwk() -> dict:
    key = ec.generate_private_key(ec.SECP256R1())
    return {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "use": "sig", "alg": "ES256"}


def test_a_token_without_kid_from_a_provider_with_one_key_signs_in(idp, bob):
    idp.keys, idp.signing = [(KEY, None)], (KEY, None)
    client = Client()
    response = sign_in(client, idp)
    assert response.status_code == 302, message(response)
    assert str(signed_in(client)) == str(bob.pk)


def test_a_token_without_kid_uses_the_only_key_that_fits_its_algorithm(idp, bob):
    idp.signing = (KEY, None)
    idp.behaviour["jwks"] = lambda h: h.send(200, {"keys": [ec_jwk(), jwk_of(KEY, None)]})
    client = Client()
    response = sign_in(client, idp)
    assert response.status_code == 302, message(response)
    assert str(signed_in(client)) == str(bob.pk)


def test_a_token_without_kid_from_a_provider_with_several_keys_is_refused(idp, bob):
    idp.keys, idp.signing = [(KEY, None), (KEY2, None)], (KEY, None)
    client = Client()
    response = sign_in(client, idp)
    assert response.status_code == 502
    assert "several" in message(response)
    assert failures() == 1
    assert signed_in(client) is None


# 6. An authorization endpoint with its own query ---------------------------------------------------------------


def test_the_authorization_endpoints_own_query_is_kept(idp):
    endpoint = f"{idp.issuer}/authorize?p=b2c_1_signin&response_type=token"
    idp.behaviour["discovery"] = lambda h: h.send(200, {**idp.document(), "authorization_endpoint": endpoint})
    response = Client().get("/oidc/authenticate/")
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == "/authorize"
    asked = parse_qsl(location.query)
    assert ("p", "b2c_1_signin") in asked
    assert [v for k, v in asked if k == "response_type"] == ["code"]  # the portal's own parameters win
    assert parse_qs(location.query)["client_id"] == [CLIENT_ID]


def test_a_happy_sign_in_through_the_provider(idp, bob):
    idp.userinfo = {"sub": "idp-bob", "name": "Bob"}
    client = Client()
    response = sign_in(client, idp)
    assert response.status_code == 302, message(response)
    assert str(signed_in(client)) == str(bob.pk)
    assert idp.hits == {"discovery": 1, "token": 1, "jwks": 1, "userinfo": 1}
    assert CLIENT_SECRET not in response["Location"]


def test_an_id_token_made_for_another_sign_in_is_refused(idp, bob):
    """A token whose nonce is not the one this sign-in asked for (a replayed token) signs no one in."""
    idp.claims.update(nonce="the-nonce-of-another-sign-in")
    client = Client()
    response = sign_in(client, idp)
    assert signed_in(client) is None
    assert response.status_code in (400, 403)
    assert "nonce does not match" in message(response)
