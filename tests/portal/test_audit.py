"""The audit trail: append-only, tamper-evident, prunable with an export; and the connections view."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import stat
from datetime import timedelta

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection, models
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gateways.connections import ConnectionFilters, connections_for
from gateways.models import Assignment, GatewayKey
from gateways.services import assign_key, store_key
from portal import audit
from portal.models import Action, AuditEvent, ImmutableAuditError

pytestmark = pytest.mark.django_db


def sql(statement: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def test_every_sensitive_action_leaves_one_event(bob_assignment):
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["key.created", "assignment.created"]


def test_chain_verifies_when_untouched(bob_assignment, capsys):
    call_command("verify_audit")
    assert "intact: 2 event(s)" in capsys.readouterr().out


def test_a_row_changed_in_the_database_is_named(bob_assignment):
    first = AuditEvent.objects.order_by("id").first()
    sql("UPDATE portal_auditevent SET target = %s WHERE id = %s", ["forged", first.id])
    with pytest.raises(CommandError, match=f"broken at event {first.id}: its content no longer matches"):
        call_command("verify_audit")


def test_a_deleted_row_breaks_the_next_link(bob_assignment, alice):
    audit.record(Action.SIGN_IN, actor=alice)
    events = list(AuditEvent.objects.order_by("id"))
    sql("DELETE FROM portal_auditevent WHERE id = %s", [events[1].id])
    with pytest.raises(CommandError, match=f"broken at event {events[2].id}: its link to the previous"):
        call_command("verify_audit")


def test_rows_cannot_be_changed_or_deleted_through_the_orm(bob_assignment):
    event = AuditEvent.objects.first()
    event.target = "x"
    with pytest.raises(ImmutableAuditError):
        event.save()
    with pytest.raises(ImmutableAuditError):
        event.delete()
    with pytest.raises(ImmutableAuditError):
        AuditEvent.objects.filter(pk=event.pk).update(target="x")
    with pytest.raises(ImmutableAuditError):
        AuditEvent.objects.all().delete()


def test_admin_and_api_are_read_only(client, api, staff, bob_assignment):
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    event = AuditEvent.objects.first()
    page = client.get(f"/admin/portal/auditevent/{event.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert client.post(f"/admin/portal/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert api(staff).post("/api/v1/audit-events/", {}, format="json").status_code == 405
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_prune_exports_then_removes_and_the_chain_still_verifies(alice, tmp_path, capsys):
    with time_machine.travel(timezone.now() - timedelta(days=400), tick=False):
        for _ in range(3):
            audit.record(Action.SIGN_IN, actor=alice)
    audit.record(Action.SIGN_OUT, actor=alice)
    out = tmp_path / "old.jsonl"
    cutoff = (timezone.now() - timedelta(days=30)).date().isoformat()
    call_command("prune_audit", "--before", cutoff, "--output", str(out))
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["action"] for e in exported] == ["auth.sign_in"] * 3
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == ["auth.sign_out", "audit.pruned"]
    assert AuditEvent.objects.get(action="audit.pruned").details["events"] == 3
    call_command("verify_audit")
    assert "intact: 2 event(s)" in capsys.readouterr().out


def record_long_ago(actor, count: int = 3) -> None:
    with time_machine.travel(timezone.now() - timedelta(days=400), tick=False):
        for _ in range(count):
            audit.record(Action.SIGN_IN, actor=actor)


TODAY = "today"  # --before the local date the test runs on: every event recorded long ago is before it


def before(day: str) -> str:
    return timezone.localdate().isoformat() if day == TODAY else day


def test_prune_refuses_bad_dates_and_existing_files(alice, tmp_path):
    for bad in ("last year", "2026-02-30", "2026-13-01"):
        with pytest.raises(CommandError, match="must be a date"):
            call_command("prune_audit", "--before", bad)
    existing = tmp_path / "x.jsonl"
    existing.write_text("keep me")
    record_long_ago(alice, 1)
    with pytest.raises(CommandError, match="already exists"):
        call_command("prune_audit", "--before", before(TODAY), "--output", str(existing))
    assert existing.read_text() == "keep me"
    assert AuditEvent.objects.count() == 1


def test_prune_into_a_folder_that_is_not_there_says_so_and_prunes_nothing(alice, tmp_path):
    record_long_ago(alice, 1)
    with pytest.raises(CommandError, match=r"There is no folder .*missing to write the export in"):
        call_command("prune_audit", "--before", before(TODAY), "--output", str(tmp_path / "missing" / "x.jsonl"))
    with pytest.raises(CommandError, match=r"Cannot write the export to .*: File name too long"):
        call_command("prune_audit", "--before", before(TODAY), "--output", str(tmp_path / ("x" * 300)))
    assert AuditEvent.objects.count() == 1


def files_under(folder) -> list:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("day", ["tomorrow", "2999-01-01"])
def test_prune_refuses_a_cutoff_in_the_future_and_prunes_nothing(alice, tmp_path, settings, monkeypatch, day):
    record_long_ago(alice)
    audit.record(Action.SIGN_OUT, actor=alice)
    monkeypatch.chdir(tmp_path)
    if day == "tomorrow":
        day = (timezone.localdate() + timedelta(days=1)).isoformat()
    for output in ([], ["--output", str(tmp_path / "x.jsonl")]):
        with pytest.raises(
            CommandError, match=f"--before {day} is in the future: .*Give today's date or an earlier one"
        ):
            call_command("prune_audit", "--before", day, *output)
    assert AuditEvent.objects.count() == 4
    assert files_under(tmp_path) == []
    call_command("verify_audit")


def test_prune_refuses_a_broken_chain_names_the_event_and_prunes_nothing(alice, tmp_path, settings, capsys):
    record_long_ago(alice)
    audit.record(Action.SIGN_OUT, actor=alice)
    edited = AuditEvent.objects.order_by("id")[1].id
    # Past AuditEventQuerySet's refusal, as someone with the database's password would.
    models.QuerySet(model=AuditEvent).filter(pk=edited).update(target="forged")
    broken = f"The audit chain is broken at event {edited}: its content no longer matches"
    for output in ([], ["--output", str(tmp_path / "x.jsonl")]):
        with pytest.raises(CommandError, match=f"{broken}.* Nothing was pruned: .*Run verify_audit"):
            call_command("prune_audit", "--before", before(TODAY), *output)
    assert AuditEvent.objects.count() == 4
    assert files_under(tmp_path) == []
    with pytest.raises(CommandError, match=broken):  # the evidence is still there
        call_command("verify_audit")


def test_the_export_is_for_its_owner_only_and_by_default_in_the_data_folder(alice, tmp_path, settings, monkeypatch):
    record_long_ago(alice)
    working = tmp_path / "working"
    working.mkdir()
    monkeypatch.chdir(working)
    old_umask = os.umask(0o022)  # the usual umask, which would make a plain open() 0644
    try:
        call_command("prune_audit", "--before", before(TODAY))
        chosen = tmp_path / "chosen.jsonl"
        record_long_ago(alice)
        call_command("prune_audit", "--before", before(TODAY), "--output", str(chosen))
    finally:
        os.umask(old_umask)
    export = settings.DATA_DIR / f"audit-until-{before(TODAY)}.jsonl"
    assert len(export.read_text().splitlines()) == 3
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.DATA_DIR.stat().st_mode) == 0o700
    assert stat.S_IMODE(chosen.stat().st_mode) == 0o600
    assert files_under(working) == []


def test_a_prune_that_fails_after_the_export_keeps_the_rows_and_leaves_no_export(alice, tmp_path, monkeypatch):
    record_long_ago(alice)

    def refuse(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(audit, "record", refuse)
    with pytest.raises(RuntimeError):
        call_command("prune_audit", "--before", before(TODAY), "--output", str(tmp_path / "x.jsonl"))
    assert AuditEvent.objects.count() == 3
    assert files_under(tmp_path) == []


def test_prune_before_year_one_east_of_utc_is_a_sentence(alice, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    record_long_ago(alice, 1)
    with pytest.raises(
        CommandError, match="--before 0001-01-01 is earlier than the first moment the database can hold"
    ):
        call_command("prune_audit", "--before", "0001-01-01")
    assert AuditEvent.objects.count() == 1


def test_audit_api_filters_and_paginates_by_cursor(api, staff, alice, bob_assignment, tokaify_key):
    client = api(staff)
    keys = client.get("/api/v1/audit-events/?action=key.created").json()
    assert {e["action"] for e in keys["results"]} == {"key.created"}
    assert len(keys["results"]) == 2
    assert (
        client.get("/api/v1/audit-events/?gateway=tokaify").json()["results"][0]["target"]
        == tokaify_key.short_fingerprint
    )
    first_page = client.get("/api/v1/audit-events/?limit=2").json()
    assert len(first_page["results"]) == 2 and "cursor=" in first_page["next"]
    second_page = client.get(first_page["next"]).json()
    assert {e["id"] for e in first_page["results"]}.isdisjoint({e["id"] for e in second_page["results"]})
    response = client.get("/api/v1/audit-events/?since=yesterday")
    assert response.status_code == 400
    assert "since must be a date" in response.json()["detail"]


def test_audit_exports_csv_and_json_lines(api, staff, bob_assignment):
    client = api(staff)
    rows = list(
        csv.DictReader(io.StringIO(b"".join(client.get("/api/v1/audit-events/?export=csv").streaming_content).decode()))
    )
    assert [r["action"] for r in rows] == ["key.created", "assignment.created"]
    lines = b"".join(client.get("/api/v1/audit-events/?export=jsonl").streaming_content).decode().splitlines()
    assert json.loads(lines[1])["details"]["user"] == "bob"


def test_who_sees_which_events(api, bob, charlie, dave, bob_assignment):
    assert len(api(dave).get("/api/v1/audit-events/").json()["results"]) == 2  # auditor of web
    assert api(charlie).get("/api/v1/audit-events/").json()["results"] == []  # another team
    assert api(bob).get("/api/v1/audit-events/").json()["results"] == []  # member: only own acts


def test_failed_sign_in_is_recorded(client, alice):
    client.post("/login/", {"username": "alice", "password": "wrong"})
    event = AuditEvent.objects.get(action="auth.sign_in_failed")
    assert event.target == "alice"
    assert "wrong" not in json.dumps(event.details)


def test_audit_list_query_count_does_not_grow(api, staff, alice, django_assert_max_num_queries):
    for _ in range(30):
        audit.record(Action.SIGN_IN, actor=alice)
    client = api(staff)
    with django_assert_max_num_queries(5):
        client.get("/api/v1/audit-events/")
    client.force_login(staff)
    with django_assert_max_num_queries(10):
        assert client.get("/audit/").status_code == 200


# --- Connections ---------------------------------------------------------------------------------


def test_connection_rows_answer_who_has_what(api, staff, bob_assignment, tokenbay_key):
    [row] = api(staff).get("/api/v1/connections/").json()["results"]
    assert row["user"] == "bob"
    assert row["gateway"] == "tokenbay"
    assert row["masked"] == tokenbay_key.masked
    assert row["last_download_at"] is None
    assert row["key_state"] == "active"


def test_connection_states(api, staff, bob, web, tokenbay, tokaify, alice, bob_assignment):
    failing = store_key(team=web, gateway=tokaify, label="failing", secret="sk-failing-0000000000", actor=alice)
    assign_key(key=failing, username="bob", actor=alice)
    GatewayKey.objects.filter(pk=failing.pk).update(last_probe_verdict="auth_failed", last_probe_at=timezone.now())
    expired = store_key(team=web, gateway=tokaify, label="expired", secret="sk-expired-0000000000", actor=alice)
    assign_key(key=expired, username="bob", actor=alice)
    GatewayKey.objects.filter(pk=expired.pk).update(
        last_probe_verdict="auth_failed", last_probe_at=timezone.now(), expires_at=timezone.now()
    )
    api(bob).get(f"/api/v1/me/configs/{bob_assignment.id}/bash")
    client = api(staff)

    def users(state):
        return [r["key_label"] for r in client.get(f"/api/v1/connections/?state={state}").json()["results"]]

    # An expired key is expired, not failing, and its holders are not asked to download it (usable keys only).
    assert users("failing") == ["failing"]
    assert users("expired") == ["expired"]
    assert users("never_downloaded") == ["failing"]
    assert users("stale") == []
    later = timezone.now() + timedelta(seconds=1)  # the key's settings change after bob's download
    GatewayKey.objects.filter(pk=bob_assignment.key_id).update(config_changed_at=later, settings_changed_at=later)
    assert users("stale") == ["Bob laptop"]
    assert client.get("/api/v1/connections/?state=nope").status_code == 400


def test_connections_visibility_by_role(api, alice, bob, charlie, dave, bob_assignment):
    assert len(api(alice).get("/api/v1/connections/").json()["results"]) == 1
    assert len(api(dave).get("/api/v1/connections/").json()["results"]) == 1
    assert len(api(bob).get("/api/v1/connections/").json()["results"]) == 1  # his own row
    assert api(charlie).get("/api/v1/connections/").json()["results"] == []


def test_connections_csv_and_sort(api, staff, web, tokenbay, alice, dave, bob_assignment):
    key = store_key(team=web, gateway=tokenbay, label="Dave", secret="sk-dave-0000000000", actor=alice)
    assign_key(key=key, username="dave", actor=alice)
    client = api(staff)
    assert [r["user"] for r in client.get("/api/v1/connections/?sort=user").json()["results"]] == ["bob", "dave"]
    assert [r["user"] for r in client.get("/api/v1/connections/?sort=-user").json()["results"]] == ["dave", "bob"]
    body = b"".join(client.get("/api/v1/connections/?export=csv").streaming_content).decode()
    assert body.splitlines()[0].startswith("assignment,user,team,gateway")
    assert len(body.splitlines()) == 3


@pytest.mark.parametrize("sort", ["--user", "---assigned", "-"])
def test_a_sort_with_more_than_one_minus_is_refused_with_the_rule(api, client, staff, bob_assignment, sort):
    response = api(staff).get("/api/v1/connections/", {"sort": sort})
    assert response.status_code == 400
    assert "(prefix - to reverse)" in response.json()["detail"]
    client.force_login(staff)
    page = client.get("/connections/", {"sort": sort})
    assert page.status_code == 200
    html = page.content.decode()
    assert "prefix - to reverse" in html and "bob" in html


def test_connections_query_count_does_not_grow(api, staff, web, tokenbay, alice, bob, django_assert_max_num_queries):
    for i in range(20):
        key = store_key(team=web, gateway=tokenbay, label=f"k{i}", secret=f"sk-n{i}-00000000000", actor=alice)
        assign_key(key=key, username="bob", actor=alice)
    assert Assignment.objects.count() == 20
    client = api(staff)
    with django_assert_max_num_queries(4):
        assert len(client.get("/api/v1/connections/").json()["results"]) == 20
    client.force_login(staff)
    with django_assert_max_num_queries(10):
        assert client.get("/connections/").status_code == 200


def test_connections_page_is_paginated(client, staff, web, tokenbay, alice, bob, settings):
    from gateways import views

    for i in range(views.CONNECTIONS_PER_PAGE + 3):
        key = store_key(team=web, gateway=tokenbay, label=f"key {i:03d}", secret=f"sk-p{i}-000000000000", actor=alice)
        assign_key(key=key, username="bob", actor=alice)
    client.force_login(staff)
    first = client.get("/connections/?sort=-assigned")
    cursor = first.context["next_cursor"]
    second = client.get(f"/connections/?sort=-assigned&cursor={cursor}")
    assert first.content.decode().count("<code>sk-") == views.CONNECTIONS_PER_PAGE
    assert second.content.decode().count("<code>sk-") == 3
    assert f"cursor={cursor}" in first.content.decode()
    assert second.context["next_cursor"] is None and "First page" in second.content.decode()


@pytest.mark.parametrize(
    "sort", ["-assigned", "assigned", "user", "-team", "gateway", "last_download", "-expiry", "verdict"]
)
def test_following_next_on_the_connections_page_shows_every_row_once_in_order(
    client, staff, web, data_team, tokenbay, tokaify, alice, bob, charlie, dave, monkeypatch, sort
):
    from gateways import views

    monkeypatch.setattr(views, "CONNECTIONS_PER_PAGE", 3)
    now = timezone.now()
    for i in range(4):  # equal and empty sort values on purpose: ties are cut by id
        for team, gateway, user in ((web, tokenbay, "bob"), (web, tokaify, "dave"), (data_team, tokaify, "charlie")):
            actor = charlie if team == data_team else alice
            key = store_key(
                team=team,
                gateway=gateway,
                label=f"k{i} {gateway.slug}",
                secret=f"sk-{user}-{i}-0000000000",
                actor=actor,
            )
            if i % 2:
                GatewayKey.objects.filter(pk=key.pk).update(expires_at=now + timedelta(days=i), last_probe_verdict="ok")
            assignment = assign_key(key=key, username=user, actor=actor)
            if i != 1:
                Assignment.objects.filter(pk=assignment.pk).update(last_download_at=now - timedelta(hours=i))
    client.force_login(staff)
    seen, cursor = [], ""
    for _ in range(10):
        page = client.get("/connections/", {"sort": sort, "cursor": cursor} if cursor else {"sort": sort})
        assert page.status_code == 200
        seen += [row["assignment"] for row in page.context["rows"]]
        cursor = page.context["next_cursor"]
        if not cursor:
            break
    expected = list(connections_for(staff, ConnectionFilters(sort=sort)).values_list("id", flat=True))
    assert seen == expected and len(set(seen)) == 12


@pytest.mark.parametrize("cursor", ["not-a-cursor", "eyJvIjoiYWJjIiwidiI6WzFdfQ", "²", "e30"])
def test_an_odd_connections_cursor_shows_the_first_page_and_says_why(client, staff, bob_assignment, cursor):
    client.force_login(staff)
    response = client.get("/connections/", {"cursor": cursor})
    assert response.status_code == 200
    html = response.content.decode()
    assert "bob" in html and "The cursor is not one this list gave out" in html


def test_audit_page_pages_by_cursor(client, staff, alice):
    from portal import views

    for _ in range(views.AUDIT_PER_PAGE + 5):
        audit.record(Action.SIGN_IN, actor=alice)
    client.force_login(staff)
    first = client.get("/audit/?actor=alice")
    assert len(first.context["events"]) == views.AUDIT_PER_PAGE
    before = first.context["next_before"]
    second = client.get(f"/audit/?actor=alice&before={before}")
    assert len(second.context["events"]) == 5
    assert second.context["next_before"] is None
    assert all(e.id < before for e in second.context["events"])


def events_out_of_id_order(alice, count: int) -> list[AuditEvent]:
    """Events stamped at times that do not follow their ids: each later id a minute earlier than the last."""
    start = timezone.now() - timedelta(days=1)
    events = []
    for n in range(count):
        with time_machine.travel(start + timedelta(minutes=count - n), tick=False):
            events.append(audit.record(Action.SIGN_IN, actor=alice))
    return events


def test_with_a_time_range_the_audit_page_pages_newest_first_by_time_and_shows_each_event_once(client, staff, alice):
    from portal import views

    events = events_out_of_id_order(alice, views.AUDIT_PER_PAGE + 5)
    since = (min(e.created_at for e in events) - timedelta(seconds=1)).isoformat()
    client.force_login(staff)
    with CaptureQueriesContext(connection) as on_the_first:
        first = client.get("/audit/", {"actor": "alice", "since": since})
    assert [e.id for e in first.context["events"]] == [e.id for e in events[: views.AUDIT_PER_PAGE]]
    with CaptureQueriesContext(connection) as on_the_second:
        second = client.get("/audit/", {"actor": "alice", "since": since, "before": first.context["next_before"]})
    assert len(on_the_second) == len(on_the_first)  # the next page's position is found inside its one query
    listed = [e.id for e in first.context["events"]] + [e.id for e in second.context["events"]]
    assert listed == [e.id for e in events]  # the newest time first: here the lowest id first
    assert second.context["next_before"] is None
    # Without a time range the page keeps the chain's order, newest id first.
    assert client.get("/audit/?actor=alice").context["events"][0].id == events[-1].id


def test_with_a_time_range_the_audit_api_pages_by_time_and_each_event_comes_once(api, staff, alice):
    events = events_out_of_id_order(alice, 7)
    until = (max(e.created_at for e in events) + timedelta(seconds=1)).isoformat()
    client = api(staff)
    listed, url = [], f"/api/v1/audit-events/?actor=alice&limit=3&until={until.replace('+', '%2B')}"
    while url:
        page = client.get(url).json()
        listed += [e["id"] for e in page["results"]]
        url = page["next"]
    assert listed == [e.id for e in events]


def test_the_audit_pages_refusal_links_do_not_export_twice(alice, client):
    from urllib.parse import parse_qs, urlsplit

    client.force_login(alice)
    page = client.get("/audit/?since=yesterday&export=csv")
    assert page.status_code == 400
    links = re.findall(r'href="(\?[^"]*export=csv)"', page.content.decode())
    assert links and all(parse_qs(urlsplit(h.replace("&amp;", "&")).query)["export"] == ["csv"] for h in links), links


def test_a_prune_killed_while_exporting_leaves_no_export_and_the_next_run_simply_finishes(alice, tmp_path, monkeypatch):
    """A kill runs no clean-up: the export's file stays as it was then, and the rolled back events stay too."""
    from portal.management.commands import prune_audit

    record_long_ago(alice, 3)
    out = tmp_path / "x.jsonl"
    left: dict[str, bytes] = {}

    class Killed(BaseException):
        """Stands in for SIGKILL (the OOM killer, a container stop past its grace) half-way through the export."""

    class SerializerKilledAtTheSecondEvent(prune_audit.AuditEventSerializer):
        calls = 0

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            type(self).calls += 1
            if type(self).calls == 2:
                assert not out.exists(), "a kill now would leave a partial export under the export's own name"
                (written,) = tmp_path.glob("x.jsonl?*")
                left[written.name] = written.read_bytes()
                raise Killed

    with monkeypatch.context() as patched:
        patched.setattr(prune_audit, "AuditEventSerializer", SerializerKilledAtTheSecondEvent)
        with pytest.raises(Killed):
            call_command("prune_audit", "--before", before(TODAY), "--output", str(out))
    for name, content in left.items():  # what the killed process left on disk
        (tmp_path / name).write_bytes(content)
    assert AuditEvent.objects.count() == 3

    call_command("prune_audit", "--before", before(TODAY), "--output", str(out))  # run again, as for any command
    assert [json.loads(line)["action"] for line in out.read_text().splitlines()] == ["auth.sign_in"] * 3
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert files_under(tmp_path) == ["x.jsonl"]
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["audit.pruned"]


def test_a_prune_killed_after_its_commit_gets_its_export_moved_into_place_by_the_next_run(alice, settings, capsys):
    from portal.management.commands import prune_audit

    record_long_ago(alice, 3)

    class Killed(BaseException):
        """SIGKILL between the commit and the rename: the complete export is still under its temporary name."""

    def killed(partial, path):
        raise Killed

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(prune_audit, "move_into_place", killed)
        with pytest.raises(Killed):
            call_command("prune_audit", "--before", before(TODAY))
    export = settings.DATA_DIR / f"audit-until-{before(TODAY)}.jsonl"
    assert not export.exists() and list(AuditEvent.objects.values_list("action", flat=True)) == ["audit.pruned"]

    call_command("prune_audit", "--before", before(TODAY))  # cron's next run, same date
    assert "Moved the complete export of an interrupted earlier prune into place" in capsys.readouterr().out
    assert len(export.read_text().splitlines()) == 3
    assert files_under(settings.DATA_DIR) == [export.name]
    record_long_ago(alice, 1)
    with pytest.raises(CommandError, match="already exists"):  # a complete export is never overwritten
        call_command("prune_audit", "--before", before(TODAY))


class KilledAfterCommit(BaseException):
    """SIGKILL between the prune's commit and the export's rename."""


def prune_killed_after_its_commit(output: str) -> None:
    from portal.management.commands import prune_audit

    def killed(partial, path):
        raise KilledAfterCommit

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(prune_audit, "move_into_place", killed)
        with pytest.raises(KilledAfterCommit):
            call_command("prune_audit", "--before", before(TODAY), "--output", output)


def test_a_rerun_naming_the_killed_prunes_export_another_way_moves_it_into_place(alice, tmp_path, monkeypatch):
    """Killed after its commit with `--output exports/audit.jsonl`, run again with the same file's full path: the
    export (the only copy of the pruned events) takes its name, and the trail records the path resolved."""
    record_long_ago(alice, 3)
    (tmp_path / "exports").mkdir()
    monkeypatch.chdir(tmp_path)
    prune_killed_after_its_commit("exports/audit.jsonl")
    export = (tmp_path / "exports" / "audit.jsonl").resolve()
    assert AuditEvent.objects.get(action="audit.pruned").details["export"] == str(export)

    call_command("prune_audit", "--before", before(TODAY), "--output", str(tmp_path / "exports" / "audit.jsonl"))
    assert files_under(tmp_path) == ["audit.jsonl"]
    assert len(export.read_text().splitlines()) == 3


def killed_prune_moved_to_another_folder(tmp_path):
    """A prune killed after its commit into old/x.jsonl, whose folder staff then renamed to new/: the leftover export
    is complete, its events are gone from the database, and no audit.pruned row names new/x.jsonl."""
    from portal.management.commands import prune_audit

    (tmp_path / "old").mkdir()
    prune_killed_after_its_commit(str(tmp_path / "old" / "x.jsonl"))
    (tmp_path / "old").rename(tmp_path / "new")
    out = tmp_path / "new" / "x.jsonl"
    return out, prune_audit.partial_path(out)


def test_a_leftover_export_of_pruned_events_that_matches_no_recorded_path_is_set_aside_never_removed(
    alice, tmp_path, capsys
):
    record_long_ago(alice, 3)
    out, partial = killed_prune_moved_to_another_folder(tmp_path)
    content = partial.read_bytes()
    record_long_ago(alice, 2)

    call_command("prune_audit", "--before", before(TODAY), "--output", str(out))  # the run goes on
    [aside] = (tmp_path / "new").glob("x.jsonl.partial.*")
    assert re.fullmatch(r"x\.jsonl\.partial\.\d{8}T\d{6}Z", aside.name)
    assert aside.read_bytes() == content
    actions = [json.loads(line)["action"] for line in out.read_text().splitlines()]
    assert actions == ["audit.pruned", "auth.sign_in", "auth.sign_in"]
    err = capsys.readouterr().err
    assert f"{partial} is left from an earlier run: it is not the export of a pruning the audit trail records" in err
    assert f"It was kept as {aside}: store it with the other exports." in err


def test_a_leftover_export_that_cannot_be_set_aside_stops_the_run_before_it_prunes(alice, tmp_path, capsys):
    record_long_ago(alice, 3)
    out, partial = killed_prune_moved_to_another_folder(tmp_path)
    record_long_ago(alice, 1)

    def refused(source, destination):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(os, "rename", refused)
        with pytest.raises(CommandError, match=r"x.jsonl.partial is left from an earlier run and was kept .* Move"):
            call_command("prune_audit", "--before", before(TODAY), "--output", str(out))
    assert "could not be set aside (Permission denied) and was kept as it is" in capsys.readouterr().err
    assert len(partial.read_text().splitlines()) == 3
    assert AuditEvent.objects.filter(action="auth.sign_in").exists()  # nothing pruned


def test_a_leftover_export_of_pruned_events_is_kept_when_there_is_nothing_to_prune(alice, tmp_path, capsys):
    record_long_ago(alice, 3)
    out, _ = killed_prune_moved_to_another_folder(tmp_path)
    call_command("prune_audit", "--before", before(TODAY), "--output", str(out))
    [aside] = (tmp_path / "new").glob("x.jsonl.partial.*")
    assert len(aside.read_text().splitlines()) == 3
    assert "No audit events before" in capsys.readouterr().out


def test_a_leftover_export_whose_events_are_all_in_the_database_is_removed(alice, tmp_path):
    """A run killed while exporting, before its commit: two lines written whole, the third torn."""
    from portal.management.commands import prune_audit

    record_long_ago(alice, 3)
    out = tmp_path / "x.jsonl"
    lines = [
        json.dumps(prune_audit.AuditEventSerializer(e).data, default=str) for e in AuditEvent.objects.order_by("id")
    ]
    prune_audit.partial_path(out).write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][:20])

    call_command("prune_audit", "--before", before(TODAY), "--output", str(out))
    assert files_under(tmp_path) == ["x.jsonl"]
    assert len(out.read_text().splitlines()) == 3
