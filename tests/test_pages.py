"""Server-rendered pages: who may see and do what, and where a secret may (not) appear."""

from __future__ import annotations

import logging

import pytest

from gateways.models import Gateway, GatewayKey
from portal.models import Membership
from tests.conftest import TOKAIFY_SECRET, TOKENBAY_SECRET, confirm_password
from tests.gateways.test_device_pages import live_device

pytestmark = pytest.mark.django_db

PAGES = ["/setup/", "/teams/", "/teams/web/", "/gateways/", "/gateways/tokenbay/", "/audit/", "/connections/"]


@pytest.mark.parametrize("url", PAGES)
def test_pages_need_a_sign_in(client, web, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_sign_in_page_has_labels_and_signs_in(client, alice):
    page = client.get("/login/").content.decode()
    assert '<label for="id_username">' in page and '<label for="id_password">' in page
    response = client.post("/login/", {"username": "alice", "password": "pass-alice"})
    assert response.status_code == 302
    assert client.get("/teams/").status_code == 200


@pytest.mark.parametrize("url", PAGES)
def test_every_page_renders_for_a_member(client, bob, url):
    client.force_login(bob)
    assert client.get(url).status_code == 200


def test_outsider_gets_404_on_another_teams_pages(client, charlie, tokaify_key):
    client.force_login(charlie)
    assert client.get("/teams/web/").status_code == 404
    assert client.get(f"/keys/{tokaify_key.id}/").status_code == 404
    assert client.post(f"/keys/{tokaify_key.id}/revoke/").status_code == 404
    assert client.post("/teams/web/members/", {"username": "charlie", "role": "admin"}).status_code == 404
    assert not Membership.objects.filter(team__slug="web", user=charlie).exists()


def test_member_sees_the_team_but_not_its_keys(client, bob, tokaify_key):
    client.force_login(bob)
    page = client.get("/teams/web/").content.decode()
    assert "Alice laptop" not in page
    assert client.get(f"/keys/{tokaify_key.id}/").status_code == 404
    assert client.get("/teams/web/keys/new/").status_code == 403


def test_admin_stores_a_key_and_only_the_masked_form_is_shown(client, alice, caplog):
    caplog.set_level(logging.DEBUG)
    client.force_login(alice)
    response = client.post(
        "/teams/web/keys/new/",
        {
            "gateway": "tokaify",
            "label": "Alice laptop",
            "secret": TOKAIFY_SECRET,
            "disable_experimental_betas": "unknown",
        },
        follow=True,
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "sk-…cdef" in html
    assert TOKAIFY_SECRET not in html
    assert TOKAIFY_SECRET not in caplog.text
    assert GatewayKey.objects.filter(label="Alice laptop").exists()


def test_bad_secret_is_a_form_error_and_nothing_is_saved(client, alice):
    client.force_login(alice)
    response = client.post("/teams/web/keys/new/", {"gateway": "tokenbay", "label": "x", "secret": "no-prefix-key"})
    assert response.status_code == 200
    assert "do not remove the sk- prefix" in response.content.decode()
    assert "do not remove the sk- prefix" in response.context["form"].errors["secret"][0]
    assert 'value="no-prefix-key"' not in response.content.decode()
    assert not GatewayKey.objects.exists()


def test_admin_pages_never_show_the_secret_or_its_ciphertext(client, staff, tokaify_key):
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    for url in ["/admin/gateways/gatewaykey/", f"/admin/gateways/gatewaykey/{tokaify_key.pk}/change/"]:
        html = client.get(url).content.decode()
        assert TOKAIFY_SECRET not in html
        assert tokaify_key.secret_ciphertext.split(":")[2][:20] not in html
        assert "sk-…cdef" in html


def test_setup_page_shows_bobs_own_config_with_every_tab(client, bob, bob_assignment):
    client.force_login(bob)
    html = client.get("/setup/", HTTP_USER_AGENT="Mozilla/5.0 (Windows NT 10.0; Win64; x64)").content.decode()
    for title in ["macOS/Linux zsh", "bash", "fish", "Windows PowerShell", "Windows CMD", "settings.json"]:
        assert title in html
    assert 'data-selected="powershell"' in html
    # The key is masked until Reveal or Copy: looking at the page is not a fetch.
    assert "export ANTHROPIC_AUTH_TOKEN=&#x27;sk-...cdef&#x27;" in html
    assert TOKENBAY_SECRET not in html
    assert "/logout" in html  # TokenBay's guide: log out of a cached Anthropic login once
    assert "context_management" in html  # troubleshooting next to the set-up
    assert "settings.local.json" in html and "never in .claude/settings.json" in html
    assert "Only one gateway set-up is active at a time" in html and "To switch gateways" in html


def test_x_api_key_setup_tells_to_answer_yes(client, bob, tokaify_key, alice):
    from gateways.services import assign_key

    assign_key(key=tokaify_key, username="bob", actor=alice)
    client.force_login(bob)
    html = client.get("/setup/").content.decode()
    assert "Answer Yes" in html
    # What the installer answered for the developer, and the one question it leaves to them.
    assert "approve the key" in html and "~/.claude.json" in html
    assert "Yes, I trust this folder" in html


def test_web_download_has_a_filename(client, bob, bob_assignment):
    client.force_login(bob)
    response = client.get(f"/setup/{bob_assignment.id}/install.sh")
    assert response["Content-Disposition"] == 'attachment; filename="install-claude-web-tokenbay.sh"'


def test_revoked_key_shows_a_message_instead_of_a_config(client, bob, bob_assignment, tokenbay_key):
    GatewayKey.objects.filter(pk=tokenbay_key.pk).update(is_enabled=False)
    client.force_login(bob)
    html = client.get("/setup/").content.decode()
    assert "disabled by your team admin" in html
    assert TOKENBAY_SECRET not in html


def test_rotating_a_key_asks_for_the_password_first(client, alice, tokaify_key):
    client.force_login(alice)
    response = client.get(f"/keys/{tokaify_key.id}/rotate/")
    assert response.status_code == 302 and response["Location"].startswith("/sudo/")
    wrong = client.post(response["Location"], {"password": "nope"})
    assert "not right" in wrong.content.decode()
    client.post(response["Location"], {"password": "pass-alice"})
    response = client.post(f"/keys/{tokaify_key.id}/rotate/", {"secret": "sk-rotated-000011112222"})
    assert response.status_code == 302
    assert GatewayKey.objects.get(pk=tokaify_key.pk).reveal_secret() == "sk-rotated-000011112222"


def test_staff_add_a_gateway_and_see_the_v1_notice(client, staff, alice):
    client.force_login(alice)
    assert client.get("/gateways/new/").status_code == 403
    client.force_login(staff)
    form = {
        "slug": "corp",
        "name": "Corp gateway",
        "base_url": "https://llm.corp.example/anthropic/v1",
        "auth_scheme": "bearer",
        "model_id_style": "as-is",
        "probe_mode": "inference",
        "probe_prompt": "ping",
        "probe_interval_minutes": 60,
    }
    response = client.post("/gateways/new/", form, follow=True)
    html = response.content.decode()
    assert "Removed the trailing /v1" in html
    assert "https://llm.corp.example/anthropic" in html


GATEWAY_FORM = {
    "slug": "corp",
    "name": "Corp gateway",
    "base_url": "https://llm.corp.example/anthropic",
    "auth_scheme": "bearer",
    "model_id_style": "as-is",
    "probe_mode": "inference",
    "probe_prompt": "ping",
    "probe_interval_minutes": 60,
}


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("extra_env", "[" * 100_000, "This JSON is nested too deeply"),
        ("troubleshooting", "a\x00b :: fix", "Troubleshooting entry 1 contains a control character"),
    ],
)
def test_a_gateway_form_with_input_no_parser_or_guide_can_hold_says_so(client, staff, field, value, says):
    client.force_login(staff)
    response = client.post("/gateways/new/", {**GATEWAY_FORM, field: value})
    assert response.status_code == 200
    assert says in response.content.decode()
    assert not Gateway.objects.filter(slug="corp").exists()


def test_key_settings_with_json_nested_past_the_parser_is_a_form_error(client, alice, tokenbay_key):
    client.force_login(alice)
    response = client.post(
        f"/keys/{tokenbay_key.id}/settings/", {"label": "Renamed", "custom_headers": "[" * 100_000}, follow=True
    )
    assert response.status_code == 400  # the key page again, with what was typed and why
    assert "This JSON is nested too deeply" in response.content.decode()
    assert GatewayKey.objects.get(pk=tokenbay_key.pk).label != "Renamed"


@pytest.mark.parametrize(
    ("zone", "typed"),
    [
        ("America/New_York", "9999-12-31 23:59"),
        ("Europe/Berlin", "0001-01-01 00:00"),
        ("UTC", "9999-12-31T23:59-05:00"),
    ],
)
def test_an_expiry_past_the_years_the_database_holds_in_utc_is_a_form_error(
    client, settings, alice, tokenbay_key, zone, typed
):
    """Stored in UTC: the last minute of 9999 in New York would be in the year 10000."""
    settings.TIME_ZONE = zone
    client.force_login(alice)
    body = {"label": "Renamed", "expires_at": typed, "disable_experimental_betas": "unknown"}
    for url in (f"/keys/{tokenbay_key.id}/settings/", "/teams/web/keys/new/"):
        extra = {"gateway": "tokaify", "secret": "sk-tokaify-new-0123456789abcdef"} if url.endswith("new/") else {}
        response = client.post(url, {**body, **extra}, follow=True)
        assert response.status_code == (200 if url.endswith("new/") else 400)  # the form again, with the reason
        assert "That expiry is beyond the dates the portal can store" in response.content.decode()
    assert list(GatewayKey.objects.values_list("label", flat=True)) == [tokenbay_key.label]


def test_assigning_a_key_to_a_name_with_a_nul_says_there_is_no_such_user(client, alice, bob, tokenbay_key):
    client.force_login(alice)
    response = client.post(f"/keys/{tokenbay_key.id}/assign/", {"username": "b\x00ob"}, follow=True)
    assert response.status_code == 400
    assert "There is no active user called" in response.content.decode()
    assert not tokenbay_key.assignments.exists()


def test_admin_adds_a_member_with_a_role(client, alice, charlie):
    client.force_login(alice)
    client.post("/teams/web/members/", {"username": "charlie", "role": "auditor"})
    assert Membership.objects.get(team__slug="web", user=charlie).role == "auditor"
    response = client.post("/teams/web/members/", {"username": "ghost", "role": "member"}, follow=True)
    assert "no active user called &#x27;ghost&#x27;" in response.content.decode()


def test_an_outsider_gets_404_on_every_page_of_another_team(client, charlie, bob_assignment, tokenbay_key, alice):
    urls = [
        ("get", "/teams/web/"),
        ("get", "/teams/web/keys/new/"),
        ("post", "/teams/web/members/"),
        ("post", "/teams/web/members/bob/remove/"),
        ("get", f"/keys/{tokenbay_key.id}/"),
        ("post", f"/keys/{tokenbay_key.id}/settings/"),
        ("get", f"/keys/{tokenbay_key.id}/rotate/"),
        ("post", f"/keys/{tokenbay_key.id}/toggle/"),
        ("post", f"/keys/{tokenbay_key.id}/revoke/"),
        ("post", f"/keys/{tokenbay_key.id}/assign/"),
        ("post", f"/keys/{tokenbay_key.id}/probe/"),
        ("post", f"/assignments/{bob_assignment.id}/remove/"),
        ("get", f"/setup/{bob_assignment.id}/bash"),
    ]
    client.force_login(charlie)
    for method, url in urls:
        assert getattr(client, method)(url).status_code == 404, (method, url)
    key = GatewayKey.objects.get(pk=tokenbay_key.pk)
    assert key.state == "active" and key.assignments.count() == 1
    assert Membership.objects.filter(team__slug="web", user__username="bob").exists()


@pytest.mark.parametrize("who", ["bob", "dave"])
def test_members_and_auditors_cannot_change_keys_from_pages(client, who, bob, dave, bob_assignment, tokenbay_key):
    client.force_login({"bob": bob, "dave": dave}[who])
    for url in [
        f"/keys/{tokenbay_key.id}/settings/",
        f"/keys/{tokenbay_key.id}/toggle/",
        f"/keys/{tokenbay_key.id}/revoke/",
        f"/keys/{tokenbay_key.id}/probe/",
        f"/assignments/{bob_assignment.id}/remove/",
        "/teams/web/members/bob/remove/",
    ]:
        assert client.post(url).status_code in (403, 404), url
    assert GatewayKey.objects.get(pk=tokenbay_key.pk).state == "active"


def test_password_guessing_is_locked_out_and_audited(client, alice, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        client.post("/login/", {"username": "alice", "password": "guess"})
    response = client.post("/login/", {"username": "alice", "password": "pass-alice"})
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    assert client.get("/teams/").status_code == 302  # still not signed in
    from portal.models import AuditEvent

    assert AuditEvent.objects.filter(action="auth.sign_in_failed", target="alice").count() >= 3


def test_pages_with_secrets_are_never_cached(client, bob, bob_assignment):
    client.force_login(bob)
    assert "no-store" in client.get("/setup/")["Cache-Control"]
    confirm_password(client, bob)
    response = client.post("/tokens/", {"name": "x", "days": 1}, follow=True)
    assert "Your new token" in response.content.decode()
    assert "no-store" in response["Cache-Control"]


def test_staff_edit_a_gateways_troubleshooting_table(client, staff, tokaify):
    client.force_login(staff)
    form = client.get("/gateways/tokaify/edit/").context["form"]
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data["troubleshooting"] = "401 :: Copy the full sk- key\nSlow answers :: Raise API_TIMEOUT_MS"
    data = {k: ("on" if v is True else v) for k, v in data.items() if v is not False}
    client.post("/gateways/tokaify/edit/", data)
    tokaify.refresh_from_db()
    assert tokaify.troubleshooting == [["401", "Copy the full sk- key"], ["Slow answers", "Raise API_TIMEOUT_MS"]]
    data["troubleshooting"] = "no separator here"
    response = client.post("/gateways/tokaify/edit/", data)
    assert "Line 1 needs a symptom and a fix" in response.content.decode()


def test_pages_send_a_strict_content_security_policy(client, bob):
    client.force_login(bob)
    policy = client.get("/setup/")["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy


def test_the_gateway_form_explains_and_enforces_the_extra_env_allow_list(client, staff, tokaify):
    client.force_login(staff)
    response = client.get("/gateways/tokaify/edit/")
    assert "Anything else (PATH, NODE_OPTIONS, PROMPT_COMMAND...) is refused" in response.content.decode()
    form = response.context["form"]
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data = {k: ("on" if v is True else v) for k, v in data.items() if v is not False}
    refusals = {
        '{"PROMPT_COMMAND": "touch marker"}': "PROMPT_COMMAND is not a Claude Code setting",
        '{"NODE_OPTIONS": "-r x"}': "NODE_OPTIONS is not a Claude Code setting",
        '{"X=1; touch marker; Y": "v"}': "is not a valid environment variable name",
    }
    for hostile, sentence in refusals.items():
        data["extra_env"] = hostile
        response = client.post("/gateways/tokaify/edit/", data)
        assert response.status_code == 200
        assert sentence in response.content.decode()
        tokaify.refresh_from_db()
        assert tokaify.extra_env == {}
    data["extra_env"] = '{"DISABLE_TELEMETRY": "1"}'
    client.post("/gateways/tokaify/edit/", data)
    tokaify.refresh_from_db()
    assert tokaify.extra_env == {"DISABLE_TELEMETRY": "1"}


def test_gateway_page_shows_which_credential_headers_probes_saw_and_warns_on_a_contradiction(client, bob, tokaify):
    client.force_login(bob)
    assert "Not seen yet" in client.get("/gateways/tokaify/").content.decode()
    tokaify.credential_headers = {"x_api_key": False, "bearer": True, "seen_at": "2026-11-23T07:00:00+00:00"}
    tokaify.save()
    html = client.get("/gateways/tokaify/").content.decode()
    assert "The key alone in x-api-key is refused." in html
    assert "The key alone as Authorization: Bearer is accepted." in html
    assert "set the gateway&#x27;s auth scheme to Bearer token" in html


def test_setup_page_shows_the_auth_scheme_warning_next_to_the_snippets(client, bob, tokaify_key, alice):
    from gateways.services import assign_key

    tokaify_key.gateway.credential_headers = {"x_api_key": False, "bearer": True}
    tokaify_key.gateway.save()
    assign_key(key=tokaify_key, username="bob", actor=alice)
    client.force_login(bob)
    html = client.get("/setup/").content.decode()
    assert "data-config-warning>Probes saw this gateway refuse the key sent as x-api-key" in html


@pytest.mark.parametrize("wanted", ["-1", "home", "setup-x", "https://evil.example/", "//evil.example/"])
def test_a_next_that_is_not_a_path_on_this_site_leads_to_the_default_page(client, bob, bob_assignment, wanted):
    """`redirect()` would read a bare word as a URL name (a 500 for `-1`, another page for `home`)."""
    client.force_login(bob)
    assert client.get("/account/two-factor/verify/", {"next": wanted})["Location"] == "/"
    sudo = client.post("/sudo/", {"password": "pass-bob", "next": wanted})
    assert sudo.status_code == 302 and sudo["Location"] == "/"
    device, _ = live_device(bob_assignment, "bob laptop")
    removed = client.post(f"/devices/{device.id}/remove/", {"next": wanted})
    assert removed.status_code == 302 and removed["Location"] == "/devices/"
    assert client.post("/sudo/", {"password": "pass-bob", "next": "/tokens/?a=1"})["Location"] == "/tokens/?a=1"


def test_a_deactivated_member_is_not_offered_a_key_and_is_refused_for_what_they_are(
    client, api, alice, bob, tokenbay_key
):
    bob.is_active = False
    bob.save(update_fields=["is_active"])
    client.force_login(alice)
    choices = client.get(f"/keys/{tokenbay_key.id}/").context["assign_form"].fields["username"].choices
    assert "bob" not in dict(choices) and "alice" in dict(choices)
    refused = api(alice).post(f"/api/v1/keys/{tokenbay_key.id}/assignments/", {"username": "bob"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith("bob's account is deactivated, so it cannot be added to a team")
    page = client.post("/teams/web/members/", {"username": "bob", "role": "admin"}, follow=True).content.decode()
    assert "bob&#x27;s account is deactivated" in page
    assert not tokenbay_key.assignments.exists()


def test_an_admin_who_removes_themself_lands_on_the_teams_page(client, alice, bob, web):
    Membership.objects.filter(team=web, user=bob).update(role="admin")  # so alice is not the last admin
    client.force_login(alice)
    response = client.post("/teams/web/members/alice/remove/", follow=True)
    assert response.redirect_chain == [("/teams/", 302)]
    assert "You left Web" in response.content.decode()
    assert not Membership.objects.filter(team=web, user=alice).exists()
