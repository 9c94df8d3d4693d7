"""What a developer is told about a revoked key when they already hold another of the team: a rollover on the same
gateway (the new key assigned before the old one is revoked) or a move to another gateway, on My set-up, in
GET /api/v1/me/configs/ and by the live helper."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from gateways import devices
from gateways.models import Assignment, GatewayKey, Verdict
from gateways.services import assign_key, revoke_key, store_key
from portal.models import Membership, Role

pytestmark = [pytest.mark.django_db]

ASKS_FOR_A_NEW_ONE = "Ask your team admin for a new one"


def _give(alice, team, gateway, label: str, secret: str) -> Assignment:
    key = store_key(team=team, gateway=gateway, label=label, secret=secret, actor=alice)
    return assign_key(key=key, username="bob", actor=alice)


def _notice(api, bob, assignment: Assignment) -> str:
    configs = api(bob).get("/api/v1/me/configs/").json()["results"]
    notice = next(c for c in configs if c["id"] == assignment.pk)["notice"]
    assert notice["kind"] == "revoked", notice
    return notice["sentence"]


def _notice_read_alone(assignment: Assignment) -> str:
    kind, sentence = Assignment.objects.select_related("key").get(pk=assignment.pk).notice(soon=timedelta(days=7))
    assert kind == "revoked"
    return sentence


def test_a_rollover_assigned_before_the_revocation_is_named(client, api, alice, bob, bob_assignment, web, tokenbay):
    """The no-downtime way: store and assign the new key, then revoke the old one."""
    _give(alice, web, tokenbay, "Bob laptop 2", "sk-tokenbay-new-0123456789abcdef")
    revoke_key(key=bob_assignment.key, actor=alice)
    expected = (
        "The key Bob laptop was revoked: it no longer works. Your team admin has given you the key Bob laptop 2 "
        "for the same gateway: use that one."
    )
    assert _notice(api, bob, bob_assignment) == expected
    assert _notice_read_alone(bob_assignment) == expected
    client.force_login(bob)
    page = client.get("/setup/").content.decode()
    assert "Bob laptop 2" in page and ASKS_FOR_A_NEW_ONE not in page


def test_a_move_to_another_gateway_names_the_key_held_there_and_its_gateway(
    client, api, alice, bob, bob_assignment, tokaify_key
):
    """alice gives bob Tokaify's key, bob downloads it, then alice revokes TokenBay's."""
    moved = assign_key(key=tokaify_key, username="bob", actor=alice)
    assert api(bob).get(f"/api/v1/me/configs/{moved.id}/settings.json").status_code == 200
    revoke_key(key=bob_assignment.key, actor=alice)
    expected = (
        "The key Bob laptop was revoked: it no longer works. You also hold the key Alice laptop of the same team, "
        f"for another gateway ({tokaify_key.gateway.name}), which needs a set-up of its own: if it takes this one's "
        "place, set that one up; if not, ask your team admin for a new key."
    )
    assert _notice(api, bob, bob_assignment) == expected
    assert _notice_read_alone(bob_assignment) == expected
    client.force_login(bob)
    page = client.get("/setup/").content.decode()
    assert ASKS_FOR_A_NEW_ONE not in page and "You also hold the key Alice laptop" in page


def test_the_same_gateway_comes_first_then_the_newest_assignment(
    api, alice, bob, bob_assignment, web, tokenbay, tokaify
):
    _give(alice, web, tokenbay, "Older rollover", "sk-tokenbay-old-0123456789abcdef")
    _give(alice, web, tokenbay, "Newer rollover", "sk-tokenbay-new-0123456789abcdef")
    _give(alice, web, tokaify, "Newest elsewhere", "sk-tokaify-new-0123456789abcdef")
    revoke_key(key=bob_assignment.key, actor=alice)
    for sentence in (_notice(api, bob, bob_assignment), _notice_read_alone(bob_assignment)):
        assert "the key Newer rollover for the same gateway" in sentence, sentence
    _give(alice, web, tokaify, "Newest of all elsewhere", "sk-tokaify-newer-0123456789abcdef")
    revoke_key(key=Assignment.objects.get(key__label="Newer rollover").key, actor=alice)
    revoke_key(key=Assignment.objects.get(key__label="Older rollover").key, actor=alice)
    for sentence in (_notice(api, bob, bob_assignment), _notice_read_alone(bob_assignment)):
        assert "You also hold the key Newest of all elsewhere of the same team" in sentence, sentence


def test_a_key_of_another_team_is_not_named(api, alice, bob, bob_assignment, data_team, tokenbay):
    Membership.objects.create(team=data_team, user=alice, role=Role.ADMIN)
    Membership.objects.create(team=data_team, user=bob, role=Role.MEMBER)
    _give(alice, data_team, tokenbay, "Data laptop", "sk-tokenbay-data-0123456789abcdef")
    revoke_key(key=bob_assignment.key, actor=alice)
    assert _notice(api, bob, bob_assignment).endswith(ASKS_FOR_A_NEW_ONE + ".")
    assert _notice_read_alone(bob_assignment).endswith(ASKS_FOR_A_NEW_ONE + ".")


def _live_device_token(bob_assignment) -> str:
    _, code = devices.create_device(assignment=bob_assignment, name="bob-mbp", platform="linux", actor=None)
    _, raw = devices.install_device(code=code, request=None, render=lambda d, raw: raw)
    return raw


def _helper_says(client, token: str) -> str:
    response = client.get("/api/v1/device/key", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403, response.content
    return response.content.decode().strip()


def test_the_live_helper_names_the_rollover_in_my_setups_words(client, api, alice, bob, bob_assignment, web, tokenbay):
    token = _live_device_token(bob_assignment)
    _give(alice, web, tokenbay, "Bob laptop 2", "sk-tokenbay-new-0123456789abcdef")
    revoke_key(key=bob_assignment.key, actor=alice)
    said = _helper_says(client, token)
    assert said.startswith("The key 'Bob laptop' was revoked in "), said
    assert "your team admin has given you the key 'Bob laptop 2' for the same gateway: use that one" in said, said
    assert "Your team admin has given you the key Bob laptop 2 for the same gateway: use that one" in _notice(
        api, bob, bob_assignment
    )
    assert "new key" not in said, said


def test_the_live_helper_names_the_key_held_on_another_gateway_in_my_setups_words(
    client, api, alice, bob, bob_assignment, tokaify_key
):
    token = _live_device_token(bob_assignment)
    assign_key(key=tokaify_key, username="bob", actor=alice)
    revoke_key(key=bob_assignment.key, actor=alice)
    said = _helper_says(client, token)
    gateway = tokaify_key.gateway.name
    assert (
        f"you also hold the key 'Alice laptop' of the same team, for another gateway ({gateway}), which needs a "
        "set-up of its own: if it takes this one's place, set that one up" in said
    ), said
    assert said.endswith("if not, ask your team admin for a new key."), said
    sentence = _notice(api, bob, bob_assignment)
    assert f"for another gateway ({gateway}), which needs a set-up of its own: if it takes" in sentence, sentence


def test_the_live_helper_still_asks_for_a_new_key_without_one(client, alice, bob, bob_assignment, settings):
    settings.PORTAL_NAME = "Acme portal"
    token = _live_device_token(bob_assignment)
    revoke_key(key=bob_assignment.key, actor=alice)
    said = _helper_says(client, token)
    assert said == "The key 'Bob laptop' was revoked in Acme portal; ask your team admin for a new key.", said


def test_my_configs_cost_the_same_queries_with_keys_moved_to_another_gateway(
    client, api, alice, bob, web, tokenbay, tokaify, django_assert_max_num_queries
):
    for i in range(4):
        old = _give(alice, web, tokenbay, f"old{i}", f"sk-old-{i}-0000000000000")
        _give(alice, web, tokaify, f"new{i}", f"sk-new-{i}-0000000000000")
        revoke_key(key=old.key, actor=alice)
    bob_api = api(bob)
    with django_assert_max_num_queries(4):  # as tests/api/test_configs.py bounds it
        configs = bob_api.get("/api/v1/me/configs/").json()["results"]
    sentences = [c["notice"]["sentence"] for c in configs if c["notice"] and c["notice"]["kind"] == "revoked"]
    assert len(sentences) == 4 and all("You also hold the key new3 of the same team" in s for s in sentences)
    client.force_login(bob)
    assert client.get("/setup/").status_code == 200


def test_a_key_the_gateway_refuses_is_not_offered_in_place_of_the_revoked_one(
    client, api, alice, bob, bob_assignment, web, tokenbay
):
    """The spare key's own card says the gateway refuses it: switching to it would be refused again."""
    spare = store_key(
        team=web, gateway=tokenbay, label="Bob spare", secret="sk-tokenbay-spare-0123456789abcdef", actor=alice
    )
    assign_key(key=spare, username="bob", actor=alice)
    now = timezone.now()
    GatewayKey.objects.filter(pk=spare.pk).update(
        config_changed_at=now - timedelta(hours=2), last_probe_at=now, last_probe_verdict=Verdict.AUTH_FAILED
    )
    _, code = devices.create_device(assignment=bob_assignment, name="bob-mbp", platform="linux", actor=None)
    _, token = devices.install_device(code=code, request=None, render=lambda d, raw: raw)
    revoke_key(key=bob_assignment.key, actor=alice)

    assert Assignment.objects.get(key=spare).notice(soon=timedelta(days=7))[0] == "failing"
    notice = _notice(api, bob, bob_assignment)
    said = client.get("/api/v1/device/key", HTTP_AUTHORIZATION=f"Bearer {token}").content.decode()
    assert "Bob spare" not in notice and notice.endswith("Ask your team admin for a new one."), notice
    assert "Bob spare" not in said and "ask your team admin for a new key" in said, said


def test_the_revoked_keys_card_and_its_download_name_the_rollover_too(client, api, alice, bob, bob_assignment, web):
    """The notice names the new key; the revoked key's own card and a download of it must not still ask for one."""
    new = _give(alice, web, bob_assignment.key.gateway, "Bob laptop 2", "sk-tokenbay-new-0123456789abcdef")
    revoke_key(key=bob_assignment.key, actor=alice)
    use_it = "This key was revoked, so it yields no configuration. Your team admin has given you the key Bob laptop 2"
    client.force_login(bob)
    text = " ".join(re.sub(r"<[^>]+>", " ", client.get("/setup/").content.decode()).split())
    assert use_it in text and "Ask your team admin for a new key" not in text
    answer = api(bob).get(f"/api/v1/me/configs/{bob_assignment.pk}/settings.json")
    assert answer.status_code == 410 and answer.json()["detail"].startswith(use_it), answer.json()
    assert new.key.is_usable
