"""No encoding of a key a gateway echoes back is stored: the redactor, and every echo the emulator makes."""

from __future__ import annotations

import base64
import html
import json
import logging
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateways.models import ProbeResult
from portal.redaction import MARKER, RUN, redact
from tests.conftest import TOKENBAY_SECRET
from tests.gateway_emulator import ECHO_MODES, GatewayRules
from tests.gateways.test_probe import emulated, probe_against, texts  # noqa: F401 - emulated is a fixture

# Every character that common escaping changes, so each encoding below differs from the raw key.
SECRET = 'sk-echo/Qx7+Vb9=Lk"Zr4/Wm2+Tn8=Hp"Jd6'


def _b64(raw: str, *, urlsafe: bool = False, pad: bool = True) -> str:
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw.encode()).decode()
    return encoded if pad else encoded.rstrip("=")


ENCODINGS = {
    "raw": lambda s: s,
    "json": lambda s: json.dumps(s)[1:-1],
    "json_slash": lambda s: json.dumps(s)[1:-1].replace("/", "\\/"),
    "percent": lambda s: quote(s, safe=""),
    "percent_keep_slash": quote,
    "percent_plus": quote_plus,
    "base64": _b64,
    "base64_nopad": lambda s: _b64(s, pad=False),
    "base64_urlsafe": lambda s: _b64(s, urlsafe=True),
    "base64_urlsafe_nopad": lambda s: _b64(s, urlsafe=True, pad=False),
    "html": html.escape,
}


def leaks(stored: str, secret: str) -> list[str]:
    """What a reader of `stored` could learn of the secret: the encodings found, and runs of RUN characters."""
    found = [name for name, encode in ENCODINGS.items() if encode(secret) in stored]
    return found + [secret[i : i + RUN] for i in range(len(secret) - RUN + 1) if secret[i : i + RUN] in stored]


# --- The redactor ------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_each_encoding_of_the_secret_is_removed(encoding):
    text = f'{{"error": "invalid key {ENCODINGS[encoding](SECRET)}", "hint": "check it"}}'
    redacted = redact(text, SECRET)
    assert leaks(redacted, SECRET) == []
    assert MARKER in redacted and redacted.endswith('"hint": "check it"}')


def test_a_piece_of_the_secret_is_removed_and_other_text_is_kept():
    assert redact(f"key {SECRET[5:20]} unknown", SECRET) == f"key {MARKER} unknown"
    assert redact("invalid x-api-key: sk-someone-else", SECRET) == "invalid x-api-key: sk-someone-else"


@pytest.mark.parametrize("prefix", ["Bearer ", "x-api-key: ", "Authorization: Bearer "])
def test_a_secret_inside_a_longer_base64_text_is_removed_at_any_offset(prefix):
    encoded = _b64(prefix + SECRET)
    redacted = redact(encoded, SECRET)
    assert MARKER in redacted
    # Each piece left around the marker decodes to fewer than RUN whole bytes of the key.
    position = 0
    for piece in redacted.split(MARKER):
        start = encoded.index(piece, position)
        position = start + len(piece)
        first_byte, end_byte = -(-6 * start // 8), 6 * position // 8
        assert end_byte - max(first_byte, len(prefix)) < RUN, (piece, prefix)


def test_escapes_of_escapes_are_decoded():
    double = quote(json.dumps(SECRET)[1:-1], safe="")
    assert leaks(redact(f"echo={double}", SECRET), SECRET) == []
    assert MARKER in redact(f"echo={double}", SECRET)


@given(
    secret=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=RUN, max_size=64),
    before=st.text(max_size=30),
    after=st.text(max_size=30),
    encoding=st.sampled_from(sorted(ENCODINGS)),
)
def test_redaction_leaves_no_encoding_and_no_run_of_the_secret(secret, before, after, encoding):
    encoded = ENCODINGS[encoding](secret)
    redacted = redact(before + encoded + after, secret)
    assert encoded not in redacted
    assert not any(secret[i : i + RUN] in redacted for i in range(len(secret) - RUN + 1))


# --- Every echo of the emulator, with both auth schemes ------------------------------------------------

VERDICTS = {"html": "forbidden", "header_dump": "bad_request", "redirect": "wrong_base_url"}
VERDICTS |= {"retry_after": "rate_limited", "models": "ok"}


@pytest.mark.parametrize("scheme", ["x-api-key", "bearer"])
@pytest.mark.parametrize("mode", ECHO_MODES)
def test_a_probe_result_holds_no_encoding_of_an_echoed_key(mode, scheme):
    rules = GatewayRules(auth_scheme=scheme, keys={SECRET}, behaviour=f"echo_{mode}")
    outcome, _ = probe_against(rules, secret=SECRET)
    assert outcome.verdict == VERDICTS.get(mode, "auth_failed"), outcome
    stored = "\n".join(texts([outcome.hint, outcome.warning, outcome.error_excerpt, outcome.model, outcome.details]))
    assert leaks(stored, SECRET) == [], stored
    assert MARKER in stored, stored  # the echo reached the result, and was removed from it
    assert len(outcome.error_excerpt) <= 500 and len(outcome.details.get("body", "")) <= 500


def test_an_echoed_key_with_symbols_never_reaches_the_database_or_the_api(api, emulated, web, tokenbay, alice):  # noqa: F811
    from gateways.services import store_key

    key = store_key(team=web, gateway=tokenbay, label="Symbols", secret=SECRET, actor=alice)
    for mode in ("json", "percent_plus", "base64_header", "html"):
        emulated("tokenbay", GatewayRules(auth_scheme="bearer", keys={SECRET}, behaviour=f"echo_{mode}"))
        response = api(alice).post(f"/api/v1/keys/{key.id}/probes/")
        assert response.status_code == 201
        assert leaks(response.content.decode(), SECRET) == []
    rows = list(ProbeResult.objects.filter(key=key).values("hint", "warning", "error_excerpt", "details"))
    assert len(rows) == 4
    assert leaks("\n".join(texts(rows)), SECRET) == []
    assert leaks(api(alice).get("/api/v1/probes/").content.decode(), SECRET) == []


def test_a_model_list_shared_by_a_probe_batch_carries_no_other_keys_secret(emulated, web, tokenbay, alice):  # noqa: F811
    """One batch asks a gateway for its models once, with its first key; the others get the list without that key."""
    from gateways.probes.runner import probe_and_save
    from gateways.services import store_key

    other = "sk-bravo/Rt5+Yu8=Io3-Pa1+Sd4=Fg7"
    emulated("tokenbay", GatewayRules(auth_scheme="bearer", keys={SECRET, other}, behaviour="echo_models"))
    first = store_key(team=web, gateway=tokenbay, label="A", secret=SECRET, actor=alice)
    second = store_key(team=web, gateway=tokenbay, label="B", secret=other, actor=alice)
    probe_and_save([first, second], trigger="command", concurrency=1)
    rows = {row["key_id"]: row for row in ProbeResult.objects.values("key_id", "details", "error_excerpt")}
    assert rows.keys() == {first.id, second.id}
    assert all("models" in row["details"] for row in rows.values())  # the shared list reached every result
    stored = "\n".join(texts(list(rows.values())))
    assert leaks(stored, SECRET) == [] and leaks(stored, other) == [], stored


@pytest.mark.parametrize("debug", ["True", "False"])
def test_a_log_record_is_printed_once_and_log_level_holds_back_the_rest(tmp_path, debug):
    """One console handler, the root's: Django's own printed each record of `django.*` again with DEBUG on."""
    from tests.conftest import TEST_AUDIT_KEYRING, TEST_KEYRING, production_env, run_manage

    emit = "import logging; logging.getLogger('django.request').warning('marker-w'); "
    emit += "logging.getLogger('django.request').info('marker-i')"
    keyrings = {"PORTAL_ENCRYPTION_KEYS": TEST_KEYRING, "PORTAL_AUDIT_KEYS": TEST_AUDIT_KEYRING}
    env = production_env(tmp_path, DEBUG=debug, LOG_LEVEL="WARNING", **keyrings)
    result = run_manage("shell", "-c", emit, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("marker-w") == 1
    assert "marker-i" not in result.stderr


@pytest.mark.django_db
def test_a_log_message_quoting_an_opened_key_is_redacted(caplog, tokenbay_key):
    """Not only an exception's text: a log line's own message that quotes a key the vault opened."""
    caplog.set_level(logging.INFO)
    secret = tokenbay_key.reveal_secret()  # the vault opened it: it is in reach of the redaction
    logging.getLogger("gateways.probes").warning("gateway answered 401 for header %s", "Bearer " + secret.reveal())
    assert TOKENBAY_SECRET not in caplog.text
    assert all(TOKENBAY_SECRET not in record.getMessage() for record in caplog.records)
    assert MARKER in caplog.text
