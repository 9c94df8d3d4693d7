"""Time limits that run out in the middle of a task: each says what ran out, and when, rather than a vague refusal."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from rest_framework.test import APIClient

from gateways.models import GatewayKey, KeyState
from portal import audit
from portal.models import AccessToken, Action
from portal.times import written_time
from tests.conftest import confirm_password

pytestmark = pytest.mark.django_db

UNKNOWN = "The access token is invalid, expired or revoked."


def wall(moment) -> str:
    """A moment as an admin types it into a datetime-local field."""
    return timezone.localtime(moment).strftime("%Y-%m-%dT%H:%M")


def main_of(response) -> str:
    html = response.content.decode()
    return " ".join(html[html.index("<main") : html.index("</main>")].split())


# Key expiries that pass while the form is open


def test_a_key_stored_with_an_expiry_that_passed_while_the_form_was_open_warns_it_expired(
    client, alice, tokaify, time_machine
):
    client.force_login(alice)
    expiry = timezone.now() + timedelta(minutes=10)
    time_machine.move_to(timezone.now() + timedelta(minutes=15))
    saved = client.post(
        "/teams/web/keys/new/",
        {
            "gateway": tokaify.slug,
            "label": "Trial",
            "secret": "sk-tok-trial-0000111122223333",
            "expires_at": wall(expiry),
        },
        follow=True,
    )
    key = GatewayKey.objects.get(label="Trial")
    assert key.state == KeyState.EXPIRED
    said = [(m.level_tag, m.message) for m in saved.context["messages"]]
    assert said == [
        (
            "warning",
            f"Key Trial stored as {key.masked}, but the key expired at {written_time(key.expires_at)}: it yields no "
            "set-up and live devices are refused until you set a later expiry.",
        )
    ]


def test_a_key_stored_with_a_later_expiry_still_says_to_assign_it(client, alice, tokaify):
    client.force_login(alice)
    later = timezone.now() + timedelta(days=30)
    saved = client.post(
        "/teams/web/keys/new/",
        {"gateway": tokaify.slug, "label": "Year", "secret": "sk-tok-year-0000111122223333", "expires_at": wall(later)},
        follow=True,
    )
    key = GatewayKey.objects.get(label="Year")
    assert [m.message for m in saved.context["messages"]] == [
        f"Key Year stored as {key.masked}. Assign it to members below."
    ]


def test_a_rotation_with_an_expiry_that_passed_meanwhile_warns_the_key_expired(
    client, alice, tokaify_key, time_machine
):
    client.force_login(alice)
    confirm_password(client, alice)
    assert client.get(f"/keys/{tokaify_key.id}/rotate/").status_code == 200
    expiry = timezone.now() + timedelta(minutes=5)
    time_machine.move_to(timezone.now() + timedelta(minutes=6))
    done = client.post(
        f"/keys/{tokaify_key.id}/rotate/",
        {"secret": "sk-tok-rotated-0000111122223333", "expires_at": wall(expiry), "initial-expires_at": ""},
        follow=True,
    )
    key = GatewayKey.objects.get(pk=tokaify_key.pk)
    assert key.masked != tokaify_key.masked and key.state == KeyState.EXPIRED
    said = [(m.level_tag, m.message) for m in done.context["messages"]]
    assert said == [
        (
            "warning",
            f"Secret rotated (the key is now {key.masked}), but the key expired at {written_time(key.expires_at)}: "
            "it yields no set-up and live devices are refused until you set a later expiry.",
        )
    ]


# Access tokens that run out between two requests


def second_page_after(alice, time_machine, *, revoke: bool = False):
    """A script reads the audit list's first page with a token that lives 10 minutes, then the next page after 11."""
    for n in range(5):
        audit.record(Action.PASSWORD_CHANGED, actor=alice, details={"n": n})
    token, raw = AccessToken.issue(alice, name="nightly export", expires_at=timezone.now() + timedelta(minutes=10))
    script = APIClient()
    script.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    first = script.get("/api/v1/audit-events/?limit=2")
    assert first.status_code == 200, first.content
    if revoke:
        AccessToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    else:
        time_machine.move_to(timezone.now() + timedelta(minutes=11))
    return script.get(first.json()["next"]), AccessToken.objects.get(pk=token.pk)


def test_a_token_that_expired_between_two_pages_says_when_it_expired(alice, time_machine):
    second, token = second_page_after(alice, time_machine)
    assert second.status_code == 401
    assert second.json()["detail"] == (
        f"This access token expired on {written_time(token.expires_at)}; make a new one at http://testserver/tokens/."
    )


def test_a_token_revoked_between_two_pages_says_when_it_was_revoked(alice, time_machine):
    second, token = second_page_after(alice, time_machine, revoke=True)
    assert second.status_code == 401
    assert second.json()["detail"] == (
        f"This access token was revoked on {written_time(token.revoked_at)}; "
        "make a new one at http://testserver/tokens/."
    )


@pytest.mark.parametrize("case", ["unknown id", "wrong secret", "deactivated owner"])
def test_a_token_that_does_not_match_or_whose_owner_left_says_nothing_about_what_exists(alice, case):
    token, raw = AccessToken.issue(alice, name="laptop")
    AccessToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(days=1))
    sent = {
        "unknown id": "ptl_0123456789ab_" + raw.rsplit("_", 1)[1],
        "wrong secret": raw[:-4] + "AAAA",
        "deactivated owner": raw,
    }[case]
    if case == "deactivated owner":
        alice.is_active = False
        alice.save()
    script = APIClient()
    script.credentials(HTTP_AUTHORIZATION=f"Bearer {sent}")
    answer = script.get("/api/v1/audit-events/")
    assert answer.status_code == 401
    assert answer.json()["detail"].startswith(UNKNOWN), answer.json()
    assert "expired on" not in answer.json()["detail"]


# Password reset links that expire while the new password is typed


def reset_link(user) -> str:
    return f"/reset/{urlsafe_base64_encode(force_bytes(user.pk))}/{default_token_generator.make_token(user)}/"


def test_a_reset_form_sent_after_its_link_expired_says_when_and_that_the_password_was_not_saved(
    bob, client, settings, time_machine
):
    made = timezone.now()
    link = reset_link(bob)
    time_machine.move_to(made + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT - 60))
    opened = client.get(link, follow=True)
    form_url = opened.redirect_chain[-1][0]
    assert 'name="new_password1"' in opened.content.decode()
    time_machine.move_to(timezone.now() + timedelta(seconds=120))
    new = "a-brand-new-password-77"
    sent = client.post(form_url, {"new_password1": new, "new_password2": new})
    bob.refresh_from_db()
    assert not bob.check_password(new)
    main = main_of(sent)
    expired_at = made.replace(microsecond=0) + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT)
    assert "This link expired at" in main and "your new password was not saved. Ask for a" in main, main
    assert expired_at.isoformat() in main, main  # the moment filter's <time datetime="…">
    assert "used already" not in main


def test_a_reset_form_whose_link_was_used_meanwhile_keeps_the_three_reasons(bob, client, settings, time_machine):
    """A used link (the password changed since) is not told apart from others, however old it is."""
    opened = client.get(reset_link(bob), follow=True)
    form_url = opened.redirect_chain[-1][0]
    bob.set_password("changed-in-another-tab-42")
    bob.save()
    time_machine.move_to(timezone.now() + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 60))
    sent = client.post(form_url, {"new_password1": "x-new-password-99", "new_password2": "x-new-password-99"})
    main = main_of(sent)
    assert "used already, it has expired, or it was copied only in part" in main and "expired at" not in main


def test_a_reset_form_without_a_link_opened_keeps_the_three_reasons(bob, client):
    uid = urlsafe_base64_encode(force_bytes(bob.pk))
    sent = client.post(f"/reset/{uid}/set-password/", {"new_password1": "x-new-pw-99", "new_password2": "x-new-pw-99"})
    main = main_of(sent)
    assert "used already, it has expired, or it was copied only in part" in main and "expired at" not in main


def test_the_reset_form_reloaded_after_its_link_expired_says_when_without_claiming_a_password_was_sent(
    bob, client, settings, time_machine
):
    opened = client.get(reset_link(bob), follow=True)
    form_url = opened.redirect_chain[-1][0]
    time_machine.move_to(timezone.now() + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 60))
    main = main_of(client.get(form_url))
    assert "This link expired at" in main and "not saved" not in main and "used already" not in main, main
