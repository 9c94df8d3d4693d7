"""A team admin's slips and the way back: a member removed by mistake, a key revoked by mistake, a rotation undone."""

from __future__ import annotations

import re

import time_machine
from django.utils import timezone

from gateways import dashboard, devices
from gateways.connections import ConnectionFilters, connections_for
from gateways.models import Assignment, GatewayKey
from gateways.services import (
    assign_key,
    revoke_key,
    rotate_key_secret,
    set_key_enabled,
    store_key,
    update_key_settings,
)
from tests.conftest import TOKENBAY_SECRET, confirm_password

MISTAKE = "sk-tb-" + "m" * 40


def _download(client, user, assignment_id: int) -> None:
    client.force_login(user)
    assert client.get(f"/setup/{assignment_id}/settings.json").status_code == 200
    client.logout()


# A member removed by mistake


def test_removing_a_member_names_every_key_taken_back(client, alice, bob, bob_assignment, tokaify_key):
    assign_key(key=tokaify_key, username="bob", actor=alice)  # "Alice laptop": bob never downloads it
    _download(client, bob, bob_assignment.pk)  # "Bob laptop": downloaded, so its copy is out
    client.force_login(alice)
    confirm_password(client, alice)
    response = client.post("/teams/web/members/bob/remove/", follow=True)
    said = " ".join(str(m.message) for m in response.context["messages"])
    assert not Assignment.objects.filter(user=bob).exists()
    assert "Keys taken back: <bdi>Alice laptop</bdi>, <bdi>Bob laptop</bdi>" in said, said
    assert "assign them again if this was a mistake" in said
    # The key with a downloaded copy keeps its link to rotate it.
    rotate = f'href="/keys/{bob_assignment.key_id}/rotate/"'
    assert rotate in said and f'href="/keys/{tokaify_key.pk}/rotate/"' not in said, said


def test_removing_a_member_without_keys_names_none(client, alice, bob, web):
    client.force_login(alice)
    response = client.post("/teams/web/members/bob/remove/", follow=True)
    said = " ".join(str(m.message) for m in response.context["messages"])
    assert "bob was removed from" in said
    assert "Keys taken back" not in said


def test_the_removal_confirmation_says_the_message_names_the_keys_taken_back(client, alice, bob, web):
    client.force_login(alice)
    page = client.get("/teams/web/").content.decode()
    confirm = re.search(r"<p>Remove <strong><bdi>bob</bdi>.*?</p>", page, re.S).group(0)
    assert "names every key taken back" in confirm, confirm


# A key revoked by mistake, replaced


def _replace(key, alice, tokenbay, label: str = "Bob laptop"):
    new = store_key(
        team=key.team, gateway=tokenbay, label=label, secret="sk-tokenbay-new-0123456789abcdef", actor=alice
    )
    return new, assign_key(key=new, username="bob", actor=alice)


def test_a_replacement_key_is_named_instead_of_asking_for_a_new_one(client, api, alice, bob, bob_assignment, tokenbay):
    key = bob_assignment.key
    revoke_key(key=key, actor=alice)
    _replace(key, alice, tokenbay, label="Bob laptop 2")
    client.force_login(bob)
    page = client.get("/setup/").content.decode()
    assert "Ask your team admin for a new one" not in page
    assert "The key Bob laptop was revoked" in page
    assert "Bob laptop 2" in page
    configs = api(bob).get("/api/v1/me/configs/").json()["results"]
    revoked = next(c for c in configs if c["id"] == bob_assignment.pk)
    assert revoked["notice"]["kind"] == "revoked"
    assert "new one" not in revoked["notice"]["sentence"]
    assert "Bob laptop 2" in revoked["notice"]["sentence"], revoked["notice"]


def test_another_gateways_key_of_the_team_is_named_as_the_possible_replacement(
    api, alice, bob, bob_assignment, tokaify
):
    key = bob_assignment.key
    revoke_key(key=key, actor=alice)
    # Not the same gateway's: named with its gateway, as a set-up of its own that may or may not take this one's place.
    other = store_key(
        team=key.team, gateway=tokaify, label="Other", secret="sk-tokaify-x-0123456789abcdef", actor=alice
    )
    assign_key(key=other, username="bob", actor=alice)
    configs = api(bob).get("/api/v1/me/configs/").json()["results"]
    revoked = next(c for c in configs if c["id"] == bob_assignment.pk)
    sentence = revoked["notice"]["sentence"]
    assert "You also hold the key Other of the same team, for another gateway (Tokaify)" in sentence, sentence
    assert sentence.endswith("if not, ask your team admin for a new key."), sentence


def test_a_revoked_key_without_a_usable_key_of_the_team_still_asks_for_a_new_one(
    api, alice, bob, bob_assignment, tokaify
):
    key = bob_assignment.key
    other = store_key(
        team=key.team, gateway=tokaify, label="Other", secret="sk-tokaify-x-0123456789abcdef", actor=alice
    )
    assign_key(key=other, username="bob", actor=alice)
    set_key_enabled(key=other, enabled=False, actor=alice)  # held, but it does not work either
    revoke_key(key=key, actor=alice)
    configs = api(bob).get("/api/v1/me/configs/").json()["results"]
    revoked = next(c for c in configs if c["id"] == bob_assignment.pk)
    assert revoked["notice"]["sentence"].endswith("Ask your team admin for a new one."), revoked["notice"]


def test_a_replacement_that_no_longer_works_does_not_count(api, alice, bob, bob_assignment, tokenbay):
    key = bob_assignment.key
    revoke_key(key=key, actor=alice)
    new, _ = _replace(key, alice, tokenbay)
    revoke_key(key=new, actor=alice)
    configs = api(bob).get("/api/v1/me/configs/").json()["results"]
    sentences = [c["notice"]["sentence"] for c in configs]
    assert all(s.endswith("Ask your team admin for a new one.") for s in sentences), sentences


def test_the_notice_of_an_assignment_read_alone_names_the_replacement(alice, bob, bob_assignment, tokenbay):
    key = bob_assignment.key
    revoke_key(key=key, actor=alice)
    _replace(key, alice, tokenbay, label="Bob laptop 2")
    assignment = Assignment.objects.select_related("key").get(pk=bob_assignment.pk)
    kind, sentence = assignment.notice(soon=timezone.timedelta(days=7))
    assert kind == "revoked" and "Bob laptop 2" in sentence and "new one" not in sentence


def test_my_setup_and_my_configs_cost_the_same_queries_with_replaced_keys(
    client, api, alice, bob, web, tokenbay, django_assert_max_num_queries
):
    for i in range(4):
        key = store_key(team=web, gateway=tokenbay, label=f"k{i}", secret=f"sk-old-{i}-0000000000000", actor=alice)
        assign_key(key=key, username="bob", actor=alice)
        revoke_key(key=key, actor=alice)
        new = store_key(team=web, gateway=tokenbay, label=f"k{i}", secret=f"sk-new-{i}-0000000000000", actor=alice)
        assign_key(key=new, username="bob", actor=alice)
    bob_api = api(bob)
    with django_assert_max_num_queries(4):  # as tests/api/test_configs.py bounds it
        configs = bob_api.get("/api/v1/me/configs/").json()["results"]
    assert sum(1 for c in configs if c["notice"] and c["notice"]["kind"] == "revoked") == 4
    client.force_login(bob)
    client.get("/setup/")
    with django_assert_max_num_queries(12) as few:
        client.get("/setup/")
    for i in range(4, 8):
        key = store_key(team=web, gateway=tokenbay, label=f"k{i}", secret=f"sk-old-{i}-0000000000000", actor=alice)
        assign_key(key=key, username="bob", actor=alice)
        revoke_key(key=key, actor=alice)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get("/setup/")


# A rotation undone


def test_rotating_back_to_the_secret_a_holder_downloaded_counts_their_copy(client, alice, bob, bob_assignment):
    key = bob_assignment.key
    _download(client, bob, bob_assignment.pk)
    rotate_key_secret(key=key, secret=MISTAKE, actor=alice)  # the slip
    key = rotate_key_secret(key=key, secret=TOKENBAY_SECRET, actor=alice)  # back to what bob holds
    assignment = Assignment.objects.select_related("key").get(pk=bob_assignment.pk)
    assert assignment.holds_present_secret and not assignment.rotated_since_download
    # Nothing bob holds changed: neither the secret nor the settings (R53: the rotations moved config_changed_at).
    assert not assignment.changed_since_download
    assert assignment.notice(soon=timezone.timedelta(days=7)) is None
    assert devices.copies_out(key) == 1  # the revoke warning counts bob's copy
    client.force_login(bob)
    page = client.get("/setup/").content.decode()
    assert "Download it again" not in page and "after your last download" not in page
    # Nobody is behind: the dashboard, the key page's rollout and the connections' stale filter agree.
    assert not dashboard.incomplete_rollouts(GatewayKey.objects.filter(pk=key.pk)).exists()
    assert devices.rollout(key)["static_stale"] == 0
    assert list(connections_for(alice, ConnectionFilters(state="stale"))) == []
    client.force_login(alice)
    assert "must download again" not in client.get(f"/keys/{key.pk}/").content.decode()
    export = client.get("/connections/?export=csv")
    [row] = b"".join(export.streaming_content).decode().splitlines()[1:]
    assert ",False," in row and ",True," not in row  # download_stale


def test_a_settings_change_after_a_rotation_undone_still_asks_for_a_download(client, alice, bob, bob_assignment):
    key = bob_assignment.key
    _download(client, bob, bob_assignment.pk)
    rotate_key_secret(key=key, secret=MISTAKE, actor=alice)
    key = rotate_key_secret(key=key, secret=TOKENBAY_SECRET, actor=alice)
    with time_machine.travel(timezone.now() + timezone.timedelta(seconds=5)):
        update_key_settings(key=key, changes={"disable_experimental_betas": True}, actor=alice)
    assignment = Assignment.objects.select_related("key").get(pk=bob_assignment.pk)
    assert assignment.changed_since_download
    assert assignment.notice(soon=timezone.timedelta(days=7))[0] == "changed"
    assert devices.rollout(assignment.key)["static_stale"] == 1
    assert [a.pk for a in connections_for(alice, ConnectionFilters(state="stale"))] == [bob_assignment.pk]


def test_a_copy_of_the_mistaken_secret_is_behind_once_rotated_back(client, alice, bob, bob_assignment):
    key = rotate_key_secret(key=bob_assignment.key, secret=MISTAKE, actor=alice)
    _download(client, bob, bob_assignment.pk)  # bob downloads the mistake
    with time_machine.travel(timezone.now() + timezone.timedelta(seconds=5)):
        key = rotate_key_secret(key=key, secret=TOKENBAY_SECRET, actor=alice)
    assignment = Assignment.objects.select_related("key").get(pk=bob_assignment.pk)
    assert assignment.rotated_since_download and not assignment.holds_present_secret
    assert devices.copies_out(key) == 0
    rollouts = dashboard.incomplete_rollouts(GatewayKey.objects.filter(pk=key.pk))
    assert [k.pending for k in rollouts] == [1]
    stale = connections_for(alice, ConnectionFilters(state="stale"))
    assert [a.pk for a in stale] == [bob_assignment.pk]


def test_a_download_right_after_a_rotation_back_records_the_secret_it_carried(client, alice, bob, bob_assignment):
    key = bob_assignment.key
    _download(client, bob, bob_assignment.pk)  # secret A, stamped this minute
    key = rotate_key_secret(key=key, secret=MISTAKE, actor=alice)
    _download(client, bob, bob_assignment.pk)  # secret B, within the same minute
    assert Assignment.objects.get(pk=bob_assignment.pk).last_download_fingerprint == key.fingerprint
    key = rotate_key_secret(key=key, secret=TOKENBAY_SECRET, actor=alice)
    _download(client, bob, bob_assignment.pk)  # A again, still within the minute
    assignment = Assignment.objects.select_related("key").get(pk=bob_assignment.pk)
    assert assignment.last_download_fingerprint == key.fingerprint
    assert assignment.holds_present_secret
    assert devices.copies_out(key) == 1


def test_a_download_from_before_the_fingerprint_was_recorded_falls_back_to_the_times(
    client, alice, bob, bob_assignment
):
    _download(client, bob, bob_assignment.pk)
    Assignment.objects.filter(pk=bob_assignment.pk).update(last_download_fingerprint="")  # a row from before
    key = rotate_key_secret(key=bob_assignment.key, secret=MISTAKE, actor=alice)
    assignment = Assignment.objects.select_related("key").get(pk=bob_assignment.pk)
    assert assignment.rotated_since_download and not assignment.holds_present_secret
    assert devices.copies_out(key) == 0
    assert [k.pending for k in dashboard.incomplete_rollouts(GatewayKey.objects.filter(pk=key.pk))] == [1]


# The upgrade to recorded fingerprints: a row from before has none, and its next download writes one at once.


def test_a_download_in_the_minute_after_the_upgrade_records_the_secret_it_carried(client, bob, alice, bob_assignment):
    key = bob_assignment.key
    client.force_login(bob)
    assert client.get(f"/api/v1/me/configs/{bob_assignment.pk}/settings.json").status_code == 200
    # The upgrade: migration 0017 leaves the row of a download made by the old release with a blank fingerprint.
    Assignment.objects.filter(pk=bob_assignment.pk).update(last_download_fingerprint="")
    # Seconds later, on today's code, bob downloads again: this download carried the present secret.
    assert client.get(f"/api/v1/me/configs/{bob_assignment.pk}/settings.json").status_code == 200
    bob_assignment.refresh_from_db()
    assert bob_assignment.last_download_fingerprint == key.fingerprint


def test_after_a_rotation_undone_the_holder_who_downloaded_after_the_upgrade_is_current(
    client, bob, alice, bob_assignment
):
    key = bob_assignment.key
    client.force_login(bob)
    assert client.get(f"/api/v1/me/configs/{bob_assignment.pk}/settings.json").status_code == 200
    Assignment.objects.filter(pk=bob_assignment.pk).update(last_download_fingerprint="")  # the upgrade
    assert client.get(f"/api/v1/me/configs/{bob_assignment.pk}/bash").status_code == 200  # after it
    key = rotate_key_secret(key=key, secret=MISTAKE, actor=alice)
    key = rotate_key_secret(key=key, secret=TOKENBAY_SECRET, actor=alice)  # undone: bob's copy works again
    assignment = Assignment.objects.select_related("key").get(pk=bob_assignment.pk)
    assert assignment.notice(soon=timezone.timedelta(days=14)) is None  # not "download again"
    assert devices.copies_out(key) == 1  # revoking must say bob holds a copy of the present secret
