"""The audit chain holds whatever reaches it: any client address, any stored form, both databases."""

from __future__ import annotations

import ipaddress

import pytest
from django.core.management import call_command
from django.test import RequestFactory

from portal import audit
from portal.models import Action, AuditEvent

pytestmark = pytest.mark.django_db

# (what the proxy appended, what the row stores); PostgreSQL and SQLite give back different
# spellings of the same address, and some of these are not addresses at all.
FORWARDED_FORMS = [
    ("2001:DB8::2", "2001:db8::2"),
    ("0:0:0:0:0:0:0:1", "::1"),
    ("::ffff:127.0.0.1", "127.0.0.1"),
    ("127.000.000.001", None),
    ("not-an-ip", None),
    ("::1.2.3.4", "::102:304"),
    ("fe80::1%eth0", "fe80::1"),
    ("203.0.113.9", "203.0.113.9"),
]


def same_address(got: str | None, expected: str | None) -> bool:
    """PostgreSQL spells some addresses its own way (`::1.2.3.4`); compare the addresses themselves."""
    if got is None or expected is None:
        return got is expected
    return ipaddress.ip_address(got) == ipaddress.ip_address(expected)


@pytest.mark.parametrize("forwarded, stored", FORWARDED_FORMS)
def test_an_unauthenticated_request_from_any_address_keeps_the_chain_intact(
    client, settings, forwarded, stored, capsys
):
    settings.USE_X_FORWARDED_FOR = True
    response = client.post("/login/", {"username": "nobody", "password": "wrong"}, HTTP_X_FORWARDED_FOR=forwarded)
    assert response.status_code == 200
    event = AuditEvent.objects.get(action=Action.SIGN_IN_FAILED)
    assert same_address(event.ip_address, stored)
    call_command("verify_audit")
    assert "intact: 1 event(s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "forwarded, proxies, expected",
    [
        ("1.2.3.4, 5.6.7.8", 1, "5.6.7.8"),  # the client wrote 1.2.3.4; our proxy appended 5.6.7.8
        ("6.6.6.6, 1.2.3.4, 5.6.7.8", 2, "1.2.3.4"),
        ("5.6.7.8", 2, "5.6.7.8"),  # reached the inner proxy directly: the address it saw
        ("", 1, "10.0.0.9"),  # no proxy in between: the socket's address
    ],
)
def test_the_address_is_the_one_the_trusted_proxy_appended(settings, forwarded, proxies, expected):
    settings.USE_X_FORWARDED_FOR = True
    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get("/", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR="10.0.0.9")
    assert audit.client_ip(request) == expected


def test_forwarded_addresses_are_ignored_unless_configured(settings):
    settings.USE_X_FORWARDED_FOR = False
    request = RequestFactory().get("/", HTTP_X_FORWARDED_FOR="1.2.3.4", REMOTE_ADDR="10.0.0.9")
    assert audit.client_ip(request) == "10.0.0.9"


def test_details_hash_the_same_after_the_database_round_trip(alice, capsys):
    audit.record(Action.SIGN_IN, actor=alice, details={"big": 1e20, "ratio": 0.1, "whole": 2.0, "items": (1, "x")})
    call_command("verify_audit")
    assert "intact: 1 event(s)" in capsys.readouterr().out
