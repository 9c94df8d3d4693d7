"""A revocation is told, as a rotation is: the team's channels hear who revoked which key and what is still out there,
and each holder is mailed what My set-up tells them (the key taking its place, or to ask for a new one).

Real parts only: a webhook receiver and an SMTP server on 127.0.0.1, the key page through Django's test client.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alerts import messages, rules
from alerts.delivery import deliver_due, person_gone, prepare
from alerts.models import Delivery, EventKind, Notification
from alerts.services import create_channel, notify_person
from gateways.models import Assignment, GatewayKey
from gateways.services import assign_key, deliver_config, revoke_key, set_key_enabled, store_key
from portal.models import Membership, Role
from tests.conftest import TOKAIFY_SECRET, TOKENBAY_SECRET, confirm_password, make_user
from tests.smtp_server import body, link_in
from tests.webhook_receiver import running_receiver

pytestmark = pytest.mark.django_db

HOOK_SECRET = "whsec-0123456789abcdef-revoked"
ROLLOVER_SECRET = "sk-tokenbay-rollover-0123456789abcdef"


@pytest.fixture(autouse=True)
def _quick(settings):
    settings.NOTIFY_TIMEOUT = 5
    settings.PORTAL_URL = "https://portal.example.com"


def _member(team, username: str, *, email: str | None = None):
    user = make_user(username)
    if email is not None:
        user.email = email
        user.save()
    Membership.objects.create(team=team, user=user, role=Role.MEMBER)
    return user


def _setup_notice(assignment: Assignment) -> str:
    """The sentence My set-up shows the holder about this (revoked) key."""
    kind, sentence = Assignment.objects.select_related("key").get(pk=assignment.pk).notice(soon=timedelta(days=7))
    assert kind == "revoked"
    return sentence


def test_a_revocation_tells_the_team_s_channels_and_mails_each_holder_what_my_setup_says(
    smtp, web, alice, bob, bob_assignment, tokenbay, tokenbay_key, tokaify_key
):
    """bob downloaded and holds nothing else; carol never downloaded but has the rollover key on the same gateway;
    erin moved to Tokaify; frank's account is deactivated; gina has no address."""
    deliver_config(assignment=bob_assignment, format_name="bash")  # bob takes a static copy out of the portal
    for name in ("carol", "erin"):
        _member(web, name)
    frank = _member(web, "frank")
    gina = _member(web, "gina", email="")
    carol_held = assign_key(key=tokenbay_key, username="carol", actor=alice)
    erin_held = assign_key(key=tokenbay_key, username="erin", actor=alice)
    for name in ("frank", "gina"):
        assign_key(key=tokenbay_key, username=name, actor=alice)
    rollover = store_key(team=web, gateway=tokenbay, label="Bob laptop 2", secret=ROLLOVER_SECRET, actor=alice)
    assign_key(key=rollover, username="carol", actor=alice)
    assign_key(key=tokaify_key, username="erin", actor=alice)
    frank.is_active = False
    frank.save()

    with running_receiver() as receiver:
        create_channel(team=web, kind="webhook", target=receiver.url("/hook"), secret=HOOK_SECRET, actor=alice)
        create_channel(team=web, kind="slack", target=receiver.url("/services/T1/B2/x"), actor=alice)
        create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
        revoke_key(key=tokenbay_key, actor=alice)
        outcome = deliver_due()
        [hook] = receiver.at("/hook")
        [slack] = receiver.at("/services/T1/B2/x")
        sent = [r.body.decode() + json.dumps(r.headers) for r in receiver.received]
    assert outcome["sent"] == 6  # webhook, slack, ops@, and bob, carol, erin

    # The generic webhook: signed, the event named, labels and masked forms only.
    assert rules.signature_holds(HOOK_SECRET, hook.headers["x-portal-signature"], hook.body, now=int(time.time()))
    assert hook.headers["x-portal-event"] == "key.revoked"
    document = hook.json
    assert document["event"] == "key.revoked" and document["team"] == "web"
    assert document["subject"] == "Bob laptop was revoked"
    assert document["key"]["label"] == "Bob laptop" and document["key"]["state"] == "revoked"
    assert document["key"]["masked"] == tokenbay_key.masked and document["key"]["gateway"] == "tokenbay"
    assert (document["holders"], document["without_address"], document["unreplaced"]) == (3, 1, 2)
    assert document["static_copies"] == 1
    text = document["text"]
    assert text.startswith(f"alice revoked the key Bob laptop ({tokenbay_key.masked}, fingerprint ")
    assert "of team Web for TokenBay: its secret is destroyed and it yields no set-up any more." in text
    assert "3 holder(s) were told by mail. 1 holder(s) have no e-mail address: My set-up tells them." in text
    assert (
        "2 holder(s) hold no other key of the team they can use now (none, or only ones revoked, disabled, expired or "
        "refused by the gateway): the way back is a new key stored and assigned to them, or one of theirs enabled, "
        "renewed or fixed at the gateway."
    ) in text
    assert (
        "1 developer holds a static copy (downloaded or shown) that TokenBay still accepts until the key is deleted "
        "or disabled there: delete or disable the key in the TokenBay console."
    ) in text
    assert document["url"] == f"https://portal.example.com/keys/{tokenbay_key.id}/"

    # The Slack-compatible body: text only, with the link.
    assert set(slack.json) == {"text"}
    assert slack.json["text"].startswith("*Bob laptop was revoked*\nalice revoked the key Bob laptop")
    assert f"<https://portal.example.com/keys/{tokenbay_key.id}/|Open in the portal>" in slack.json["text"]

    # The team's e-mail channel, and each holder with an address and an active account, by their own mail.
    [team_mail] = smtp.to("ops@example.com")
    assert team_mail["Subject"] == "[Gateway portal] Bob laptop was revoked" and text in body(team_mail)
    [to_bob] = smtp.to("bob@example.com")
    assert to_bob["Subject"] == "[Gateway portal] Ask for a new key: your TokenBay key Bob laptop was revoked"
    assert _setup_notice(bob_assignment) in body(to_bob)
    assert "Ask your team admin for a new one" in body(to_bob)
    assert link_in(to_bob) == f"https://portal.example.com/setup/#assignment-{bob_assignment.id}"
    [to_carol] = smtp.to("carol@example.com")
    assert to_carol["Subject"] == "[Gateway portal] Use the key Bob laptop 2: your TokenBay key Bob laptop was revoked"
    assert _setup_notice(carol_held) in body(to_carol) and "Bob laptop 2 for the same gateway: use that one" in (
        body(to_carol)
    )
    [to_erin] = smtp.to("erin@example.com")
    assert _setup_notice(erin_held) in body(to_erin)
    assert "Alice laptop of the same team, for another gateway (Tokaify)" in body(to_erin)
    assert not smtp.to("frank@example.com")
    assert len(smtp.messages) == 4
    assert not Delivery.objects.filter(user__in=[frank, gina]).exists()

    # No secret anywhere: not on the wire, not in the mail, not in the alerts tables.
    mails = [m.as_string() for m in smtp.messages]
    rows = [repr(list(Notification.objects.values())), repr(list(Delivery.objects.values()))]
    for said in [*sent, *mails, *rows]:
        for secret in (TOKENBAY_SECRET, ROLLOVER_SECRET, TOKAIFY_SECRET, HOOK_SECRET):
            assert secret not in said


def test_revoking_on_the_key_page_names_the_admin_and_a_second_revocation_tells_nobody_again(
    client, web, alice, bob, bob_assignment, tokenbay_key
):
    create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    client.force_login(alice)
    confirm_password(client, alice)
    assert client.post(f"/keys/{tokenbay_key.id}/revoke/").status_code == 302
    [told] = Notification.objects.filter(event=EventKind.KEY_REVOKED, deliveries__channel__isnull=False)
    assert told.text.startswith("alice revoked the key Bob laptop")
    assert "holds a static copy" not in told.text  # bob never downloaded: nothing is out there
    [to_bob] = Notification.objects.filter(event=EventKind.KEY_REVOKED, deliveries__user=bob)
    assert to_bob.payload["assignment"] == bob_assignment.id and to_bob.payload["replacement"] is None

    revoke_key(key=GatewayKey.objects.get(pk=tokenbay_key.pk), actor=alice)  # already revoked: nothing happens
    assert Notification.objects.filter(event=EventKind.KEY_REVOKED).count() == 2


def _revoke_counting(key: GatewayKey, actor) -> int:
    with CaptureQueriesContext(connection) as queries:
        revoke_key(key=key, actor=actor)
    return len(queries)


def test_telling_holders_of_a_revocation_costs_only_their_own_notification(web, alice, tokenbay, tokaify_key):
    """The holders and their replacements come in one query, whatever their number; each holder then costs what
    one notify_person costs (as notify_rotation's holders do), no look-up of their replacement."""
    for name in ("carol", "erin", "frank", "gina"):
        _member(web, name)
    one = store_key(team=web, gateway=tokenbay, label="one holder", secret="sk-tokenbay-one-0123456789ab", actor=alice)
    four = store_key(
        team=web, gateway=tokenbay, label="four holders", secret="sk-tokenbay-four-0123456789", actor=alice
    )
    rollover = store_key(team=web, gateway=tokenbay, label="rollover", secret=ROLLOVER_SECRET, actor=alice)
    assign_key(key=one, username="carol", actor=alice)
    for name in ("carol", "erin", "frank", "gina"):
        assign_key(key=four, username=name, actor=alice)
    assign_key(key=rollover, username="erin", actor=alice)
    assign_key(key=tokaify_key, username="frank", actor=alice)

    with CaptureQueriesContext(connection) as per_holder:
        notify_person(web, alice, messages.channel_test(team_name="Web", actor_name="alice"))
    assert _revoke_counting(four, alice) - _revoke_counting(one, alice) == 3 * len(per_holder)
    assert Notification.objects.filter(event=EventKind.KEY_REVOKED, deliveries__user__isnull=False).count() == 5


def _deliveries_to(user) -> list[Delivery]:
    """The holder's deliveries as a notify run loads them."""
    return list(Delivery.objects.filter(user=user).select_related("notification__team", "channel", "user"))


@pytest.mark.parametrize("gone", ["revoked", "disabled"])
def test_a_mail_naming_a_key_that_stopped_working_before_it_was_sent_asks_for_a_new_one(
    smtp, settings, web, alice, bob, bob_assignment, tokenbay, tokenbay_key, gone
):
    """An admin cleaning up revokes bob's key A, then his rollover key B (or disables it) before `notify` runs: A's
    mail was written saying "use B". Sent as written, it would tell bob (maybe last, runs sending side by side) to use
    a key that no longer works; it says what My set-up says when it is sent, and the Deliveries page shows that."""
    settings.NOTIFY_CONCURRENCY = 4
    rollover = store_key(team=web, gateway=tokenbay, label="Bob laptop 2", secret=ROLLOVER_SECRET, actor=alice)
    assign_key(key=rollover, username="bob", actor=alice)
    revoke_key(key=tokenbay_key, actor=alice)
    [written] = Notification.objects.filter(event=EventKind.KEY_REVOKED, deliveries__user=bob)
    assert written.payload["replacement"] == {"label": "Bob laptop 2", "elsewhere": None}
    if gone == "revoked":
        revoke_key(key=GatewayKey.objects.get(pk=rollover.pk), actor=alice)
    else:
        set_key_enabled(key=GatewayKey.objects.get(pk=rollover.pk), enabled=False, actor=alice)

    assert deliver_due()["sent"] == (2 if gone == "revoked" else 1)
    about_a = [m for m in smtp.to("bob@example.com") if "key Bob laptop was revoked" in m["Subject"]]
    assert [m["Subject"] for m in about_a] == [
        "[Gateway portal] Ask for a new key: your TokenBay key Bob laptop was revoked"
    ]
    assert _setup_notice(bob_assignment) in body(about_a[0])
    for mail in smtp.to("bob@example.com"):  # B's own mail, if revoked, asks for a new key too
        assert "Bob laptop 2:" not in mail["Subject"] and "given you the key" not in body(mail)
    written.refresh_from_db()
    assert written.subject == about_a[0]["Subject"].removeprefix(messages.EMAIL_PREFIX)
    assert written.payload["replacement"] is None and written.deliveries.get().status == "sent"


def test_a_mail_asking_for_a_new_key_names_the_one_assigned_before_it_was_sent(
    smtp, web, alice, bob, bob_assignment, tokenbay, tokenbay_key
):
    """Revoked first, the new key stored and assigned a moment later (the rollover done the other way round): bob's
    mail goes out naming the new key, as My set-up does, not asking for one he has. Rewritten rather than cancelled,
    so a holder whose mail changes meaning is still told of the revocation."""
    revoke_key(key=tokenbay_key, actor=alice)
    rollover = store_key(team=web, gateway=tokenbay, label="Bob laptop 2", secret=ROLLOVER_SECRET, actor=alice)
    assign_key(key=rollover, username="bob", actor=alice)
    deliver_due()
    [to_bob] = smtp.to("bob@example.com")
    assert to_bob["Subject"] == "[Gateway portal] Use the key Bob laptop 2: your TokenBay key Bob laptop was revoked"
    assert _setup_notice(bob_assignment) in body(to_bob)


def test_checking_a_revocation_mail_at_sending_costs_one_query_and_other_mails_nothing(
    settings, web, alice, bob, bob_assignment, tokenbay, tokenbay_key
):
    """A holder's rotation mail runs the same person checks; a revocation mail adds one query (its replacement now),
    and one write only when it is rewritten."""
    settings.EMAIL_CONFIGURED = True
    notify_person(web, bob, messages.rotated_for_holder(bob_assignment, advice="Download it again"), key=tokenbay_key)
    [rotation] = _deliveries_to(bob)
    with CaptureQueriesContext(connection) as person_checks:
        assert not person_gone(rotation)
    with CaptureQueriesContext(connection) as rotation_queries:
        assert not prepare(rotation).problem
    assert len(rotation_queries) == len(person_checks)
    rotation.delete()

    rollover = store_key(team=web, gateway=tokenbay, label="Bob laptop 2", secret=ROLLOVER_SECRET, actor=alice)
    assign_key(key=rollover, username="bob", actor=alice)
    revoke_key(key=tokenbay_key, actor=alice)
    [revocation] = _deliveries_to(bob)
    with CaptureQueriesContext(connection) as still_true:
        assert "Use the key Bob laptop 2" in prepare(revocation).subject
    assert len(still_true) == len(rotation_queries) + 1

    set_key_enabled(key=GatewayKey.objects.get(pk=rollover.pk), enabled=False, actor=alice)
    [revocation] = _deliveries_to(bob)
    with CaptureQueriesContext(connection) as rewritten:
        assert "Ask for a new key" in prepare(revocation).subject
    assert len(rewritten) == len(rotation_queries) + 2


def test_the_team_message_counts_a_holder_with_only_a_disabled_key_and_says_so(
    smtp, web, alice, bob, bob_assignment, tokenbay, tokenbay_key
):
    """bob also holds B, disabled for now: he is `unreplaced` (My set-up asks him for a new key), and the on-call
    person reads that enabling his other key is a way back too, not only a new key from the gateway."""
    second = store_key(team=web, gateway=tokenbay, label="Bob laptop 2", secret=ROLLOVER_SECRET, actor=alice)
    assign_key(key=second, username="bob", actor=alice)
    set_key_enabled(key=second, enabled=False, actor=alice)
    create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    revoke_key(key=tokenbay_key, actor=alice)
    deliver_due()
    [team_mail] = smtp.to("ops@example.com")
    [told] = Notification.objects.filter(event=EventKind.KEY_REVOKED, deliveries__channel__isnull=False)
    assert told.payload["unreplaced"] == 1
    assert "1 holder(s) hold no other key of the team they can use now (none, or only ones revoked, disabled" in (
        body(team_mail)
    )
    assert "or one of theirs enabled, renewed or fixed at the gateway." in body(team_mail)
    assert "hold no other key of the team:" not in body(team_mail)


def test_the_admin_who_revoked_a_key_they_hold_is_not_mailed_and_the_team_hears_they_held_it(
    smtp, client, web, alice, bob, bob_assignment, tokenbay_key
):
    """alice gave herself the key too and revokes it on the key page: she did it, so no "ask your team admin for a new
    one" mail to her; bob is mailed. The team's counts: mailed 1 (bob), both hold nothing else (unreplaced 2)."""
    held = assign_key(key=tokenbay_key, username="alice", actor=alice)
    create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    client.force_login(alice)
    confirm_password(client, alice)
    assert client.post(f"/keys/{tokenbay_key.id}/revoke/").status_code == 302
    deliver_due()
    assert not smtp.to("alice@example.com")
    assert not Delivery.objects.filter(user=alice).exists()
    [to_bob] = smtp.to("bob@example.com")
    assert "Ask your team admin for a new one" in body(to_bob)
    [told] = Notification.objects.filter(event=EventKind.KEY_REVOKED, deliveries__channel__isnull=False)
    assert (told.payload["holders"], told.payload["without_address"], told.payload["unreplaced"]) == (1, 0, 2)
    [team_mail] = smtp.to("ops@example.com")
    assert "1 holder(s) were told by mail. alice, who revoked it, held it too and was not mailed. 2 holder(s)" in (
        body(team_mail)
    )
    assert (
        _setup_notice(held) == "The key Bob laptop was revoked: it no longer works. Ask your team admin for a new one."
    )
