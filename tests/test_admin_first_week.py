"""A new team admin's first week, following only the portal's own words: a probe that turns betas off, a
rotation with live devices only, a revocation or a member's removal while a downloaded copy still works at
the gateway, and the audit trail of a key whose holder left the team."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.test import Client

from gateways import devices, services
from gateways.models import Assignment, GatewayKey
from portal.models import Action, AuditEvent
from tests.conftest import confirm_password
from tests.gateway_emulator import GatewayRules

SECRET = "sk-acme-0123456789abcdef"
NEW_SECRET = "sk-acme-fedcba9876543210"


@pytest.fixture
def acme(emulator, staff):
    """A custom gateway that rejects context_management, served by the emulator."""
    with emulator(GatewayRules(keys={SECRET, NEW_SECRET}, reject_context_management=True)) as gw:
        gateway, _ = services.create_gateway(
            slug="acme",
            name="Acme",
            base_url=gw.base_url,
            auth_scheme="x-api-key",
            model_id_style="hyphenated",
            default_model="claude-sonnet-4-6",
            actor=staff,
        )
        yield gateway, gw


@pytest.fixture
def acme_key(acme, web, alice, bob):
    gateway, _ = acme
    key = services.store_key(team=web, gateway=gateway, label="Bob laptop", secret=SECRET, actor=alice)
    services.assign_key(key=key, username="bob", actor=alice)
    return key


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def download(key, user) -> None:
    """The user downloads settings.json: a static copy of the secret on their disk."""
    assignment = Assignment.objects.get(key=key, user=user)
    assert as_user(user).get(f"/setup/{assignment.pk}/settings.json").status_code == 200


def live_device(key, user):
    assignment = Assignment.objects.get(key=key, user=user)
    device, code = devices.create_device(assignment=assignment, name="bob-mbp", platform="macos", actor=user)
    _, raw = devices.install_device(code=code, request=None, render=lambda d, raw: raw)
    devices.fetch_key(raw_token=raw, request=None)
    return device


def gateway_answers(base_url: str, secret: str) -> int:
    body = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
    request = urllib.request.Request(
        base_url + "/v1/messages",
        data=body.encode(),
        headers={"x-api-key": secret, "content-type": "application/json", "anthropic-version": "2023-06-01"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def page_text(response) -> str:
    return response.content.decode()


def said(response) -> str:
    """The messages the page shows after an action."""
    html = page_text(response)
    return html.split('<ul class="messages">', 1)[1].split("</ul>", 1)[0] if '<ul class="messages">' in html else ""


def test_a_probe_that_turns_betas_off_shows_its_own_ok_verdict(acme_key, alice, bob):
    """The retry without context_management tested the new setting: its ok counts on every page."""
    download(acme_key, bob)
    client = as_user(alice)
    done = client.post(f"/keys/{acme_key.id}/probe/", follow=True)
    key = GatewayKey.objects.get(pk=acme_key.pk)
    assert key.disable_experimental_betas is True and key.last_probe_verdict == "ok"
    assert key.current_probe_verdict == "ok"
    assert GatewayKey.objects.failing().count() == 0
    key_page = page_text(done)
    assert "Configs now set CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS=1" in key_page
    assert "the secret or settings changed after the last probe" not in key_page
    assert 'data-verdict="ok"' in key_page.split('id="probe-latest"')[1].split("</div>")[0]
    team_page = page_text(client.get("/teams/web/"))
    row = team_page.split("Bob laptop", 1)[1].split("</tr>")[0]
    assert 'data-verdict="ok"' in row and "not probed" not in row
    # Bob's copy was made before the change: he is still told to download again.
    assignment = Assignment.objects.get(key=key, user=bob)
    assert assignment.changed_since_download
    assert devices.rollout(key)["static_stale"] == 1


def test_rotation_does_not_tell_live_device_holders_to_download_again(acme_key, bob, alice):
    live_device(acme_key, bob)
    client = as_user(alice)
    confirm_password(client, alice)
    rotate_page = page_text(client.get(f"/keys/{acme_key.id}/rotate/"))
    assert "must download" not in rotate_page
    assert "No developer holds a static copy; 1 live device fetches the new secret by itself." in rotate_page
    after = said(client.post(f"/keys/{acme_key.id}/rotate/", {"secret": NEW_SECRET}, follow=True))
    assert "Secret rotated" in after
    assert "must download" not in after
    assert "No developer holds a static copy; 1 live device fetches the new secret by itself." in after


def test_rotation_names_how_many_must_download_again(acme_key, bob, alice):
    download(acme_key, bob)
    client = as_user(alice)
    confirm_password(client, alice)
    rotate_page = page_text(client.get(f"/keys/{acme_key.id}/rotate/"))
    assert "1 developer holds a static copy and must download again." in rotate_page
    after = said(client.post(f"/keys/{acme_key.id}/rotate/", {"secret": NEW_SECRET}, follow=True))
    assert "1 developer holds a static copy and must download again." in after


def test_revoking_says_the_gateway_still_accepts_downloaded_copies(acme, acme_key, bob, alice):
    _, gw = acme
    download(acme_key, bob)
    client = as_user(alice)
    key_page = page_text(client.get(f"/keys/{acme_key.id}/"))
    confirm = key_page.split("Revoke <strong>", 1)[1].split("</p>")[0]
    assert "lose" not in confirm
    assert "1 developer holds a static copy (downloaded or shown)" in confirm
    assert "delete or disable the key in the <bdi>Acme</bdi> console too" in confirm
    confirm_password(client, alice)
    told = said(client.post(f"/keys/{acme_key.id}/revoke/", follow=True))
    assert GatewayKey.objects.get(pk=acme_key.pk).revoked_at is not None
    assert gateway_answers(gw.base_url, SECRET) == 200  # what the page must warn about
    assert "Key revoked" in told
    assert "1 developer holds a static copy that Acme still accepts" in told
    assert "delete or disable the key in the Acme console" in told


def test_revoking_a_key_nobody_downloaded_says_nothing_of_the_gateway(acme_key, bob, alice):
    live_device(acme_key, bob)
    client = as_user(alice)
    confirm_password(client, alice)
    told = said(client.post(f"/keys/{acme_key.id}/revoke/", follow=True))
    assert "Key revoked" in told and "static copy" not in told


def test_removing_a_member_names_the_keys_to_rotate(acme, acme_key, bob, alice):
    _, gw = acme
    download(acme_key, bob)
    client = as_user(alice)
    team_page = page_text(client.get("/teams/web/"))
    confirm = team_page.split("Remove <strong><bdi>bob</bdi></strong>", 1)[1].split("</p>")[0]
    assert "lose every key" not in confirm
    assert "a downloaded copy still works where they saved it until the key is rotated" in confirm
    told = said(client.post("/teams/web/members/bob/remove/", follow=True))
    assert gateway_answers(gw.base_url, SECRET) == 200  # Bob's copy still works
    assert "bob was removed from Web" in told
    assert "still works until you rotate" in told
    assert (
        f'<a href="/keys/{acme_key.id}/rotate/"><span class="visually-hidden">Rotate </span><bdi>Bob laptop</bdi></a>'
        in told
    )


def test_removing_a_member_who_downloaded_nothing_says_nothing_to_rotate(acme_key, bob, alice):
    told = said(as_user(alice).post("/teams/web/members/bob/remove/", follow=True))
    assert "bob was removed from Web" in told and "rotate" not in told


def test_the_keys_audit_trail_shows_when_a_removed_member_lost_it(acme_key, bob, dave, alice):
    as_user(alice).post("/teams/web/members/bob/remove/")
    event = AuditEvent.objects.get(action=Action.ASSIGNMENT_REMOVED)
    assert event.details == {
        "label": "Bob laptop",
        "key_id": str(acme_key.pk),
        "user": "bob",
        "reason": "left the team",
    }
    assert event.actor == alice and event.gateway_slug == "acme" and event.target == acme_key.short_fingerprint
    rows = page_text(as_user(dave).get("/audit/?gateway=acme"))
    assert "Assignment removed" in rows and "left the team" in rows
    call_command("verify_audit")


@pytest.mark.parametrize(
    ("who", "url", "reason"),
    [
        ("alice", "/teams/web/members/bob/offboard/", "offboarded from the team"),
        ("staff", "/users/bob/offboard/", "account offboarded"),
    ],
)
def test_the_keys_audit_trail_shows_when_an_offboarded_member_lost_it(
    acme_key, bob, dave, alice, staff, who, url, reason
):
    client = as_user({"alice": alice, "staff": staff}[who])
    confirm_password(client, {"alice": alice, "staff": staff}[who])
    client.post(url)
    [event] = AuditEvent.objects.filter(action=Action.ASSIGNMENT_REMOVED)  # once, though end_membership runs too
    assert event.details == {"label": "Bob laptop", "key_id": str(acme_key.pk), "user": "bob", "reason": reason}
    assert event.gateway_slug == "acme" and event.target == acme_key.short_fingerprint
    call_command("verify_audit")


def test_revoking_after_a_member_with_a_copy_left_still_names_the_copy(acme, acme_key, bob, alice):
    """The member's assignment went with them, but the copy they downloaded did not."""
    _, gw = acme
    download(acme_key, bob)
    client = as_user(alice)
    assert "still works until you rotate" in said(client.post("/teams/web/members/bob/remove/", follow=True))
    key_page = page_text(client.get(f"/keys/{acme_key.id}/"))
    confirm = key_page.split("Revoke <strong>", 1)[1].split("</p>")[0]
    assert "1 developer holds a static copy (downloaded or shown)" in confirm
    confirm_password(client, alice)
    told = said(client.post(f"/keys/{acme_key.id}/revoke/", follow=True))
    assert gateway_answers(gw.base_url, SECRET) == 200
    assert "1 developer holds a static copy that Acme still accepts" in told


def test_a_copy_of_a_secret_rotated_out_is_no_copy_the_gateway_still_accepts(acme, acme_key, bob, alice):
    _, gw = acme
    download(acme_key, bob)  # of the first secret
    client = as_user(alice)
    confirm_password(client, alice)
    assert client.post(f"/keys/{acme_key.id}/rotate/", {"secret": "sk-acme-fedcba9876543210"}).status_code == 302
    gw.rules.keys.discard(SECRET)  # dropped at the gateway with the rotation
    removed = said(client.post("/teams/web/members/bob/remove/", follow=True))
    assert "still works until you rotate" not in removed
    told = said(client.post(f"/keys/{acme_key.id}/revoke/", follow=True))
    assert "Key revoked" in told and "still accepts" not in told


def test_the_rotate_links_name_what_they_do_out_of_context(acme_key, tokaify_key, bob, alice):
    """A screen reader's list of links: each rotate link says it rotates, and which key."""
    download(acme_key, bob)
    Assignment.objects.create(key=tokaify_key, user=bob)
    download(tokaify_key, bob)
    client = as_user(alice)
    confirm_password(client, alice)
    offboard_page = client.get("/teams/web/members/bob/offboard/").content.decode()
    names = re.findall(r'href="/keys/[^"]+/rotate/">(.*?)</a>', offboard_page)
    assert len(names) == 2 and len({re.sub(r"<[^>]+>", "", n) for n in names}) == 2, names
    removed = str(client.post("/teams/web/members/bob/remove/", follow=True).content.decode())
    links = re.findall(r'href="/keys/[^"]+/rotate/">(.*?)</a>', removed)
    assert links and all(re.sub(r"<[^>]+>", "", n).startswith("Rotate ") for n in links), links


def test_rotating_to_the_present_secret_is_refused_and_changes_nothing(acme_key, bob, alice):
    """Not a rotation: every copy out there still works, so nobody may be told to download again."""
    download(acme_key, bob)
    client = as_user(alice)
    confirm_password(client, alice)
    response = client.post(f"/keys/{acme_key.id}/rotate/", {"secret": SECRET})
    assert "That is the key&#x27;s present secret" in response.content.decode()
    key = GatewayKey.objects.get(pk=acme_key.pk)
    assert key.rotated_at is None and not AuditEvent.objects.filter(action=Action.KEY_ROTATED).exists()
    assert devices.copies_out(key) == 1


@pytest.mark.parametrize(
    ("downloaded", "rotated"),
    [(None, None), ("10:00", None), ("10:00", "11:00"), ("11:00", "11:00"), ("12:00", "11:00"), (None, "11:00")],
)
def test_the_holders_query_and_an_assignments_own_answer_agree(acme_key, downloaded, rotated):
    """copies_out counts holders in SQL; the offboarding page and a removal's message ask each assignment."""
    at = {None: None, **{t: datetime(2026, 3, 2, int(t[:2]), tzinfo=UTC) for t in ("10:00", "11:00", "12:00")}}
    GatewayKey.objects.filter(pk=acme_key.pk).update(rotated_at=at[rotated])
    Assignment.objects.filter(key=acme_key).update(last_download_at=at[downloaded])
    assignment = Assignment.objects.select_related("key").get(key=acme_key)
    queried = Assignment.objects.filter(key=acme_key).holding_present_secret().exists()
    assert queried == assignment.holds_present_secret == (downloaded is not None and (rotated or "") <= downloaded)
    assert devices.copies_out(acme_key) == int(queried)
