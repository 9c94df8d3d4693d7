"""Integrity of teams, members, slugs and probe alerts that needs no second connection (SQLite too)."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from alerts.models import Notification
from alerts.services import create_channel
from gateways.models import Gateway, GatewayKey
from gateways.probes.probe import ProbeOutcome
from gateways.probes.runner import save_outcome
from gateways.services import create_gateway
from portal.errors import RuleError
from portal.models import AuditEvent, Membership, Team
from portal.services import create_team, remove_member

pytestmark = pytest.mark.django_db

FAILING = ProbeOutcome(verdict="auth_failed", status_code=401, hint="The gateway refused the key.")
GATEWAY_FIELDS = {"name": "Acme", "base_url": "https://api.example.com", "auth_scheme": "bearer"}


def told(event: str, team: str = "web") -> list[Notification]:
    return list(Notification.objects.filter(team__slug=team, event=event))


# --- Every way out of a team tells the team -------------------------------------------------------


def test_offboarding_a_member_tells_the_team_like_removing_them_does(client, alice, bob, bob_assignment):
    client.force_login(alice)
    assert client.post("/teams/web/members/bob/offboard/", follow=True).status_code == 200
    [left] = told("member.offboarded")
    assert left.subject == "bob left Web" and "alice removed bob (member)" in left.text
    assert not Membership.objects.filter(user=bob).exists()
    # One audit row for the offboarding, as before: leaving through end_membership adds none.
    assert AuditEvent.objects.filter(action="member.offboarded", target="bob").count() == 1
    assert not AuditEvent.objects.filter(action="member.removed").exists()


def test_staff_offboarding_an_account_tells_each_team_it_left(client, staff, alice, bob, charlie, bob_assignment):
    Membership.objects.create(team=Team.objects.get(slug="data"), user=bob, role="member")
    client.force_login(staff)
    assert client.post("/users/bob/offboard/", follow=True).status_code == 200
    assert [n.subject for n in told("member.offboarded")] == ["bob left Web"]
    assert [n.subject for n in told("member.offboarded", team="data")] == ["bob left Data"]
    [event] = AuditEvent.objects.filter(action="account.offboarded")
    assert sorted(event.details["teams_left"]) == ["data", "web"]
    assert event.details["assignments_removed"] == [f"web/{bob_assignment.key.short_fingerprint}"]


# --- A member leaves once -------------------------------------------------------------------------


def test_removing_a_member_who_already_left_is_refused_and_recorded_once(web, alice, bob):
    """A double-submitted 'Remove': the second request still holds bob's membership as it loaded it."""
    bobs = Membership.objects.select_related("team", "user").get(team=web, user=bob)
    remove_member(membership=bobs, actor=alice)
    with pytest.raises(RuleError, match=r"^bob is not a member of web: removed already, or never added\.$"):
        remove_member(membership=bobs, actor=alice)
    assert AuditEvent.objects.filter(action="member.removed", target="bob").count() == 1
    assert len(told("member.offboarded")) == 1


# --- Slugs differ in more than case ---------------------------------------------------------------


def test_a_team_slug_differing_only_in_case_is_refused(api, staff, web):
    response = api(staff).post("/api/v1/teams/", {"name": "Web again", "slug": "WEB"}, format="json")
    assert response.status_code == 400, (response.status_code, response.content)
    assert "lowercase" in response.json()["detail"]
    assert Team.objects.filter(slug__iexact="web").count() == 1


def test_the_team_page_refuses_an_uppercase_slug_next_to_the_field(client, staff):
    client.force_login(staff)
    response = client.post("/teams/new/", {"name": "Ops", "slug": "Ops"})
    assert response.status_code == 400
    assert "Use lowercase letters in the slug: &#x27;ops&#x27;, not &#x27;Ops&#x27;." in response.content.decode()
    assert not Team.objects.exists()


def test_a_team_slug_taken_in_another_case_before_the_rule_is_refused(staff):
    Team.objects.create(name="Old ops", slug="Ops")  # stored before slugs were lowercase
    with pytest.raises(RuleError, match="A team with the slug 'Ops' already exists"):
        create_team(name="Ops", slug="ops", actor=staff)


def test_a_gateway_slug_differing_only_in_case_is_refused(api, staff, tokaify):
    response = api(staff).post("/api/v1/gateways/", {"slug": "Tokaify", **GATEWAY_FIELDS}, format="json")
    assert response.status_code == 400, (response.status_code, response.content[:200])
    assert "lowercase" in response.json()["detail"]
    assert Gateway.objects.filter(slug__iexact="tokaify").count() == 1


def test_a_gateway_slug_taken_in_another_case_before_the_rule_is_refused(staff):
    Gateway.objects.create(slug="Acme", **GATEWAY_FIELDS)
    with pytest.raises(RuleError, match="A gateway with the slug 'Acme' already exists"):
        create_gateway(slug="acme", actor=staff, **GATEWAY_FIELDS)


def test_the_gateway_page_refuses_an_uppercase_slug(client, staff):
    client.force_login(staff)
    form = {"slug": "Acme", **GATEWAY_FIELDS, "model_id_style": "as-is", "probe_mode": "inference"}
    response = client.post("/gateways/new/", {**form, "probe_prompt": "ping", "probe_interval_minutes": 60})
    assert "Use lowercase letters in the slug" in response.content.decode()
    assert not Gateway.objects.filter(slug__iexact="acme").exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize(
    ("app", "before", "after", "model", "sentence"),
    [
        ("portal", "0014_unconfirmed_email", "0015_team_slug_lowercase_unique", "Team", "Teams 'WEB' and 'web'"),
        ("gateways", "0008_connection_list_indexes", "0009_gateway_slug_lowercase_unique", "Gateway", "Gateways"),
    ],
)
def test_the_slug_migration_names_slugs_that_differ_only_in_case_and_stops(app, before, after, model, sentence):
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate([(app, before)])
    try:
        Model = executor.loader.project_state([(app, before)]).apps.get_model(app, model)
        names = {"name": "Web"} if model == "Team" else GATEWAY_FIELDS
        first = Model.objects.create(slug="web", **names)
        Model.objects.create(slug="WEB", **names)
        with pytest.raises(CommandError, match=sentence) as refused:
            MigrationExecutor(connection).migrate([(app, after)])
        assert "differ only in case" in str(refused.value)
        first.delete()
        MigrationExecutor(connection).migrate([(app, after)])  # with the clash gone it goes through
    finally:
        MigrationExecutor(connection).migrate(latest)


# --- A key starts failing once --------------------------------------------------------------------


def test_a_probe_run_that_overlaps_another_probe_tells_the_team_once(web, alice, tokenbay_key):
    """`probe --due` loads its keys, then waits on the network; an admin's 'Probe now' is saved meanwhile."""
    GatewayKey.objects.filter(pk=tokenbay_key.pk).update(last_probe_verdict="ok")
    create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    loaded_by_the_run = GatewayKey.objects.select_related("team", "gateway").get(pk=tokenbay_key.pk)
    admins_copy = GatewayKey.objects.select_related("team", "gateway").get(pk=tokenbay_key.pk)
    next_runs_copy = GatewayKey.objects.select_related("team", "gateway").get(pk=tokenbay_key.pk)
    save_outcome(admins_copy, FAILING, trigger="api", user=alice)  # 'Probe now'
    save_outcome(loaded_by_the_run, FAILING, trigger="schedule")  # the run's result, saved after
    assert len(told("key.failing")) == 1
    ok = ProbeOutcome(verdict="ok", status_code=200)
    save_outcome(next_runs_copy, ok, trigger="schedule")  # loaded while the key was "ok": it recovered all the same
    assert len(told("key.recovered")) == 1


def test_the_admin_refuses_an_uppercase_gateway_slug_next_to_the_field(admin_client):
    from tests.gateways.test_admin import form_data

    data = form_data(admin_client.get("/admin/gateways/gateway/add/"))
    data.update(slug="Acme", name="Acme", base_url="https://api.example.com", probe_prompt="ping")
    admin_client.raise_request_exception = False
    response = admin_client.post("/admin/gateways/gateway/add/", data)
    assert response.status_code == 200, response.status_code  # the form again, not a 500
    assert "slug" in response.context["adminform"].form.errors
    assert "Use lowercase letters in the slug" in response.content.decode()
    assert not Gateway.objects.filter(slug__iexact="acme").exists()
