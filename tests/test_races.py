"""Races on PostgreSQL: one request holds its transaction open while another acts on the same rows.

The first writer is the real service inside a transaction held open for a moment (a slow request);
the second is the real API, page or service, in another thread with its own connection. SQLite runs
one writer at a time (BEGIN IMMEDIATE), so there these races cannot happen and the tests skip.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from django.db import connection, transaction

from alerts.models import Notification
from gateways import offboarding
from gateways import services as gateway_services
from gateways.models import Assignment, Device, GatewayKey
from portal import services as portal_services
from portal.errors import RuleError
from portal.models import AuditEvent, Membership, Role
from tests.conftest import make_user

ON_POSTGRESQL = os.getenv("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not ON_POSTGRESQL, reason="races need PostgreSQL; SQLite runs one writer at a time"),
]

HOLD = 1.0  # seconds the first writer keeps its transaction open after its change


def in_thread(target):
    """Run target() in a thread with its own connection; returns (thread, box), box holding result or error."""
    box: dict = {}

    def run():
        try:
            box["result"] = target()
        except BaseException as exc:  # handed to the test, which reports it
            box["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


def held(change):
    """Start `change` in a transaction kept open HOLD seconds; returns (thread, box) once the change is made."""
    started = threading.Event()

    def target():
        with transaction.atomic():
            result = change()
            started.set()
            time.sleep(HOLD)
        return result

    thread, box = in_thread(target)
    assert started.wait(10) or "error" in box, "the first writer never made its change"
    return thread, box


def second_admin(team, username="erin"):
    user = make_user(username)
    Membership.objects.create(team=team, user=user, role=Role.ADMIN)
    return user


def test_two_admins_removing_each_other_at_once_leave_the_team_an_admin(web, alice):
    erin = second_admin(web)
    erins, alices = (Membership.objects.get(team=web, user=u) for u in (erin, alice))
    first, box = held(lambda: portal_services.remove_member(membership=erins, actor=alice))
    with pytest.raises(RuleError, match="last admin"):
        portal_services.remove_member(membership=alices, actor=erin)
    first.join()
    assert "error" not in box, box
    assert list(Membership.objects.filter(team=web, role=Role.ADMIN).values_list("user__username", flat=True)) == [
        "alice"
    ]


def test_an_admin_demoted_while_the_other_admin_is_removed_is_refused(web, alice):
    erin = second_admin(web)
    erins = Membership.objects.get(team=web, user=erin)
    first, box = held(lambda: portal_services.remove_member(membership=erins, actor=alice))
    with pytest.raises(RuleError, match="last admin"):
        portal_services.add_member(team=web, username="alice", role=Role.MEMBER, actor=erin)
    first.join()
    assert "error" not in box, box
    assert Membership.objects.filter(team=web, role=Role.ADMIN).count() == 1


def test_offboarding_an_admin_while_the_other_admin_is_removed_is_refused(web, alice):
    erin = second_admin(web)
    erins = Membership.objects.get(team=web, user=erin)
    plan = offboarding.for_member(web, alice)
    first, box = held(lambda: portal_services.remove_member(membership=erins, actor=alice))
    with pytest.raises(RuleError, match="last admin"):
        offboarding.offboard(plan, actor=erin)
    first.join()
    assert "error" not in box, box
    assert Membership.objects.filter(team=web, role=Role.ADMIN).count() == 1


def test_a_key_assigned_while_its_member_is_removed_goes_with_the_membership(web, alice, bob, tokenbay_key):
    first, box = held(lambda: gateway_services.assign_key(key=tokenbay_key, username="bob", actor=alice))
    portal_services.remove_member(membership=Membership.objects.get(team=web, user=bob), actor=alice)
    first.join()
    assert "error" not in box, box
    assert not Membership.objects.filter(team=web, user=bob).exists()
    assert not Assignment.objects.filter(user=bob).exists(), "bob left web but still holds its key"


def test_a_key_assigned_to_a_member_being_removed_is_refused(web, alice, bob, tokenbay_key):
    bobs = Membership.objects.get(team=web, user=bob)
    first, box = held(lambda: portal_services.remove_member(membership=bobs, actor=alice))
    with pytest.raises(RuleError, match="bob is not a member of web"):
        gateway_services.assign_key(key=tokenbay_key, username="bob", actor=alice)
    first.join()
    assert "error" not in box, box
    assert not Assignment.objects.filter(user=bob).exists()


def test_a_member_removed_twice_at_once_leaves_once_with_one_event_and_one_alert(api, web, alice, bob):
    erin = second_admin(web)
    bobs = Membership.objects.get(team=web, user=bob)
    first, box = held(lambda: portal_services.remove_member(membership=bobs, actor=alice))
    client = api(erin)
    client.raise_request_exception = False
    response = client.delete("/api/v1/teams/web/members/bob/")
    first.join()
    assert "error" not in box, box
    # As a removal sent after the first one finished answers (a retrying client takes either for "done").
    assert response.status_code == 404, (response.status_code, response.content[:200])
    assert response.json()["detail"] == "bob is not a member of web: removed already, or never added."
    assert client.delete("/api/v1/teams/web/members/bob/").json() == response.json()
    assert AuditEvent.objects.filter(action="member.removed", target="bob").count() == 1
    assert Notification.objects.filter(event="member.offboarded").count() == 1


NEW_SECRET = "sk-tokenbay-fresh-0123456789abcdef"


def test_rotating_to_the_secret_another_admin_is_storing_is_refused_with_a_sentence(api, web, alice, tokenbay_key):
    erin = second_admin(web)
    first, box = held(
        lambda: gateway_services.store_key(
            team=web, gateway=tokenbay_key.gateway, label="New", secret=NEW_SECRET, actor=alice
        )
    )
    client = api(erin)
    client.raise_request_exception = False
    response = client.patch(f"/api/v1/keys/{tokenbay_key.id}/", {"secret": NEW_SECRET}, format="json")
    first.join()
    assert "error" not in box, box  # the store must not die of a deadlock
    assert response.status_code == 400, (response.status_code, response.content[:200])
    assert "already stored in web as 'New'" in response.json()["detail"]
    assert GatewayKey.objects.get(pk=tokenbay_key.pk).fingerprint == tokenbay_key.fingerprint


@pytest.mark.parametrize(
    "change",
    [
        lambda key, admin: gateway_services.set_key_enabled(key=key, enabled=False, actor=admin),
        lambda key, admin: gateway_services.revoke_key(key=key, actor=admin),
    ],
    ids=["disable", "revoke"],
)
def test_a_key_being_changed_holds_up_no_store_of_another_key_of_its_team(web, alice, tokenbay_key, change):
    """A key's change locks the key's row only, not its team and gateway, which a new key's row refers to."""
    first, box = held(lambda: change(tokenbay_key, alice))
    started = time.monotonic()
    gateway_services.store_key(team=web, gateway=tokenbay_key.gateway, label="Other", secret=NEW_SECRET, actor=alice)
    waited = time.monotonic() - started
    first.join()
    assert "error" not in box, box
    assert waited < HOLD / 2, f"storing a new key waited {waited:.2f}s for the change of another key"


def test_removing_a_device_waits_for_no_one_holding_its_user(web, alice, bob, bob_assignment):
    from gateways.devices import create_device, remove_device

    device, _ = create_device(assignment=bob_assignment, name="laptop", platform="linux", actor=bob)

    def bob_changes_his_account():
        type(bob).objects.select_for_update().get(pk=bob.pk)  # e.g. a profile save in a slow request
        return True

    first, box = held(bob_changes_his_account)
    started = time.monotonic()
    remove_device(device=Device.objects.get(pk=device.pk), actor=alice)
    waited = time.monotonic() - started
    first.join()
    assert "error" not in box, box
    assert waited < HOLD / 2, f"removing the device waited {waited:.2f}s for bob's own row"


def test_two_staff_creating_the_same_team_slug_at_once_get_a_sentence(api, staff):
    other = make_user("staff2", staff=True)
    first, box = held(lambda: portal_services.create_team(name="Ops", slug="ops", actor=other))
    client = api(staff)
    client.raise_request_exception = False
    response = client.post("/api/v1/teams/", {"name": "Ops", "slug": "ops"}, format="json")
    first.join()
    assert "error" not in box, box
    assert response.status_code == 400, (response.status_code, response.content[:200])
    assert response.json()["detail"] == "A team with the slug 'ops' already exists. Choose another slug."


def test_two_staff_adding_the_same_gateway_slug_at_once_get_a_sentence(api, staff):
    other = make_user("staff2", staff=True)
    fields = {"name": "Acme", "base_url": "https://acme.example.com", "auth_scheme": "bearer"}
    first, box = held(lambda: gateway_services.create_gateway(slug="acme", actor=other, **fields))
    client = api(staff)
    client.raise_request_exception = False
    response = client.post("/api/v1/gateways/", {"slug": "acme", **fields}, format="json")
    first.join()
    assert "error" not in box, box
    assert response.status_code == 400, (response.status_code, response.content[:200])
    assert response.json()["detail"] == "A gateway with the slug 'acme' already exists. Choose another slug."


def test_a_probe_saved_while_another_probe_of_the_key_is_saving_tells_the_team_once(web, alice, tokenbay_key):
    from alerts.services import create_channel
    from gateways.probes.probe import ProbeOutcome
    from gateways.probes.runner import save_outcome

    GatewayKey.objects.filter(pk=tokenbay_key.pk).update(last_probe_verdict="ok")
    create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    loaded_by_the_run = GatewayKey.objects.select_related("team", "gateway").get(pk=tokenbay_key.pk)
    admins_copy = GatewayKey.objects.select_related("team", "gateway").get(pk=tokenbay_key.pk)
    failing = ProbeOutcome(verdict="auth_failed", status_code=401, hint="The gateway refused the key.")
    first, box = held(lambda: save_outcome(admins_copy, failing, trigger="api", user=alice))
    save_outcome(loaded_by_the_run, failing, trigger="schedule")
    first.join()
    assert "error" not in box, box
    assert Notification.objects.filter(event="key.failing").count() == 1


def test_a_member_added_twice_at_once_is_added_once_and_both_requests_succeed(api, web, alice):
    """A retried POST arrives while the first is committing: the second sets the role, as for anyone already in."""
    carol = make_user("carol")
    first, box = held(lambda: portal_services.add_member(team=web, username="carol", role=Role.MEMBER, actor=alice))
    client = api(alice)
    client.raise_request_exception = False
    response = client.post("/api/v1/teams/web/members/", {"username": "carol", "role": "member"}, format="json")
    first.join()
    assert "error" not in box, box
    assert response.status_code == 200, (response.status_code, response.content[:200])
    assert response.json()["role"] == "member"
    assert Membership.objects.filter(team=web, user=carol).count() == 1
    assert AuditEvent.objects.filter(action="member.added", target="carol").count() == 1
