"""Values PostgreSQL refuses (a NUL, half a surrogate pair, a number or text past a column) from a gateway, an identity
provider, a terminal or an API client: each is stored cleaned or refused with a sentence, alike on both databases."""

from __future__ import annotations

import contextlib
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from axes.models import AccessAttempt
from django.core.management import CommandError, call_command
from django.test import Client

from gateways.models import ProbeResult
from portal.models import AccessToken, Action, AuditEvent, ExternalIdentity
from tests.conftest import TEST_AUDIT_KEYRING, TEST_KEYRING, production_env, run_manage
from tests.portal.conftest import provider  # noqa: F401
from tests.portal.sso_answers import deliver, signed_in, sso_sign_in, start

pytestmark = pytest.mark.django_db

# What sys.argv holds for a Latin-1 terminal's "zoë" under a UTF-8 locale: the byte 0xEB as half a surrogate pair.
LATIN1_ZOE = b"zo\xeb".decode("utf-8", "surrogateescape")
NOT_UTF8 = "is not valid UTF-8 text; check the terminal's encoding (LANG, LC_ALL)"


@contextlib.contextmanager
def fixed_answer_gateway(answers: dict[tuple[str, str], tuple[int, bytes]]):
    """A gateway on 127.0.0.1 that answers fixed bodies, as a misbehaving gateway may."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body = answers.get((self.command, self.path.split("?")[0]), (404, b'{"type":"error"}'))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# A JavaScript gateway cutting a message or a model id inside an emoji sends half of its surrogate pair.
CUT_ERROR = b'{"type":"error","error":{"type":"invalid_request_error","message":"Bad request \\ud83d"}}'
CUT_MODELS = b'{"data":[{"id":"claude-sonnet-4-5"},{"id":"claude-\\ud83d"}]}'


@pytest.mark.parametrize(
    "mode,answers,stored",
    [
        ("inference", {("POST", "/v1/messages"): (400, CUT_ERROR)}, lambda r: r.error_excerpt),
        ("reachability", {("GET", "/v1/models"): (200, CUT_MODELS)}, lambda r: r.details["models"][1]),
    ],
    ids=["error-message", "model-list"],
)
def test_a_gateway_answer_with_half_a_surrogate_pair_is_stored_with_a_replacement_character(
    api, alice, tokaify, tokaify_key, mode, answers, stored
):
    with fixed_answer_gateway(answers) as url:
        tokaify.base_url, tokaify.probe_mode = url, mode
        tokaify.save()
        answer = api(alice).post(f"/api/v1/keys/{tokaify_key.id}/probes/")
    assert answer.status_code == 201, answer.content[:300]
    result = ProbeResult.objects.get(key=tokaify_key)
    assert "\ufffd" in stored(result)  # half a pair kept as the replacement character, as a NUL is
    assert api(alice).get("/api/v1/probes/").status_code == 200
    page = Client()
    page.force_login(alice)
    assert page.get(f"/keys/{tokaify_key.id}/").status_code == 200


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "s" * 256, "email": "bob@example.com"},
        {"sub": "bob\x00sub", "email": "bob@example.com"},
        {"sub": "bob-sub", "email": "bob\x00@example.com"},
        {"sub": "bob\ud83dsub", "email": "bob@example.com"},
        {"sub": "bob-sub", "email": "bob\ud83d@example.com"},
        {"sub": "bob-sub", "email": "b" * 250 + "@example.com"},
        {"sub": "bob-sub", "email": "bob@example.com", "groups": ["web", "ops\x00"]},
    ],
    ids=["sub-256", "sub-nul", "email-nul", "sub-surrogate", "email-surrogate", "email-long", "groups-nul"],
)  # fmt: skip
def test_an_sso_claim_no_database_can_hold_is_refused_with_a_sentence_and_recorded(provider, bob, claims):  # noqa: F811
    client = Client()
    url = start(client)
    response = deliver(client, url, provider.answer(url, **claims))
    assert response.status_code == 403
    message = response.context["message"]
    assert "claim" in message and "Ask staff" in message, message
    assert signed_in(client) is None and not ExternalIdentity.objects.exists()
    refusal = AuditEvent.objects.get(action=Action.SIGN_IN_FAILED)
    assert refusal.details["reason"] == message[:300]


@pytest.mark.parametrize("claims", [{"name": "Bob \ud83d"}, {"name": "Bob\x00"}, {"preferred_username": "bob\x00"}])
def test_a_claim_the_portal_neither_keeps_nor_looks_up_by_does_not_stop_a_sign_in(provider, bob, claims):  # noqa: F811
    """A display name cut inside an emoji is the provider's business: the portal stores no name, and a user name it
    makes from preferred_username keeps letters, digits and @.+-_ only."""
    bob.email = "bob@example.com"
    bob.save()
    client = Client()
    url = start(client)
    response = deliver(client, url, provider.answer(url, sub="bob-sub", email="bob@example.com", **claims))
    assert response.status_code == 302
    assert signed_in(client) == "bob"


def test_an_sso_subject_of_255_characters_signs_in_and_is_kept_whole(provider, bob):  # noqa: F811
    bob.email = "bob@example.com"
    bob.save()
    client = Client()
    response = sso_sign_in(client, provider, sub="s" * 255, email="bob@example.com")
    assert response.status_code == 302
    assert signed_in(client) == "bob"
    assert ExternalIdentity.objects.get().subject == "s" * 255


def run(*args: str) -> str:
    """The command's output, or its CommandError's sentence; any other exception fails the test."""
    out = io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=io.StringIO())
    except CommandError as error:
        return f"refused: {error}"
    return out.getvalue()


@pytest.mark.parametrize(
    "args,address",
    [
        (["axes_reset_ip", "not-an-address"], "not-an-address"),
        (["axes_reset_ip", "10.0.0.1", "10.0.0.300"], "10.0.0.300"),
        (["axes_reset_ip_username", "portal.example.com", "bob"], "portal.example.com"),
    ],
    ids=["word", "octet-past-255", "host-name"],
)
def test_unlocking_something_that_is_no_ip_address_is_refused_naming_it(bob, args, address):
    AccessAttempt.objects.create(ip_address="10.0.0.1", username="bob", failures_since_start=5, user_agent="x")
    said = run(*args)
    assert said.startswith("refused: ") and repr(address) in said and "an IP address" in said, said
    assert AccessAttempt.objects.count() == 1  # nothing lifted: the whole command is refused


def test_unlocking_a_valid_address_still_lifts_its_attempts(bob):
    AccessAttempt.objects.create(ip_address="2001:db8::1", username="bob", failures_since_start=5, user_agent="x")
    assert run("axes_reset_ip", "2001:db8::1").strip() == "1 attempts removed."


@pytest.mark.parametrize(
    "args,named",
    [
        (["axes_reset_username", "bob", LATIN1_ZOE], "The user name"),
        (["axes_reset_ip_username", "10.0.0.1", LATIN1_ZOE], "The user name"),
        (["issue_access_token", LATIN1_ZOE], "The user name"),
        (["issue_access_token", "bob", "--name", LATIN1_ZOE], "--name"),
        (["probe", "--team", LATIN1_ZOE], "--team"),
        (["probe", "--gateway", LATIN1_ZOE], "--gateway"),
        (["prune_audit", "--before", "2020-01-01", "--output", f"/tmp/{LATIN1_ZOE}.jsonl"], "--output"),
    ],
    ids=["axes_reset_username", "axes_reset_ip_username", "issue_access_token", "token-name", "probe-team",
         "probe-gateway", "prune-output"],
)  # fmt: skip
def test_an_argument_typed_on_a_non_utf8_terminal_is_refused_with_a_sentence(bob, args, named):
    said = run(*args)
    assert said.startswith(f"refused: {named} ") and NOT_UTF8 in said, said
    assert not AccessToken.objects.exists()


def test_a_non_utf8_argument_from_a_real_terminal_exits_with_the_sentence_not_a_traceback(tmp_path):
    env = production_env(tmp_path, PORTAL_ENCRYPTION_KEYS=TEST_KEYRING, PORTAL_AUDIT_KEYS=TEST_AUDIT_KEYRING)
    done = run_manage("issue_access_token", LATIN1_ZOE, env=env)  # argv holds the Latin-1 byte, as a shell gives it
    assert done.returncode != 0
    assert NOT_UTF8 in done.stderr and "Traceback" not in done.stderr, done.stderr[-800:]


@pytest.mark.parametrize("minutes", [0, 10081, 2**31, 2**63])
def test_the_api_refuses_a_probe_interval_out_of_range_with_the_rule(api, staff, tokaify, minutes):
    response = api(staff).patch("/api/v1/gateways/tokaify/", {"probe_interval_minutes": minutes}, format="json")
    assert response.status_code == 400
    assert "must be between 1 and 10080 (a week)" in response.json()["detail"], response.json()["detail"]
    tokaify.refresh_from_db()
    assert tokaify.probe_interval_minutes == 60


def test_the_api_takes_a_probe_interval_of_a_week(api, staff, tokaify):
    response = api(staff).patch("/api/v1/gateways/tokaify/", {"probe_interval_minutes": 10080}, format="json")
    assert response.status_code == 200, response.content
    tokaify.refresh_from_db()
    assert tokaify.probe_interval_minutes == 10080
