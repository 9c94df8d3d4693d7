"""Single sign-on's signing keys are cached, and a provider's whole answer (headers too) ends at the deadline.

Against a provider over real HTTP on 127.0.0.1 (tests/portal/fake_idp.py), through the portal's real start and
callback views: the key set is fetched once for many sign-ins, fetched again at once when the provider rotates
its keys but at most once a minute for tokens that name keys it never had, and a provider that sends its status
line and headers a byte at a time is cut off at OIDC_DEADLINE_SECONDS.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from portal import oidc
from portal.models import Action, AuditEvent
from tests.portal.fake_idp import CLIENT_ID, CLIENT_SECRET, KEY, KEY2, IdP, jwk_of, sign_in, signed_in, start

pytestmark = pytest.mark.django_db

DEADLINE = 1  # seconds, OIDC_DEADLINE_SECONDS of the slow tests
RELEASE = 8  # the provider's endless answers end here whatever happens, so a failing run still ends


@pytest.fixture
def idp(settings):
    server = IdP()
    settings.OIDC_ISSUER = server.issuer
    settings.OIDC_CLIENT_ID, settings.OIDC_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
    oidc._discovered.clear()
    cache.clear()
    yield server
    server.close()
    oidc._discovered.clear()
    cache.clear()


def failures() -> int:
    return AuditEvent.objects.filter(action=Action.SIGN_IN_FAILED).count()


def message(response) -> str:
    return (response.context or {}).get("message") or ""


def signs_in(idp: IdP, bob) -> None:
    client = Client()
    response = sign_in(client, idp)
    assert response.status_code == 302, message(response)
    assert str(signed_in(client)) == str(bob.pk)


# 1. The key set is cached ---------------------------------------------------------------------------------------


def test_two_sign_ins_fetch_the_signing_keys_once(idp, bob):
    signs_in(idp, bob)
    signs_in(idp, bob)
    assert idp.hits["jwks"] == 1
    assert idp.hits["discovery"] == 1


def test_sign_ins_go_on_while_the_key_endpoint_fails(idp, bob):
    signs_in(idp, bob)
    idp.behaviour["jwks"] = lambda h: h.send(500, {"error": "server_error"})
    signs_in(idp, bob)
    assert idp.hits["jwks"] == 1


@pytest.mark.parametrize("kids", [("k1", "k2"), (None, None)], ids=["named keys", "tokens without kid"])
def test_a_provider_that_rotates_its_key_still_signs_people_in_at_once(idp, bob, kids):
    old, new = kids
    idp.keys, idp.signing = [(KEY, old)], (KEY, old)
    signs_in(idp, bob)
    idp.keys, idp.signing = [(KEY2, new)], (KEY2, new)  # the old key is gone at the provider
    signs_in(idp, bob)
    assert idp.hits["jwks"] == 2
    signs_in(idp, bob)  # the new set is the cached one now
    assert idp.hits["jwks"] == 2


@pytest.mark.parametrize(
    "forged, refusal",
    [
        (lambda n: (KEY2, f"made-up-{n}"), "none of its keys fits the ID token"),
        (lambda n: (KEY2, None), "does not check out"),
    ],
    ids=["made-up kids", "no kid, another key"],
)
def test_tokens_for_keys_the_provider_never_had_fetch_the_keys_at_most_once_a_minute(
    idp, bob, time_machine, forged, refusal
):
    signs_in(idp, bob)
    assert idp.hits["jwks"] == 1
    for n in range(5):
        idp.signing = forged(n)
        client = Client()
        response = sign_in(client, idp)
        assert response.status_code in (403, 502)
        assert refusal in message(response)
        assert signed_in(client) is None
    assert idp.hits["jwks"] == 2, "one look for a rotation, then the flood asks the provider nothing"
    assert failures() == 5
    time_machine.move_to(timezone.now() + timedelta(seconds=61))
    idp.signing = forged(99)
    assert sign_in(Client(), idp).status_code in (403, 502)
    assert idp.hits["jwks"] == 3
    idp.signing = (KEY, "k1")
    signs_in(idp, bob)  # the real key still works, from the cache
    assert idp.hits["jwks"] == 3


def test_a_provider_asking_for_a_shorter_cache_life_is_asked_again_after_it(idp, bob, time_machine):
    answer = {"keys": [jwk_of(KEY, "k1")]}
    idp.behaviour["jwks"] = lambda h: send_with_cache_control(h, answer, "public, max-age=120")
    signs_in(idp, bob)
    time_machine.move_to(timezone.now() + timedelta(seconds=100))
    signs_in(idp, bob)
    assert idp.hits["jwks"] == 1
    time_machine.move_to(timezone.now() + timedelta(seconds=30))
    signs_in(idp, bob)
    assert idp.hits["jwks"] == 2


def send_with_cache_control(handler, document: dict, cache_control: str) -> None:
    data = json.dumps(document).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.send_header("Cache-Control", cache_control)
    handler.end_headers()
    handler.wfile.write(data)


# 2. The deadline bounds the headers too -------------------------------------------------------------------------


@pytest.fixture
def deadline(idp, settings):
    settings.OIDC_DEADLINE_SECONDS = DEADLINE
    timer = threading.Timer(RELEASE, idp.stop.set)
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()


def dribbled_headers(idp: IdP, every: float = 0.2):
    """An answer whose status line and headers come a byte every `every` seconds, without end (until idp.stop)."""

    def answer(handler):
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: "
        try:
            for byte in itertools.chain(head, itertools.repeat(ord("a"))):
                if idp.stop.wait(every):
                    break
                handler.wfile.write(bytes([byte]))
        except OSError:
            pass
        handler.close_connection = True

    return answer


def test_a_start_whose_discovery_headers_dribble_ends_at_the_deadline(idp, deadline):
    idp.behaviour["discovery"] = dribbled_headers(idp)
    began = time.monotonic()
    response = Client().get("/oidc/authenticate/")
    took = time.monotonic() - began
    assert took < DEADLINE + 2, f"the sign-in start held its thread {took:.1f} s"
    assert response.status_code == 502
    assert f"took longer than {DEADLINE} seconds to answer" in message(response)
    assert failures() == 1


@pytest.mark.parametrize("endpoint", ["token", "jwks", "userinfo"])
def test_a_callback_whose_provider_dribbles_its_headers_ends_at_the_deadline(idp, bob, deadline, endpoint):
    idp.userinfo = {"sub": "idp-bob"}
    client = Client()
    state, code = start(client, idp)
    idp.behaviour[endpoint] = dribbled_headers(idp)
    began = time.monotonic()
    response = client.get("/oidc/callback/", {"code": code, "state": state})
    took = time.monotonic() - began
    assert took < DEADLINE + 2, f"the callback held its thread {took:.1f} s"
    assert response.status_code == 502
    assert f"took longer than {DEADLINE} seconds to answer" in message(response)
    assert failures() == 1
    assert signed_in(client) is None
