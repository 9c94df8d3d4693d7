"""Access tokens, the password prompt and a person's role: what a script or a team admin relies on."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from portal.models import AccessToken

pytestmark = pytest.mark.django_db


def refusal_for(raw: str) -> str:
    """The sentence the API gives a script that sends this token."""
    return APIClient().get("/api/v1/teams/", HTTP_AUTHORIZATION=f"Bearer {raw}").json()["detail"]


def test_your_role_in_the_team_list_is_the_callers_own(api, alice, bob, dave):
    """Each person sees their own role in "web", not the role of whoever joined first: the list and the team agree."""
    for user, role in ((alice, "admin"), (bob, "member"), (dave, "auditor")):
        listed = api(user).get("/api/v1/teams/").json()["results"]
        assert [t["your_role"] for t in listed if t["slug"] == "web"] == [role]
        assert api(user).get("/api/v1/teams/web/").json()["your_role"] == role


def test_a_deactivated_accounts_token_stops_working_at_once(api, bob):
    """Deactivating someone cuts off their scripts at the next call, without revoking each token by hand."""
    client = api(bob)
    assert client.get("/api/v1/teams/").status_code == 200
    get_user_model().objects.filter(pk=bob.pk).update(is_active=False)
    response = client.get("/api/v1/teams/")
    assert response.status_code == 401
    assert "invalid, expired or revoked" in response.json()["detail"]


def test_a_deactivated_accounts_revoked_token_gets_the_general_sentence(bob):
    """A deactivated person is not told their token "was revoked": that suggests a new token would help; it would not."""
    token, raw = AccessToken.issue(bob, name="ci")
    AccessToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    get_user_model().objects.filter(pk=bob.pk).update(is_active=False)
    detail = refusal_for(raw)
    assert "invalid, expired or revoked" in detail
    assert "was revoked on" not in detail


def test_a_revoked_token_that_also_has_an_expiry_says_it_was_revoked(bob):
    """A revoked token is refused as revoked, not as "expired on" a date still to come, which would puzzle its owner."""
    token, raw = AccessToken.issue(bob, name="ci")
    assert token.expires_at is not None  # a token gets an expiry by default
    AccessToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    detail = refusal_for(raw)
    assert "was revoked on" in detail
    assert "expired" not in detail


def test_the_bearer_scheme_is_accepted_in_any_case(bob):
    """`Authorization: bearer …` works like `Bearer …`: HTTP auth schemes are case-insensitive, and clients differ."""
    _, raw = AccessToken.issue(bob, name="ci")
    for scheme in ("bearer", "BEARER"):
        assert APIClient().get("/api/v1/teams/", HTTP_AUTHORIZATION=f"{scheme} {raw}").status_code == 200


def test_a_used_token_has_its_last_use_recorded(bob):
    """The Access tokens page shows when a token was last used, so its owner can tell a live one from a forgotten one."""
    token, raw = AccessToken.issue(bob, name="ci")
    assert token.last_used_at is None
    APIClient().get("/api/v1/teams/", HTTP_AUTHORIZATION=f"Bearer {raw}")
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_a_password_prompt_opened_for_another_action_offers_nothing_to_confirm(client, alice, tokenbay_key):
    """The password prompt confirms only the action it was opened for: another id must not carry out the waiting one."""
    client.force_login(alice)
    waiting = client.post(f"/keys/{tokenbay_key.id}/revoke/", {"next": f"/keys/{tokenbay_key.id}/"})
    assert waiting.status_code == 302 and "pending=" in waiting["Location"]
    page = client.get("/sudo/?pending=not-this-one&next=/", follow=True).content.decode()
    assert 'name="sudo_password"' not in page
    assert f"/keys/{tokenbay_key.id}/revoke/" not in page
