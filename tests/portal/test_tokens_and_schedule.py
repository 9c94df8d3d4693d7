"""Personal access tokens from the web, key expiry in the audit trail, and probes on a schedule."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from gateways.models import GatewayKey
from gateways.services import record_expirations, update_key_settings
from portal.models import AccessToken, AuditEvent
from tests.conftest import confirm_password
from tests.gateway_emulator import GatewayRules, running_emulator

pytestmark = pytest.mark.django_db


def test_a_developer_makes_a_token_sees_it_once_and_uses_it(client, bob, bob_assignment):
    client.force_login(bob)
    confirm_password(client, bob)
    page = client.post("/tokens/", {"name": "laptop install", "days": 30}, follow=True).content.decode()
    token = AccessToken.objects.get(user=bob)
    raw = re.search(rf"ptl_{token.lookup_id}_[A-Za-z0-9_-]+", page).group(0)
    assert token.expires_at is not None
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get(f"/api/v1/me/configs/{bob_assignment.id}/install.sh").status_code == 200
    assert raw not in client.get("/tokens/").content.decode()  # shown once
    assert AuditEvent.objects.filter(action="token.issued", target=token.lookup_id).exists()

    client.post(f"/tokens/{token.id}/revoke/")
    assert api.get("/api/v1/me/configs/").status_code == 401
    assert AuditEvent.objects.filter(action="token.revoked", target=token.lookup_id).exists()


def test_nobody_revokes_someone_elses_token(client, alice, bob):
    token, _ = AccessToken.issue(bob)
    client.force_login(alice)
    assert client.post(f"/tokens/{token.id}/revoke/").status_code == 404
    assert AccessToken.objects.get(pk=token.pk).revoked_at is None


def test_revoking_in_the_admin_is_audited(client, staff, bob):
    staff.is_superuser = True
    staff.save()
    token, _ = AccessToken.issue(bob, name="ci")
    client.force_login(staff)
    client.post(
        f"/admin/portal/accesstoken/{token.pk}/change/",
        {
            "name": "ci",
            "expires_at_0": "",
            "expires_at_1": "",
            "revoked_at_0": "2026-01-01",
            "revoked_at_1": "10:00:00",
        },
    )
    assert AccessToken.objects.get(pk=token.pk).revoked_at is not None
    assert AuditEvent.objects.get(action="token.revoked").actor_username == "staff"


def test_issue_access_token_prints_the_token_last_and_it_works(bob, capsys):
    call_command("issue_access_token", "bob", "--days", "7")
    raw = capsys.readouterr().out.strip().splitlines()[-1]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/me/configs/").status_code == 200


def test_issue_access_token_for_an_unknown_user_fails_with_a_sentence(db):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="no user called 'ghost'"):
        call_command("issue_access_token", "ghost")


def test_issue_access_token_with_a_name_longer_than_a_token_holds_fails_with_a_sentence(bob):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="--name is 101 characters long; a token's name holds at most 100"):
        call_command("issue_access_token", "bob", "--name", "n" * 101)
    assert not bob.access_tokens.exists()


def test_expiry_is_recorded_once_and_again_after_renewal(tokaify_key, alice):
    GatewayKey.objects.filter(pk=tokaify_key.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert record_expirations() == 1
    assert record_expirations() == 0
    event = AuditEvent.objects.get(action="key.expired")
    assert event.actor_username == "" and event.target == tokaify_key.short_fingerprint
    key = GatewayKey.objects.get(pk=tokaify_key.pk)
    update_key_settings(key=key, changes={"expires_at": timezone.now() - timedelta(seconds=1)}, actor=alice)
    assert record_expirations() == 1


def test_probe_due_honours_each_gateways_interval(tokenbay, tokenbay_key, capsys):
    from tests.conftest import TOKENBAY_SECRET

    with running_emulator(GatewayRules(auth_scheme="bearer", keys={TOKENBAY_SECRET})) as gw:
        tokenbay.base_url = gw.base_url
        tokenbay.probe_interval_minutes = 60
        tokenbay.save()
        call_command("probe", "--due")
        assert gw.probes_run() == 1
        call_command("probe", "--due")
        assert gw.probes_run() == 1
        assert "No key is due" in capsys.readouterr().out
        GatewayKey.objects.filter(pk=tokenbay_key.pk).update(last_probe_at=timezone.now() - timedelta(minutes=61))
        call_command("probe", "--due")
        assert gw.probes_run() == 2
