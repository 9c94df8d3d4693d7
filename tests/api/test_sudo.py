"""Sudo mode on the API: a browser session must confirm the password before rotating, revoking or minting."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from gateways.models import GatewayKey
from portal.models import AccessToken
from tests.conftest import TOKAIFY_SECRET, confirm_password

pytestmark = pytest.mark.django_db

ROTATED = "sk-rotated-by-session-000011112222"


def test_a_session_cannot_rotate_a_key_over_the_api_without_the_password(client, alice, tokaify_key):
    client.force_login(alice)
    url = f"/api/v1/keys/{tokaify_key.id}/"
    response = client.patch(url, {"secret": ROTATED}, content_type="application/json")
    assert response.status_code == 403
    assert "/sudo/" in response.json()["detail"] and "password" in response.json()["detail"]
    assert GatewayKey.objects.get(pk=tokaify_key.pk).reveal_secret() == TOKAIFY_SECRET

    confirm_password(client, alice)
    assert client.patch(url, {"secret": ROTATED}, content_type="application/json").status_code == 200
    assert GatewayKey.objects.get(pk=tokaify_key.pk).reveal_secret() == ROTATED


def test_a_session_cannot_revoke_a_key_over_the_api_without_the_password(client, alice, tokaify_key):
    client.force_login(alice)
    url = f"/api/v1/keys/{tokaify_key.id}/"
    response = client.delete(url)
    assert response.status_code == 403 and "/sudo/" in response.json()["detail"]
    assert GatewayKey.objects.get(pk=tokaify_key.pk).state == "active"

    confirm_password(client, alice)
    assert client.delete(url).status_code == 204
    assert GatewayKey.objects.get(pk=tokaify_key.pk).state == "revoked"


def test_sudo_mode_runs_out_after_sudo_mode_seconds(client, alice, tokaify_key, settings, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    client.force_login(alice)
    confirm_password(client, alice)
    time_machine.shift(timedelta(seconds=settings.SUDO_MODE_SECONDS + 1))
    assert client.delete(f"/api/v1/keys/{tokaify_key.id}/").status_code == 403


def test_a_session_changes_key_settings_without_the_password(client, alice, tokaify_key):
    client.force_login(alice)
    response = client.patch(f"/api/v1/keys/{tokaify_key.id}/", {"label": "Renamed"}, content_type="application/json")
    assert response.status_code == 200
    assert GatewayKey.objects.get(pk=tokaify_key.pk).label == "Renamed"


def test_members_learn_they_may_not_act_before_any_password_prompt(client, bob, tokaify_key):
    client.force_login(bob)
    response = client.delete(f"/api/v1/keys/{tokaify_key.id}/")
    assert response.status_code in (403, 404)
    assert "/sudo/" not in response.json()["detail"]


def test_a_token_is_the_credential_and_needs_no_sudo(api, alice, tokaify_key):
    client = api(alice)
    url = f"/api/v1/keys/{tokaify_key.id}/"
    assert client.patch(url, {"secret": ROTATED}, format="json").status_code == 200
    assert client.delete(url).status_code == 204


def test_making_a_token_on_the_web_asks_for_the_password_first(client, bob):
    client.force_login(bob)
    response = client.post("/tokens/", {"name": "sneaky", "days": 30, "next": "/tokens/"})
    assert response.status_code == 302 and response["Location"].startswith("/sudo/")
    assert not AccessToken.objects.filter(user=bob).exists()

    confirm_password(client, bob)
    assert "Your new token" in client.post("/tokens/", {"name": "laptop", "days": 30}, follow=True).content.decode()
    assert AccessToken.objects.filter(user=bob, name="laptop").exists()


def test_a_web_token_without_a_chosen_expiry_gets_the_default(client, bob, settings):
    settings.ACCESS_TOKEN_DEFAULT_DAYS = 12
    client.force_login(bob)
    assert 'value="12"' in client.get("/tokens/").content.decode()
    confirm_password(client, bob)
    client.post("/tokens/", {"name": "laptop", "days": ""})
    token = AccessToken.objects.get(user=bob)
    assert abs(token.expires_at - (timezone.now() + timedelta(days=12))) < timedelta(minutes=1)


def test_issue_access_token_expires_by_default_and_says_when(bob, capsys, settings):
    settings.ACCESS_TOKEN_DEFAULT_DAYS = 90
    call_command("issue_access_token", "bob")
    out, err = capsys.readouterr()
    token = AccessToken.objects.get(user=bob)
    assert abs(token.expires_at - (timezone.now() + timedelta(days=90))) < timedelta(minutes=1)
    assert f"expires {token.expires_at:%Y-%m-%d}" in err
    assert out.strip().startswith(f"ptl_{token.lookup_id}_")


@pytest.mark.parametrize("days", ["0", "-3", "3651"])
def test_issue_access_token_refuses_a_token_that_never_or_hardly_ever_expires(bob, days):
    with pytest.raises(CommandError, match="--days must be from 1 to 3650"):
        call_command("issue_access_token", "bob", "--days", days)
    assert not AccessToken.objects.filter(user=bob).exists()


def test_every_way_of_issuing_gives_an_expiring_token(alice):
    token, _ = AccessToken.issue(alice)
    assert token.expires_at is not None and token.is_live
