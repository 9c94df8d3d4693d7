"""The audit chain holds whatever reaches it: any client address, any stored form, both databases."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, models
from django.db.migrations.executor import MigrationExecutor
from django.test import RequestFactory
from django.utils import timezone

from portal import audit, audit_chain, crypto
from portal.models import Action, AuditChainHead, AuditEvent
from tests.conftest import TEST_AUDIT_KEYRING, TEST_KEYRING, production_env, run_manage

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


# --- The keyed chain: an insider with the database but not the key -------------------------------


def sql(statement: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def rechain_from(event_id: int) -> None:
    """What an insider can do without the key: recompute every SHA-256 link from an event on."""
    prev = AuditEvent.objects.filter(id__lt=event_id).order_by("-id").values_list("hash", flat=True).first()
    if prev is None:
        prev = AuditChainHead.objects.get(pk=1).anchor_hash
    for event in AuditEvent.objects.filter(id__gte=event_id).order_by("id"):
        event.prev_hash = prev
        prev = event.compute_hash()
        sql("UPDATE portal_auditevent SET prev_hash = %s, hash = %s WHERE id = %s", [event.prev_hash, prev, event.id])
    sql("UPDATE portal_auditchainhead SET last_hash = %s WHERE id = 1", [prev])


def head_now(capsys) -> str:
    call_command("verify_audit")
    return capsys.readouterr().out.split("Head: ")[1].strip()


@pytest.fixture
def chain(alice, charlie, web, data_team) -> list[AuditEvent]:
    for actor, team in [(alice, web), (charlie, data_team), (alice, web), (charlie, data_team), (alice, web)]:
        audit.record(Action.TEAM_CREATED, actor=actor, team=team, target=team.slug, details={"n": 1})
    return list(AuditEvent.objects.order_by("id"))


def forge_last_row(chain):
    sql("UPDATE portal_auditevent SET target = 'forged' WHERE id = %s", [chain[-1].id])
    return chain[-1].id


def edit_then_rechain(chain):
    sql("UPDATE portal_auditevent SET details = %s WHERE id = %s", ['{"n": 2}', chain[1].id])
    return chain[1].id


def move_to_another_team(chain):
    sql("UPDATE portal_auditevent SET team_id = %s WHERE id = %s", [chain[1].team_id, chain[0].id])
    return chain[0].id


def change_the_actor(chain):
    sql("UPDATE portal_auditevent SET actor_id = %s WHERE id = %s", [chain[1].actor_id, chain[2].id])
    return chain[2].id


def reorder(chain):
    a, b = chain[1].id, chain[2].id
    sql("UPDATE portal_auditevent SET id = %s WHERE id = %s", [-1, a])
    sql("UPDATE portal_auditevent SET id = %s WHERE id = %s", [a, b])
    sql("UPDATE portal_auditevent SET id = %s WHERE id = %s", [b, -1])
    return a


def append_a_row(chain):
    last = chain[-1]
    row = AuditEvent(action=Action.SIGN_IN, actor_username="mallory", prev_hash=last.hash, created_at=last.created_at)
    row.hash = row.compute_hash()
    row.signature, row.signing_key_id = "0" * 64, last.signing_key_id
    models.QuerySet(model=AuditEvent).bulk_create([row])
    return AuditEvent.objects.order_by("-id").first().id


@pytest.mark.parametrize(
    "tamper",
    [forge_last_row, edit_then_rechain, move_to_another_team, change_the_actor, reorder, append_a_row],
)
def test_a_change_made_without_the_audit_key_is_named(chain, tamper):
    changed = tamper(chain)
    rechain_from(changed)  # the insider's best: every SHA-256 link from there on recomputed
    with pytest.raises(CommandError, match=f"broken at event {changed}: its signature does not match"):
        call_command("verify_audit")


@pytest.mark.parametrize("tamper", [move_to_another_team, change_the_actor])
def test_team_and_actor_ids_are_covered_by_the_hash(chain, tamper):
    changed = tamper(chain)
    with pytest.raises(CommandError, match=f"broken at event {changed}: its content no longer matches"):
        call_command("verify_audit")


def test_deleting_the_tail_shows_against_a_kept_head(chain, capsys):
    kept = head_now(capsys)
    sql("DELETE FROM portal_auditevent WHERE id >= %s", [chain[-2].id])
    with pytest.raises(CommandError, match="at the end of the chain: events at the end of the chain are missing"):
        call_command("verify_audit")
    sql("UPDATE portal_auditchainhead SET last_hash = %s WHERE id = 1", [chain[-3].hash])
    call_command("verify_audit")  # the remaining rows are intact; only the kept head tells
    with pytest.raises(CommandError, match=f"the expected head {kept} is not in the chain"):
        call_command("verify_audit", "--expect-head", kept)


def test_truncating_the_table_shows_against_a_kept_head(chain, capsys):
    kept = head_now(capsys)
    sql("DELETE FROM portal_auditevent")
    sql("UPDATE portal_auditchainhead SET last_hash = '' WHERE id = 1")
    call_command("verify_audit")
    assert "intact: 0 event(s)" in capsys.readouterr().out
    with pytest.raises(CommandError, match="is not in the chain"):
        call_command("verify_audit", "--expect-head", kept)


def test_deleting_the_oldest_events_shows_even_with_the_start_moved(chain):
    sql("DELETE FROM portal_auditevent WHERE id <= %s", [chain[1].id])
    sql("UPDATE portal_auditchainhead SET anchor_hash = %s WHERE id = 1", [chain[1].hash])
    with pytest.raises(CommandError, match=f"broken at event {chain[2].id}: the chain starts after events that no"):
        call_command("verify_audit")


def test_a_kept_head_still_verifies_as_the_chain_grows(chain, alice, capsys):
    kept = head_now(capsys)
    audit.record(Action.SIGN_IN, actor=alice)
    call_command("verify_audit", "--expect-head", kept)
    out = capsys.readouterr().out
    assert "intact: 6 event(s)" in out
    assert f"Head: {AuditEvent.objects.order_by('-id').first().hash}" in out


def test_expect_head_must_look_like_a_head(chain):
    with pytest.raises(CommandError, match="64-digit head"):
        call_command("verify_audit", "--expect-head", "yesterday")


def test_an_empty_expected_head_fails_instead_of_checking_without_it(tmp_path):
    """A scheduled `verify_audit --expect-head "$HEAD"` whose variable is unset must not report intact."""
    env = {"PATH": os.environ["PATH"], "PORTAL_DATA_DIR": str(tmp_path)}
    result = run_manage("verify_audit", "--expect-head", "", env=env)
    assert result.returncode != 0
    assert "The expected head is empty: give --expect-head the 64-digit hash after 'Head: '" in result.stderr
    assert "intact" not in result.stdout


def test_an_expected_head_of_spaces_is_empty_too(chain, capsys):
    with pytest.raises(CommandError, match="The expected head is empty"):
        call_command("verify_audit", "--expect-head", "  ")
    assert "intact" not in capsys.readouterr().out


# --- Rolling the audit key ------------------------------------------------------------------------

NEW_AUDIT_KEY = base64.urlsafe_b64encode(b"b" * 32).decode()
NEW_AUDIT_KEY_ID = crypto.parse_keyring(NEW_AUDIT_KEY).primary_id


def test_rotation_re_signs_in_batches_and_the_old_key_can_go(chain, settings, capsys):
    kept = head_now(capsys)
    settings.PORTAL_AUDIT_KEYS = f"{NEW_AUDIT_KEY},{TEST_AUDIT_KEYRING}"
    call_command("rotate_audit_key", "--batch-size", "2")
    assert "all 5 are now signed with audit key" in capsys.readouterr().out
    settings.PORTAL_AUDIT_KEYS = NEW_AUDIT_KEY  # the old key is gone
    assert set(AuditEvent.objects.values_list("signing_key_id", flat=True)) == {NEW_AUDIT_KEY_ID}
    call_command("verify_audit", "--expect-head", kept)  # hashes did not change: old anchors hold
    assert AuditEvent.objects.get(action=Action.AUDIT_RESEALED).details == {"events": 5, "key_id": NEW_AUDIT_KEY_ID}


def test_an_interrupted_rotation_verifies_and_resumes(chain, settings, capsys):
    settings.PORTAL_AUDIT_KEYS = f"{NEW_AUDIT_KEY},{TEST_AUDIT_KEYRING}"
    audit.resign_batch(crypto.parse_keyring(settings.PORTAL_AUDIT_KEYS), 2)  # then the process died
    call_command("verify_audit")  # half old key, half new: both in the ring
    call_command("rotate_audit_key", "--batch-size", "2")
    assert "Re-signed 3 event(s); all 5 are now signed" in capsys.readouterr().out
    assert AuditEvent.objects.get(action=Action.AUDIT_RESEALED).details["events"] == 5


def test_rotation_refuses_to_launder_a_forged_row(chain, settings):
    edit_then_rechain(chain)
    rechain_from(chain[1].id)
    settings.PORTAL_AUDIT_KEYS = f"{NEW_AUDIT_KEY},{TEST_AUDIT_KEYRING}"
    with pytest.raises(CommandError, match=f"Event {chain[1].id} cannot be re-signed: its signature does not match"):
        call_command("rotate_audit_key", "--batch-size", "10")
    assert not AuditEvent.objects.filter(signing_key_id=NEW_AUDIT_KEY_ID).exists()


def test_a_row_signed_with_a_key_missing_from_the_ring_is_named(chain, settings):
    settings.PORTAL_AUDIT_KEYS = NEW_AUDIT_KEY
    old_id = chain[0].signing_key_id
    with pytest.raises(CommandError, match=f"signed with audit key {old_id}, which is not in PORTAL_AUDIT_KEYS"):
        call_command("verify_audit")
    with pytest.raises(CommandError, match=f"audit key {old_id}, which is not in PORTAL_AUDIT_KEYS"):
        call_command("rotate_audit_key")


def test_development_creates_an_audit_key_file_once(settings, tmp_path):
    settings.DEBUG = True
    settings.PORTAL_AUDIT_KEYS = ""
    settings.DATA_DIR = tmp_path / "dev-data"
    first = audit_chain.get_keyring()
    assert (tmp_path / "dev-data" / "audit.key").stat().st_mode & 0o077 == 0
    assert audit_chain.get_keyring() == first


def test_production_start_up_without_an_audit_key_names_it(tmp_path):
    env = production_env(tmp_path, PORTAL_ENCRYPTION_KEYS=TEST_KEYRING)
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert "PORTAL_AUDIT_KEYS is not set" in result.stderr
    assert "Traceback" not in result.stderr


# --- Upgrading an unkeyed chain -------------------------------------------------------------------

KEYED_MIGRATION = ("portal", "0003_keyed_audit_chain")


def unkeyed_hash(event) -> str:
    """The hash as the portal computed it before the chain had a key."""
    body = {
        "created_at": event.created_at.isoformat(),
        "actor": event.actor_username,
        "action": event.action,
        "team": event.team_slug,
        "gateway": event.gateway_slug,
        "target": event.target,
        "ip": event.ip_address or "",
        "user_agent": event.user_agent,
        "details": event.details,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((event.prev_hash + text).encode()).hexdigest()


def upgrade_with_unkeyed_events(count: int, tamper: str = "") -> None:
    """Go back to before the key, write an unkeyed chain as the old code did, then migrate forward."""
    executor = MigrationExecutor(connection)
    [before] = executor.loader.graph.node_map[KEYED_MIGRATION].parents
    executor.migrate([before.key])
    old = executor.loader.project_state(before.key).apps
    Event, Head = old.get_model("portal", "AuditEvent"), old.get_model("portal", "AuditChainHead")
    prev = ""
    for n in range(count):
        event = Event(created_at=timezone.now(), action="auth.sign_in", actor_username="alice", details={"n": n})
        event.prev_hash, event.ip_address = prev, "10.0.0.1"
        event.hash = prev = unkeyed_hash(event)
        event.save()
    Head.objects.create(pk=1, last_hash=prev)
    if tamper:
        sql(tamper)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_upgrading_signs_an_intact_unkeyed_chain(capsys):
    upgrade_with_unkeyed_events(4)
    call_command("verify_audit")
    assert "intact: 5 event(s)" in capsys.readouterr().out
    resealed = AuditEvent.objects.get(action=Action.AUDIT_RESEALED)
    assert resealed.details["events"] == 4 and resealed.details["unkeyed_chain"] == "intact"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_upgrading_records_a_break_from_before_the_key(capsys):
    upgrade_with_unkeyed_events(
        4,
        tamper="UPDATE portal_auditevent SET target = 'forged' WHERE id = (SELECT MIN(id) + 1 FROM portal_auditevent)",
    )
    call_command("verify_audit")  # signed from now on; the old break is on the record, not laundered
    second = AuditEvent.objects.order_by("id")[1]
    resealed = AuditEvent.objects.get(action=Action.AUDIT_RESEALED)
    assert resealed.details["unkeyed_chain"] == f"broken at event {second.id}: its content did not match its hash"


# --- Filters --------------------------------------------------------------------------------------

IMPOSSIBLE_MOMENTS = [
    "2026-02-30",
    "2026-11-23T25:00",
    "9999-12-31T23:59:59-23:59",  # past year 9999 once in UTC
    "0001-01-01T00:00:00+05:00",  # before year 1 once in UTC
]


@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("value", IMPOSSIBLE_MOMENTS)
def test_an_impossible_date_is_a_sentence_not_a_500(api, client, staff, chain, name, value):
    response = api(staff).get("/api/v1/audit-events/", {name: value})
    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"{name} must be a date or time like 2026-11-23")
    assert "does not exist" in response.json()["detail"]
    client.force_login(staff)
    page = client.get("/audit/", {name: value})
    assert page.status_code == 400
    assert f"{name} must be a date or time" in page.content.decode()
    assert page.context["events"] == []


@pytest.mark.parametrize(
    "query, count",
    [
        ({"since": "0001-01-01T00:00:00Z"}, 5),
        ({"until": "9999-12-31T23:59:59.999999Z"}, 5),
        ({"since": "9999-12-31"}, 0),
        ({"until": "0001-01-01"}, 0),
        ({"since": "2000-01-01T00:00"}, 5),  # no offset: the portal's time zone
    ],
)
def test_the_calendars_edges_are_valid_filters(api, client, staff, chain, query, count):
    query = {**query, "action": Action.TEAM_CREATED}  # signing in is an event too
    response = api(staff).get("/api/v1/audit-events/", query)
    assert response.status_code == 200
    assert len(response.json()["results"]) == count
    client.force_login(staff)
    assert len(client.get("/audit/", query).context["events"]) == count


@pytest.mark.parametrize("before", ["²", "1" * 40, "-1"])
def test_an_odd_cursor_on_the_audit_page_starts_at_the_newest(client, staff, chain, before):
    client.force_login(staff)
    page = client.get("/audit/", {"before": before, "action": Action.TEAM_CREATED})
    assert page.status_code == 200
    assert len(page.context["events"]) == 5


def test_deleting_a_user_or_a_team_leaves_their_signed_rows_as_they_were(bob, web, capsys):
    """A deleted user's or team's rows keep their ids and names: rewriting them would read as forgery."""
    audit.record(Action.SIGN_IN, actor=bob)
    audit.record(Action.TEAM_UPDATED, actor=bob, team=web)
    bob_id, web_id = bob.pk, web.pk
    bob.delete()
    web.delete()
    rows = AuditEvent.objects.order_by("id")
    assert [(e.actor_id, e.actor_username, e.team_id, e.team_slug) for e in rows][-2:] == [
        (bob_id, "bob", None, ""),
        (bob_id, "bob", web_id, "web"),
    ]
    call_command("verify_audit")
    assert "intact" in capsys.readouterr().out


def test_an_edited_row_whose_signature_was_blanked_is_named(chain):
    """An insider edits a row, recomputes every SHA-256 link, and blanks the signature they cannot make."""
    changed = forge_last_row(chain)
    rechain_from(changed)
    sql("UPDATE portal_auditevent SET signature = '', signing_key_id = '' WHERE id = %s", [changed])
    with pytest.raises(CommandError, match=f"broken at event {changed}: it carries no signature"):
        call_command("verify_audit")
