"""What the Django admin may not delete without a trace, and whose deliveries a team's admins may read."""

from __future__ import annotations

import pytest
from django.test import Client

from alerts.models import Delivery
from gateways.models import ProbeResult
from portal.models import AccessToken, AuditEvent
from portal.services import issue_token
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_a_probe_result_cannot_be_deleted_in_the_admin(root_client, tokenbay_key):
    """Deleting a key's newest, failing probe would bring its older 'ok' verdict back, with no audit row."""
    gateway = tokenbay_key.gateway
    ProbeResult.objects.create(key=tokenbay_key, gateway=gateway, verdict="ok")
    failing = ProbeResult.objects.create(key=tokenbay_key, gateway=gateway, verdict="auth_failed")
    assert root_client.post(f"/admin/gateways/proberesult/{failing.pk}/delete/", {"post": "yes"}).status_code == 403
    root_client.post(
        "/admin/gateways/proberesult/", {"action": "delete_selected", "_selected_action": [failing.pk], "post": "yes"}
    )
    assert ProbeResult.objects.filter(pk=failing.pk).exists()


def test_an_access_token_cannot_be_deleted_in_the_admin(root_client, bob):
    """A deleted token would leave no token.revoked row: it is revoked with the Revoked date, audited."""
    issue_token(user=bob, name="ci")
    row = AccessToken.objects.get(user=bob)
    events = AuditEvent.objects.count()
    assert root_client.post(f"/admin/portal/accesstoken/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    root_client.post(
        "/admin/portal/accesstoken/", {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
    )
    assert AccessToken.objects.filter(pk=row.pk).exists() and AuditEvent.objects.count() == events


def test_a_self_assigner_does_not_learn_the_staff_accounts_told_of_it(
    client, alice, tokaify_key, django_capture_on_commit_callbacks
):
    """With no other admin with an address, staff are told: their names and addresses are not web's to read."""
    make_user("ops-root", staff=True)
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(f"/keys/{tokaify_key.id}/assign/", {"username": "alice"}).status_code == 302
    told = Delivery.objects.filter(user__username="ops-root")
    assert told.exists()  # staff were told
    assert "ops-root" not in client.get("/deliveries/").content.decode()
    staff_view = Client()
    staff_view.force_login(make_user("ops-lead", staff=True))
    assert "ops-root" in staff_view.get("/deliveries/").content.decode()  # staff still see every delivery
