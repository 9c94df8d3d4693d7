"""What a caller who is not signed in can make the portal mail or record, request after request: one reset mail per
account every few minutes, one audit row per lock-out, none for SSO answers to sign-ins nobody started here."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from portal import lockouts
from portal.email_confirmation import CONFIRMATION_RESEND_AFTER
from portal.mail import wait_for_mails_after_response
from portal.models import Action, AuditEvent
from tests.portal.sso_answers import deliver, signed_in, start

pytestmark = pytest.mark.django_db


# P1. The reset form mails one account at most once per CONFIRMATION_RESEND_AFTER -------------------------------------


def ask_for_reset(email: str) -> str:
    """Post the reset form from a fresh browser, as anyone can; returns where the portal sends it, once the mail the
    request started after its answer (if any) is sent."""
    response = Client().post("/password_reset/", {"email": email})
    assert response.status_code == 302
    wait_for_mails_after_response()
    return response["Location"]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the reset mail goes in a thread of its own
def test_thirty_reset_requests_for_bobs_address_mail_him_one_link(bob, smtp):
    answers = {ask_for_reset("bob@example.com") for _ in range(30)}
    assert len(smtp.to("bob@example.com")) == 1
    assert answers == {"/password_reset/done/"}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the reset mail goes in a thread of its own
def test_a_throttled_request_is_answered_like_a_sent_one_and_an_unknown_address(bob, smtp):
    first = Client().post("/password_reset/", {"email": "bob@example.com"}, follow=True)
    wait_for_mails_after_response()
    throttled = Client().post("/password_reset/", {"email": "bob@example.com"}, follow=True)
    wait_for_mails_after_response()
    unknown = Client().post("/password_reset/", {"email": "nobody@example.com"}, follow=True)
    wait_for_mails_after_response()
    assert len(smtp.to("bob@example.com")) == 1
    pages = [(r.redirect_chain, r.status_code, r.content.decode()) for r in (first, throttled, unknown)]
    assert pages[0] == pages[1] == pages[2]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the reset mail goes in a thread of its own
def test_bobs_next_reset_link_goes_once_the_interval_has_passed(bob, smtp):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        ask_for_reset("bob@example.com")
        clock.shift(CONFIRMATION_RESEND_AFTER - timedelta(seconds=1))
        ask_for_reset("bob@example.com")
        assert len(smtp.to("bob@example.com")) == 1
        clock.shift(timedelta(seconds=1))
        ask_for_reset("bob@example.com")
        assert len(smtp.to("bob@example.com")) == 2


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the reset mail goes in a thread of its own
def test_another_servers_cache_does_not_reopen_the_throttle(bob, smtp):
    """Every server must see the last mail: a second server (its own empty cache) sends no second one."""
    ask_for_reset("bob@example.com")
    cache.clear()
    ask_for_reset("bob@example.com")
    assert len(smtp.to("bob@example.com")) == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the reset mail goes in a thread of its own
def test_bobs_throttle_does_not_hold_back_alices_link(alice, bob, smtp):
    ask_for_reset("bob@example.com")
    ask_for_reset("alice@example.com")
    ask_for_reset("bob@example.com")
    assert len(smtp.to("bob@example.com")) == 1
    assert len(smtp.to("alice@example.com")) == 1


# P2. Sign-ins the lock-out refuses: one audit row per lock ------------------------------------------------------------


def failed_sign_ins(username: str = "alice") -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=Action.SIGN_IN_FAILED, target=username).order_by("id"))


def guess(client, password: str = "guess") -> int:
    return client.post("/login/", {"username": "alice", "password": password}).status_code


def test_each_failure_before_the_lock_and_the_first_refusal_are_recorded_then_no_more(client, alice, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        guess(client)  # the third one locks the name out (and is refused with the lock-out page)
    assert [e.details for e in failed_sign_ins()] == [{}, {}, {}]
    for _ in range(100):
        assert guess(client) == 429
    assert guess(client, "pass-alice") == 429  # the right password is refused too while the lock holds
    rows = failed_sign_ins()
    assert len(rows) == 4
    assert rows[-1].details == {"locked_out": True}  # the lock-out is in the trail


def test_a_new_lock_after_one_is_lifted_is_recorded_again(client, alice, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(10):
        guess(client)
    assert len(failed_sign_ins()) == 3
    lockouts.lift(lockouts.attempts_matching(username="alice"), via="test")
    for _ in range(10):
        guess(client)
    assert [e.details for e in failed_sign_ins()] == [{}, {}, {"locked_out": True}] * 2


def test_a_lock_that_cooled_off_is_a_new_lock(client, alice, settings):
    settings.AXES_FAILURE_LIMIT = 2
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for _ in range(5):
            guess(client)
        clock.shift(timedelta(hours=settings.AXES_COOLOFF_TIME, minutes=1))
        for _ in range(5):
            guess(client)
    assert [e.details for e in failed_sign_ins()] == [{}, {}, {"locked_out": True}] * 2


def test_another_address_locked_out_of_the_same_name_is_its_own_lock(alice, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for address in ("203.0.113.7", "198.51.100.9"):
        client = Client(REMOTE_ADDR=address)
        for _ in range(6):
            guess(client)
    rows = failed_sign_ins()
    assert [(e.ip_address, e.details) for e in rows if e.details] == [
        ("203.0.113.7", {"locked_out": True}),
        ("198.51.100.9", {"locked_out": True}),
    ]
    assert len(rows) == 6


# P3. SSO answers to sign-ins nobody started in this browser ---------------------------------------------------------

NOT_STARTED = "does not belong to a sign-in started in this browser"


@pytest.mark.parametrize(
    "answer",
    [
        {"state": "made-up", "code": "c"},
        {"state": "made-up", "error": "access_denied"},
        {"error": "access_denied"},
        {"code": "c"},
        {},
    ],
    ids=["made-up-state", "made-up-state-error", "error-without-state", "code-without-state", "nothing"],
)
def test_answers_to_no_sign_in_started_here_are_refused_with_a_sentence_and_record_nothing(provider, answer):
    for i in range(20):
        query = {k: f"{v}-{i}" if k == "state" else v for k, v in answer.items()}
        page = Client().get("/oidc/callback/", query)
        assert page.status_code == 400
        text = page.content.decode()
        assert NOT_STARTED in text or "carries no sign-in code" in text
    assert not AuditEvent.objects.filter(action=Action.SIGN_IN_FAILED).exists()


def test_forged_answers_to_a_sign_in_this_browser_started_are_recorded_once_per_start(provider, bob):
    browser = Client()
    started = start(browser)
    for i in range(20):
        page = browser.get("/oidc/callback/", {"state": f"forged-{i}", "code": "c"})
        assert page.status_code == 400 and NOT_STARTED in page.content.decode()
    [refused] = AuditEvent.objects.filter(action=Action.SIGN_IN_FAILED)
    assert refused.details["via"] == "sso" and "state does not match" in refused.details["reason"]

    start(browser)  # a second sign-in started: a forged answer to it is recorded too
    browser.get("/oidc/callback/", {"state": "forged-again", "code": "c"})
    assert AuditEvent.objects.filter(action=Action.SIGN_IN_FAILED).count() == 2

    response = deliver(browser, started, provider.answer(started, sub="bob-sub", email="bob@example.com"))
    assert response.status_code == 302 and signed_in(browser) == "bob"  # the sign-in started still gets its answer


def test_a_sign_in_started_here_that_the_provider_refuses_is_still_recorded(provider):
    browser = Client()
    state = parse_qs(urlsplit(start(browser)).query)["state"][0]
    browser.get("/oidc/callback/", {"state": state})  # no code
    [refused] = AuditEvent.objects.filter(action=Action.SIGN_IN_FAILED)
    assert "carries no sign-in code" in refused.details["reason"]


# P2, in a burst: a password checked while other tries of the burst finish is still recorded as checked ------------


def test_a_guess_checked_while_three_others_finish_is_still_recorded(alice, settings, monkeypatch):
    settings.AXES_FAILURE_LIMIT = 3
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    guess(attacker)  # 1 failure, recorded
    checked = []
    real_authenticate = ModelBackend.authenticate

    def slow_check(self, request, username=None, password=None, **kwargs):
        checked.append(password)
        if len(checked) == 1:
            # While this guess's password is being hashed, two other requests of the same burst finish.
            guess(Client(REMOTE_ADDR="203.0.113.7"), "parallel-1")  # checked: count 1 -> 2
            guess(Client(REMOTE_ADDR="203.0.113.7"), "parallel-2")  # checked: count 2 -> 3 (locks)
            guess(Client(REMOTE_ADDR="203.0.113.7"), "parallel-3")  # refused by the lock, unchecked: recorded once
        return real_authenticate(self, request, username=username, password=password, **kwargs)

    monkeypatch.setattr(ModelBackend, "authenticate", slow_check)
    guess(attacker, "outer")  # its password is checked (the lock was not engaged when it started)
    assert checked == ["outer", "parallel-1", "parallel-2"]  # the outer guess reached the real password check
    assert "parallel-3" not in checked  # the lock refused that one without a check
    rows = list(AuditEvent.objects.filter(action=Action.SIGN_IN_FAILED, target="alice").order_by("id"))
    plain = [e for e in rows if not (e.details or {}).get("locked_out")]
    # Four passwords were checked and refused (guess, parallel-1, parallel-2, outer): each must be in the trail as
    # a checked failure, beside the one lock-out row of parallel-3 (the outer one went missing when the count
    # read after its check decided).
    assert len(plain) == 4, [e.details for e in rows]
    assert len(rows) == 5, [e.details for e in rows]
