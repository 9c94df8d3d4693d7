"""The friction a walk-through as a new user found, page by page, each fixed (issue 14)."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.html import escape
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from gateways import charts
from gateways.config import guide
from gateways.models import Assignment, Gateway, GatewayKey, ProbeResult
from gateways.probes.classifier import HINTS
from gateways.services import assign_key, revoke_key, rotate_key_secret, store_key
from portal.models import AuditEvent, Membership, Role, Team
from portal.sudo import NEVER_CARRIED, PENDING_SECONDS, SUDO_PASSWORD_FIELD, SUDO_SESSION_KEY
from tests.conftest import TOKAIFY_SECRET, TOKENBAY_SECRET, confirm_password

pytestmark = pytest.mark.django_db


def downloads():
    return AuditEvent.objects.filter(action="config.downloaded")


# --- Confirmations, and the password prompt that completes the action ---------------------------------


def test_revoke_asks_for_the_password_then_revokes_without_a_second_click(client, alice, tokaify_key):
    client.force_login(alice)
    response = client.post(f"/keys/{tokaify_key.id}/revoke/", {"next": f"/keys/{tokaify_key.id}/"})
    assert response.status_code == 302 and response["Location"].startswith("/sudo/")
    assert GatewayKey.objects.get(pk=tokaify_key.pk).state == "active"

    prompt = client.get(response["Location"])
    html = prompt.content.decode()
    assert f'action="/keys/{tokaify_key.id}/revoke/"' in html  # the prompt posts the action itself
    assert "revoke the key &#x27;Alice laptop&#x27;" in html
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    assert token  # a fresh CSRF token travels with the carried fields

    done = client.post(
        f"/keys/{tokaify_key.id}/revoke/", {"next": f"/keys/{tokaify_key.id}/", "sudo_password": "pass-alice"}
    )
    assert done.status_code == 302 and done["Location"] == f"/keys/{tokaify_key.id}/"
    assert GatewayKey.objects.get(pk=tokaify_key.pk).state == "revoked"
    assert AuditEvent.objects.filter(action="key.revoked").count() == 1


def test_an_authenticator_code_completes_a_pending_action_like_the_password(client, alice, tokaify_key):
    device = TOTPDevice.objects.create(user=alice, name="authenticator", confirmed=True)
    client.force_login(alice)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id  # signed in with both factors
    session.save()
    code = str(TOTP(device.bin_key, device.step, device.t0, device.digits).token()).zfill(6)
    done = client.post(f"/keys/{tokaify_key.id}/revoke/", {"next": "/", "sudo_password": code})
    assert done.status_code == 302 and GatewayKey.objects.get(pk=tokaify_key.pk).state == "revoked"


def test_after_confirming_by_sso_the_pending_prompt_needs_one_click(client, alice, tokaify_key, settings):
    settings.OIDC_ISSUER = "https://idp.example"
    client.force_login(alice)
    asked = client.post(f"/keys/{tokaify_key.id}/revoke/", {"next": f"/keys/{tokaify_key.id}/"})
    prompt_url = asked["Location"]
    html = client.get(prompt_url).content.decode()
    # The SSO link comes back to this very prompt, so the action is not lost on the way.
    assert f"/oidc/authenticate/?sudo=1&amp;next={quote(prompt_url, safe='/')}" in html
    session = client.session
    session[SUDO_SESSION_KEY] = time.time() + 600  # what a confirming SSO sign-in leaves (portal.oidc)
    session.save()
    html = client.get(prompt_url).content.decode()
    assert 'name="sudo_password"' not in html and ">Continue</button>" in html
    assert GatewayKey.objects.get(pk=tokaify_key.pk).state == "active"  # still one click away
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))
    done = client.post(f"/keys/{tokaify_key.id}/revoke/", fields)
    assert done.status_code == 302 and GatewayKey.objects.get(pk=tokaify_key.pk).state == "revoked"


def test_a_wrong_password_shows_the_prompt_again_and_does_nothing(client, alice, tokaify_key):
    client.force_login(alice)
    response = client.post(f"/keys/{tokaify_key.id}/revoke/", {"sudo_password": "guess", "next": "/"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "That password (or code) is not right." in html and 'role="alert"' in html
    assert f'action="/keys/{tokaify_key.id}/revoke/"' in html
    assert GatewayKey.objects.get(pk=tokaify_key.pk).state == "active"
    assert AuditEvent.objects.filter(action="auth.sign_in_failed").exists()  # counted like any failed password


def test_a_wrong_password_page_carries_no_typed_secret_and_no_foreign_link(client, alice, tokaify_key):
    client.force_login(alice)
    response = client.post(
        f"/keys/{tokaify_key.id}/revoke/",
        {"sudo_password": "guess", "secret": "sk-typed-0000111122223333", "next": "javascript:alert(1)"},
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "sk-typed" not in html
    assert 'href="javascript:' not in html  # carried as an inert field value at most, never as the Cancel link


def test_a_wrong_password_with_a_typed_secret_keeps_neither_in_the_lockout_records(
    client, alice, tokaify_key, settings
):
    """django-axes keeps a failed try's form for the admin: the guess and the action's secret are masked."""
    client.force_login(alice)
    client.post(
        f"/keys/{tokaify_key.id}/rotate/",
        {"sudo_password": "pass-alicX", "secret": "sk-typed-0000111122223333", "next": "/"},
    )
    kept = AccessAttempt.objects.get(username="alice").post_data
    assert "sudo_password=" in kept and "secret=" in kept  # the fields are named, their values are not
    assert "pass-alicX" not in kept and "sk-typed" not in kept
    assert {SUDO_PASSWORD_FIELD, *NEVER_CARRIED} <= {"password", *settings.AXES_SENSITIVE_PARAMETERS}


def test_a_pending_action_expires_and_belongs_to_its_own_prompt(client, alice, tokaify_key, time_machine):
    client.force_login(alice)
    location = client.post(f"/keys/{tokaify_key.id}/revoke/")["Location"]
    # A prompt opened for something else (here: the plain prompt) never carries the pending revoke.
    assert "revoke" not in client.get("/sudo/?next=/tokens/").content.decode()
    time_machine.move_to(timezone.now() + timedelta(seconds=PENDING_SECONDS + 1))
    html = client.get(location).content.decode()
    assert f"/keys/{tokaify_key.id}/revoke/" not in html  # too old: the plain prompt


def test_a_typed_secret_is_never_carried_into_the_prompt(client, alice, tokaify_key):
    client.force_login(alice)
    response = client.post(f"/keys/{tokaify_key.id}/rotate/", {"secret": "sk-rotated-0000111122223333"})
    assert response.status_code == 302
    assert "sk-rotated" not in client.get(response["Location"]).content.decode()


def test_a_new_token_is_made_right_after_the_password(client, alice):
    client.force_login(alice)
    location = client.post("/tokens/", {"name": "laptop", "days": 7, "next": "/tokens/"})["Location"]
    assert "pending=" in location
    response = client.post(
        "/tokens/", {"name": "laptop", "days": 7, "next": "/tokens/", "sudo_password": "pass-alice"}, follow=True
    )
    assert "Your new token" in response.content.decode()


def test_destructive_buttons_open_a_confirmation_and_say_what_they_remove(client, alice, bob, bob_assignment):
    client.force_login(alice)
    team = client.get("/teams/web/").content.decode()
    assert '<details class="confirm">' in team
    assert 'Remove<span class="visually-hidden"> bob from Web</span>' in team
    key = client.get(f"/keys/{bob_assignment.key_id}/").content.decode()
    assert key.count('<details class="confirm">') == 2  # revoke, and bob's assignment
    assert 'Remove<span class="visually-hidden"> bob\'s assignment</span>' in key


# --- My set-up: viewing is not a fetch ---------------------------------------------------------------


def test_viewing_my_setup_records_no_fetch_and_shows_the_key_masked(client, bob, bob_assignment):
    client.force_login(bob)
    for _ in range(2):
        html = client.get("/setup/").content.decode()
    assert TOKENBAY_SECRET not in html
    assert "ANTHROPIC_AUTH_TOKEN=&#x27;sk-...cdef&#x27;" in html
    assert not downloads().exists()
    assert Assignment.objects.get(pk=bob_assignment.pk).last_download_at is None


@pytest.mark.parametrize("purpose", ["reveal", "copy"])
def test_reveal_and_copy_return_the_snippets_and_record_one_fetch(client, bob, bob_assignment, purpose):
    client.force_login(bob)
    response = client.post(f"/setup/{bob_assignment.id}/reveal/", {"purpose": purpose}, HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    tabs = response.json()["tabs"]
    assert set(tabs) == {tab.slug for tab in guide.TABS}
    assert f"export ANTHROPIC_AUTH_TOKEN='{TOKENBAY_SECRET}'" in tabs["bash"]
    [event] = downloads()
    assert event.details["format"] == purpose and event.actor_username == "bob"
    assignment = Assignment.objects.get(pk=bob_assignment.pk)
    assert assignment.download_count == 1 and assignment.last_download_format == purpose


def test_reveal_without_javascript_shows_the_page_with_the_key(client, bob, bob_assignment):
    client.force_login(bob)
    response = client.post(f"/setup/{bob_assignment.id}/reveal/", follow=True)
    html = response.content.decode()
    assert response.status_code == 200 and response.redirect_chain == [(f"/setup/#assignment-{bob_assignment.id}", 303)]
    assert f"export ANTHROPIC_AUTH_TOKEN=&#x27;{TOKENBAY_SECRET}&#x27;" in html
    assert 'data-revealed="true"' in html
    assert [e.details["format"] for e in downloads()] == ["reveal"]


def test_reveal_refuses_a_revoked_key_and_another_persons_assignment(client, bob, alice, bob_assignment):
    client.force_login(alice)
    assert client.post(f"/setup/{bob_assignment.id}/reveal/").status_code == 404
    revoke_key(key=bob_assignment.key, actor=alice)
    client.force_login(bob)
    response = client.post(f"/setup/{bob_assignment.id}/reveal/", HTTP_ACCEPT="application/json")
    assert response.status_code == 409 and "revoked" in response.json()["detail"]
    assert not downloads().exists()


def test_the_settings_tab_warns_that_saving_replaces_the_file_and_has_no_stray_punctuation(client, bob, bob_assignment):
    client.force_login(bob)
    html = client.get("/setup/").content.decode()
    assert "., then" not in html
    panel = html[html.index('data-panel="settings"') :]
    assert "replaces the file you have" in panel and "install.ps1 on Windows), which merges" in panel


def test_tokaify_troubleshooting_names_each_problem_once(client, bob, tokaify_key, alice):
    assign_key(key=tokaify_key, username="bob", actor=alice)
    client.force_login(bob)
    html = client.get("/setup/").content.decode()
    troubleshooting = html[html.index("Troubleshooting Tokaify") :]
    symptoms = re.findall(r"<dt>(.*?)</dt>", troubleshooting)
    assert sum("401" in s for s in symptoms) == 1
    assert sum("context_management" in s for s in symptoms) == 1
    assert any("take effect" in s for s in symptoms)  # a general entry Tokaify does not cover stays


# --- Probes on the key, team and gateway pages -------------------------------------------------------


def probe(**fields) -> SimpleNamespace:
    return SimpleNamespace(**{"verdict": "ok", "latency_ms": 100, **fields})


def test_the_chart_has_axes_and_times_and_draws_no_failure_at_zero_ms():
    start = timezone.now().replace(microsecond=0)
    probes = [
        probe(created_at=start, latency_ms=200),
        probe(created_at=start + timedelta(minutes=1), verdict="timeout", latency_ms=None),
        probe(created_at=start + timedelta(minutes=2), latency_ms=400),
        probe(created_at=start + timedelta(minutes=3), latency_ms=300),
    ]
    svg = str(charts.latency_svg(probes))
    circles = [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', svg)]
    assert len(circles) == 3  # one point per successful probe, none for the failure
    assert charts.PLOT_BOTTOM not in circles  # 200, 400 and 300 ms: none on the 0 ms line
    assert svg.count('class="fail"') == 1  # the failure is a mark in its own row
    assert "400 ms" in svg and "0 ms" in svg and "failed" in svg
    first, last = timezone.localtime(start), timezone.localtime(start + timedelta(minutes=3))
    assert first.strftime("%m-%d %H:%M") in svg and last.strftime("%m-%d %H:%M") in svg
    assert "1 failed" in svg  # in the accessible label too
    # The line breaks at the failure instead of joining 200 ms to 400 ms across it.
    assert svg.count("<polyline") == 1


def test_the_timeout_hint_names_the_probes_limits_not_claude_codes():
    assert "API_TIMEOUT_MS" not in HINTS["timeout"]
    assert "PROBE_READ_TIMEOUT" in HINTS["timeout"] and "PROBE_DEADLINE" in HINTS["timeout"]


def test_the_gateway_headline_ignores_revoked_keys(client, alice, tokaify_key, tokaify, web):
    ProbeResult.objects.create(key=tokaify_key, gateway=tokaify, verdict="auth_failed")
    revoke_key(key=tokaify_key, actor=alice)
    client.force_login(alice)
    response = client.get("/gateways/tokaify/")
    assert response.context["latest"] is None
    live = store_key(team=web, gateway=tokaify, label="Live", secret="sk-live-0123456789abcdef", actor=alice)
    ProbeResult.objects.create(key=live, gateway=tokaify, verdict="ok")
    # As a probe's save leaves the key: its verdict, newer than its last change (what the headline follows).
    GatewayKey.objects.filter(pk=live.pk).update(last_probe_verdict="ok", last_probe_at=timezone.now())
    assert client.get("/gateways/tokaify/").context["latest"].verdict == "ok"


def test_a_failure_before_a_rotation_no_longer_lists_the_key_as_failing(client, alice, tokaify_key):
    GatewayKey.objects.filter(pk=tokaify_key.pk).update(last_probe_verdict="auth_failed", last_probe_at=timezone.now())
    client.force_login(alice)
    assert "Failing keys" in client.get("/teams/web/").content.decode()
    assert list(GatewayKey.objects.failing()) == [GatewayKey.objects.get(pk=tokaify_key.pk)]
    rotate_key_secret(key=tokaify_key, secret="sk-tokaify-new-0123456789abcdef", actor=alice)
    assert "Failing keys" not in client.get("/teams/web/").content.decode()
    assert not GatewayKey.objects.failing().exists()
    key = GatewayKey.objects.get(pk=tokaify_key.pk)
    assert key.current_probe_verdict == "" and not key.is_failing
    assert "changed after the last probe" in client.get(f"/keys/{key.id}/").content.decode()


# --- Audit page -----------------------------------------------------------------------------------------


def test_the_audit_page_names_the_key_and_prints_no_python_none(client, alice, tokaify_key):
    client.force_login(alice)
    client.post(f"/keys/{tokaify_key.id}/settings/", {"label": "Renamed", "disable_experimental_betas": "unknown"})
    html = client.get("/audit/").content.decode()
    rows = re.findall(r"<tr>.*?</tr>", html, flags=re.S)
    updated = next(r for r in rows if "Key settings changed" in r)
    assert "<td><bdi>Renamed</bdi> " in updated  # the target by its label
    assert "Alice laptop → Renamed" in updated
    assert "None" not in html and "{&#x27;" not in html
    assert re.search(r'<time datetime="[^"]+" data-local="s">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>', html)


# --- Key form ---------------------------------------------------------------------------------------------


def key_form(**fields) -> dict:
    return {"gateway": "tokaify", "label": "New", "secret": "sk-new-0123456789abcdef", **fields}


def test_a_too_short_secret_is_refused_with_a_sentence(client, alice):
    client.force_login(alice)
    response = client.post("/teams/web/keys/new/", key_form(secret="sk-1"))
    assert "at least 16" in response.context["form"].errors["secret"][0]
    assert not GatewayKey.objects.exists()


def test_two_live_keys_of_a_team_cannot_share_a_label(client, alice, tokaify_key, api):
    client.force_login(alice)
    response = client.post("/teams/web/keys/new/", key_form(label="Alice laptop"))
    assert "already has a key labelled" in response.context["form"].errors["label"][0]
    answer = api(alice).post("/api/v1/teams/web/keys/", key_form(label="Alice laptop"), format="json")
    assert answer.status_code == 400 and answer.json()["field"] == "label"
    other = store_key(
        team=tokaify_key.team,
        gateway=tokaify_key.gateway,
        label="Other",
        secret="sk-other-0123456789abcdef",
        actor=alice,
    )
    renamed = api(alice).patch(f"/api/v1/keys/{other.id}/", {"label": "Alice laptop"}, format="json")
    assert renamed.status_code == 400 and "already has a key labelled" in renamed.json()["detail"]
    revoke_key(key=tokaify_key, actor=alice)  # a revoked key gives its label up
    assert client.post("/teams/web/keys/new/", key_form(label="Alice laptop")).status_code == 302


def test_the_key_form_folds_advanced_settings_and_says_where_the_key_is(client, alice):
    client.force_login(alice)
    html = client.get("/teams/web/keys/new/?gateway=tokenbay").content.decode()
    basic, advanced = html.split("Model overrides and advanced settings")
    assert 'name="secret"' in basic and 'name="label"' in basic and 'name="expires_at"' in basic
    assert 'name="opus_model"' in advanced and 'name="custom_headers"' in advanced and 'name="opus_model"' not in basic
    tokenbay = Gateway.objects.get(slug="tokenbay")
    assert f"Where to find a <bdi>TokenBay</bdi> key: {escape(tokenbay.console_hint)}" in html
    assert "Expires (UTC)" in html
    # An error in a folded field opens the fold.
    response = client.post("/teams/web/keys/new/", key_form(timeout_ms=5))
    assert '<details class="disclosure" open>' in response.content.decode()


def test_the_team_page_has_one_add_a_key_button_and_hides_revoked_keys(client, alice, tokaify_key, web, tokenbay):
    gone = store_key(team=web, gateway=tokenbay, label="Gone", secret="sk-gone-0123456789abcdef", actor=alice)
    revoke_key(key=gone, actor=alice)
    client.force_login(alice)
    html = client.get("/teams/web/").content.decode()
    assert html.count(">Add a key</button>") == 1 and "Add a Anthropic" not in html
    assert ">Gone</a>" in html
    hidden = client.get("/teams/web/?revoked=hide").content.decode()
    assert ">Gone</a>" not in hidden and ">Alice laptop</a>" in hidden and "Show revoked keys" in hidden


# --- First run --------------------------------------------------------------------------------------------


def test_a_fresh_superuser_creates_a_team_runs_it_and_sees_the_checklist(client):
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pass-root")
    client.force_login(root)
    first = client.get("/", follow=True)  # where signing in lands: the dashboard, for staff
    assert first.redirect_chain == [("/dashboard/", 302)]
    assert "Getting started" in first.content.decode() and 'href="/teams/">Create a team</a>' in first.content.decode()
    setup = client.get("/setup/").content.decode()
    assert "Getting started" in setup and "Ask an admin of your team" not in setup
    assert "No teams yet. Create the first one below" in client.get("/teams/").content.decode()
    response = client.post("/teams/new/", {"name": "Web", "slug": "web"})
    assert response.status_code == 302
    assert Membership.objects.get(team__slug="web", user=root).role == Role.ADMIN
    assert AuditEvent.objects.filter(action="member.added", target="root").exists()
    steps = client.get("/setup/").context["checklist"]
    assert [s["done"] for s in steps] == [True, False, False, False]
    assert client.get("/dashboard/").context["checklist"] == steps


def test_someone_in_no_team_is_told_whom_to_ask(client, db):
    nobody = get_user_model().objects.create_user("nobody", password="pass-nobody")
    client.force_login(nobody)
    assert "Ask a staff member of the portal to add you" in client.get("/setup/").content.decode()
    assert Team.objects.count() == 0


# --- API front door ---------------------------------------------------------------------------------------


def test_the_api_root_lists_the_main_endpoints(api, bob):
    body = api(bob).get("/api/v1/").json()
    assert body["docs"].endswith("/api/v1/docs/") and body["schema"].endswith("/api/v1/schema/")
    assert body["endpoints"]["my_configs"].endswith("/api/v1/me/configs/")


def test_the_api_docs_are_served_from_the_portal_itself(client, bob):
    client.force_login(bob)
    response = client.get("/api/v1/docs/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "<script>" not in html  # no inline script: the strict policy holds
    script = client.get("/api/v1/docs/?script=")
    assert script["Content-Type"].startswith("application/javascript") and "/api/v1/schema/" in script.content.decode()
    client.logout()
    assert client.get("/api/v1/docs/")["Location"].startswith("/login/")


def test_a_browser_gets_the_schema_as_json_it_can_show(client, bob):
    client.force_login(bob)
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["openapi"].startswith("3.")
    tool = client.get("/api/v1/schema/", HTTP_ACCEPT="*/*")
    assert tool["Content-Type"].startswith("application/vnd.oai.openapi")


# --- Lock-out and accessibility ----------------------------------------------------------------------------


def test_the_lock_out_page_tells_a_person_to_wait_not_to_run_manage_py(client, alice, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(2):
        client.post("/login/", {"username": "alice", "password": "guess"})
    html = client.post("/login/", {"username": "alice", "password": "pass-alice"}).content.decode()
    assert "manage.py" not in html and "axes_reset" not in html
    assert "Wait 60 minutes" in html and "ask an administrator" in html


def test_pages_have_a_skip_link_a_current_nav_entry_and_announced_errors(client, alice, tokaify_key):
    client.force_login(alice)
    html = client.get("/teams/web/").content.decode()
    assert '<a class="skip-link" href="#main">' in html and '<main id="main"' in html
    assert '<a href="/teams/" aria-current="page">Teams</a>' in html
    assert '<a href="/setup/">My set-up</a>' in html
    response = client.post("/teams/web/keys/new/", key_form(secret="sk-1"))
    assert re.search(r'<div role="alert"( id="[^"]+")?><ul class="errorlist">', response.content.decode())


def test_sortable_headers_say_how_the_table_is_sorted(client, alice, bob_assignment):
    client.force_login(alice)
    html = client.get("/connections/?sort=user").content.decode()
    assert '<th aria-sort="ascending"><a href="?sort=-user">Developer</a></th>' in html
    html = client.get("/connections/").content.decode()  # the default: newest assignment first
    assert '<th aria-sort="descending"><a href="?sort=assigned">Assigned since</a></th>' in html
    assert html.count("aria-sort=") == 1


def test_the_stylesheet_has_a_dark_mode():
    from pathlib import Path

    css = (Path(__file__).resolve().parent.parent / "static/portal/style.css").read_text()
    assert "@media (prefers-color-scheme: dark)" in css


def test_a_stored_secret_is_never_shown_on_the_new_pages(client, alice, bob, bob_assignment):
    """The sudo prompt, the docs and the audit page hold no plaintext, whatever was done before."""
    client.force_login(alice)
    confirm_password(client, alice)
    for url in ["/sudo/?next=/", "/api/v1/docs/", "/audit/", f"/keys/{bob_assignment.key_id}/"]:
        assert TOKENBAY_SECRET not in client.get(url).content.decode()
    assert TOKAIFY_SECRET not in client.get("/audit/").content.decode()
