"""A team's notification channels: the API, the team page's section and the Deliveries page."""

from __future__ import annotations

import pytest

from alerts.delivery import deliver_due
from alerts.models import Channel, Delivery
from alerts.services import create_channel
from portal.models import AuditEvent
from portal.services import add_member
from tests.conftest import make_user
from tests.webhook_receiver import running_receiver

pytestmark = pytest.mark.django_db

SECRET = "whsec-api-0123456789abcdef"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"


def test_an_admin_adds_a_signed_webhook_and_never_sees_its_secret_again(api, alice):
    client = api(alice)
    response = client.post(
        "/api/v1/teams/web/channels/",
        {"kind": "webhook", "target": "https://hooks.example.com/portal?token=abc", "secret": SECRET},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "webhook" and body["signed"] is True and body["enabled"] is True
    assert body["target"] == "https://hooks.example.com/portal?…"
    listed = client.get("/api/v1/teams/web/channels/").json()
    assert set(listed) == {"results", "next"} and listed["results"][0]["id"] == body["id"]
    assert client.get(f"/api/v1/channels/{body['id']}/").json()["created_by"] == "alice"
    for text in (response.content, client.get("/api/v1/teams/web/channels/").content):
        assert SECRET.encode() not in text and b"token=abc" not in text
    channel = Channel.objects.get(pk=body["id"])
    assert SECRET not in channel.secret_ciphertext and channel.reveal_secret() == SECRET
    event = AuditEvent.objects.get(action="channel.created")
    assert event.team_slug == "web" and SECRET not in str(event.details)


def test_a_slack_url_is_a_credential_and_shows_only_its_start(api, alice):
    response = api(alice).post("/api/v1/teams/web/channels/", {"kind": "slack", "target": SLACK_URL}, format="json")
    assert response.status_code == 201
    assert response.json()["target"] == "https://hooks.slack.com/services/…"
    assert "XXXXXXXX" not in response.content.decode()


@pytest.mark.parametrize(
    "payload, field, sentence",
    [
        ({"kind": "pager", "target": "https://x.example"}, "kind", ""),
        ({"kind": "webhook", "target": "https://x.example/hook"}, "secret", "needs a secret of 16"),
        ({"kind": "webhook", "target": "https://x.example/hook", "secret": "short"}, "secret", "needs a secret of 16"),
        ({"kind": "slack", "target": SLACK_URL, "secret": SECRET}, "secret", "Only webhook channels take a secret"),
        ({"kind": "email", "target": "not an address"}, "target", "is not an e-mail address"),
        ({"kind": "webhook", "target": "ftp://x.example/hook", "secret": SECRET}, "target", "starts with https://"),
        ({"kind": "webhook", "target": "https://u:p@x.example/", "secret": SECRET}, "target", "no user name"),
        ({"kind": "webhook", "target": "https://x.example:99999/", "secret": SECRET}, "target", "is not a URL"),
        ({"kind": "webhook", "target": "http://10.0.0.8/hook", "secret": SECRET}, "target", "private, loopback"),
        ({"kind": "slack", "target": "http://[::1]/hook"}, "target", "private, loopback"),
        ({"kind": "webhook", "target": "http://[fec0::1]/hook", "secret": SECRET}, "target", "private, loopback"),
        ({"kind": "webhook", "target": "http://[::ffff:127.0.0.1]/", "secret": SECRET}, "target", "private, loopback"),
    ],
)
def test_bad_channels_are_refused_with_a_sentence(api, alice, settings, payload, field, sentence):
    settings.PROBE_ALLOW_PRIVATE_IPS = False
    response = api(alice).post("/api/v1/teams/web/channels/", payload, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert sentence in body["detail"]
    assert body.get("field") == field or field in body.get("errors", {})
    assert not Channel.objects.exists()


def test_who_may_list_add_and_remove_channels(api, alice, bob, dave, charlie, staff):
    channel = create_channel(team=alice.memberships.get().team, kind="email", target="ops@example.com", actor=alice)
    listing, one = "/api/v1/teams/web/channels/", f"/api/v1/channels/{channel.id}/"
    new = {"kind": "email", "target": "x@example.com"}
    assert api(dave).get(listing).status_code == 200  # an auditor reads
    assert api(dave).get(one).status_code == 200
    assert api(dave).post(listing, new, format="json").status_code == 403
    assert api(dave).delete(one).status_code == 403
    assert api(bob).get(listing).status_code == 403  # a member: not the team's alerting
    assert api(bob).get(one).status_code == 404
    assert api(charlie).get(listing).status_code == 404  # an outsider learns nothing
    assert api(charlie).delete(one).status_code == 404
    assert api(staff).get(listing).status_code == 200
    assert Channel.objects.count() == 1
    assert api(alice).delete(one).status_code == 204
    assert not Channel.objects.exists()
    assert AuditEvent.objects.filter(action="channel.deleted", actor_username="alice").exists()


def test_the_team_page_lists_channels_for_admins_and_auditors_and_offers_the_form_to_admins(
    client, alice, bob, dave, web
):
    create_channel(team=web, kind="slack", target=SLACK_URL, actor=alice)
    client.force_login(alice)
    page = client.get("/teams/web/").content.decode()
    assert "Notifications" in page and "https://hooks.slack.com/services/…" in page and "XXXXXXXX" not in page
    assert "Add channel" in page and "Send a test" in page
    client.force_login(dave)
    page = client.get("/teams/web/").content.decode()
    assert "https://hooks.slack.com/services/…" in page and "Add channel" not in page
    client.force_login(bob)
    assert "Notifications" not in client.get("/teams/web/").content.decode()


def test_an_admin_adds_tests_and_removes_a_channel_on_the_team_page(client, alice, web, settings):
    client.force_login(alice)
    with running_receiver() as receiver:
        response = client.post(
            "/teams/web/channels/", {"kind": "webhook", "target": receiver.url("/hook"), "secret": SECRET}, follow=True
        )
        assert "Channel added" in response.content.decode()
        channel = Channel.objects.get()
        assert channel.reveal_secret() == SECRET
        client.post(f"/channels/{channel.id}/test/")
        deliver_due()
        assert [r.json["event"] for r in receiver.received] == ["test"]
    refused = client.post("/teams/web/channels/", {"kind": "webhook", "target": receiver.url("/x")}, follow=True)
    assert "needs a secret of 16" in refused.content.decode()
    client.post(f"/channels/{channel.id}/remove/")
    assert not Channel.objects.exists()


def test_an_auditor_cannot_change_channels_on_the_pages(client, alice, dave, web):
    channel = create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    client.force_login(dave)
    assert client.post("/teams/web/channels/", {"kind": "email", "target": "x@example.com"}).status_code == 403
    assert client.post(f"/channels/{channel.id}/remove/").status_code == 403
    assert client.post(f"/channels/{channel.id}/test/").status_code == 403
    assert Channel.objects.count() == 1


def test_the_deliveries_page_shows_each_attempt_and_why_it_failed_to_admins_only(client, alice, bob, charlie, web):
    with running_receiver({"/down": "fail"}) as receiver:
        create_channel(team=web, kind="webhook", target=receiver.url("/down"), secret=SECRET, actor=alice)
        add_member(team=web, username=make_user("erin").username, role="member", actor=alice)
        deliver_due()
    client.force_login(alice)
    page = client.get("/deliveries/?team=web").content.decode()
    assert "erin joined Web" in page and "The receiver answered HTTP 500" in page and "next try" in page
    assert Delivery.objects.get().attempts == 1
    client.force_login(charlie)
    assert "erin joined Web" not in client.get("/deliveries/").content.decode()
    client.force_login(bob)
    assert "erin joined Web" not in client.get("/deliveries/").content.decode()


def test_rotating_the_vault_key_moves_channel_secrets_too(settings, alice, web, tokenbay_key, capsys):
    import base64

    from django.core.management import call_command

    from portal import crypto
    from tests.conftest import TEST_KEYRING

    channel = create_channel(team=web, kind="webhook", target="https://hooks.example.com/x", secret=SECRET, actor=alice)
    new_key = base64.urlsafe_b64encode(b"c" * 32).decode()
    settings.PORTAL_ENCRYPTION_KEYS = f"{new_key},{TEST_KEYRING}"
    call_command("rotate_encryption_key")
    assert "Re-encrypted 2 secret(s)" in capsys.readouterr().out  # the key and the channel
    settings.PORTAL_ENCRYPTION_KEYS = new_key
    channel = Channel.objects.get(pk=channel.pk)
    assert channel.secret_key_id == crypto.parse_keyring(new_key).primary_id
    assert channel.reveal_secret() == SECRET


def test_the_admin_shows_a_channel_but_removing_it_is_left_to_the_audited_pages(admin_client, alice, web):
    channel = create_channel(team=web, kind="email", target="ops@example.com", actor=alice)
    assert admin_client.get(f"/admin/alerts/channel/{channel.pk}/change/").status_code == 200
    assert admin_client.post(f"/admin/alerts/channel/{channel.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Channel.objects.filter(pk=channel.pk).exists()


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "webhook", "target": "https://hooks.example.com/portal", "secret": "s" * 24},
        {"kind": "slack", "target": "https://hooks.slack.com/services/T000/B000/XXXX"},
        {"kind": "email", "target": "ops@example.com"},
    ],
    ids=lambda body: body["kind"],
)
def test_a_channel_post_retried_after_a_time_out_adds_no_second_channel(api, alice, web, body):
    client = api(alice)
    first = client.post("/api/v1/teams/web/channels/", body, format="json")
    assert first.status_code == 201
    retry = client.post("/api/v1/teams/web/channels/", body, format="json")  # the same body again
    assert retry.status_code == 400
    assert first.json()["id"] in retry.json()["detail"] and "not added twice" in retry.json()["detail"]
    assert retry.json()["field"] == "target"
    assert Channel.objects.filter(team=web).count() == 1


def test_the_same_target_may_be_a_channel_of_two_teams(api, alice, charlie, web, data_team):
    body = {"kind": "slack", "target": "https://hooks.slack.com/services/T000/B000/XXXX"}
    assert api(alice).post("/api/v1/teams/web/channels/", body, format="json").status_code == 201
    assert api(charlie).post("/api/v1/teams/data/channels/", body, format="json").status_code == 201
