"""A refused form on the team and key pages comes back as typed, with the sentence on its field; the audit
trail's Until includes the day picked; a form's answer is a redirect, so a reload of the page acts no twice."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from alerts.models import Channel
from gateways.models import Device
from portal.models import AccessToken, AuditEvent, Membership
from tests.conftest import confirm_password

pytestmark = pytest.mark.django_db

HOOK = "ftp://hooks.example.com/services/T000/B000/very-long-path-typed-by-hand"
SECRET = "a-signing-secret-of-some-length"


def field_value(page: str, field_id: str) -> str:
    tag = re.search(rf"<input[^>]*id=\"{field_id}\"[^>]*>", page)
    assert tag, f"no input #{field_id}"
    value = re.search(r'value="([^"]*)"', tag.group(0))
    return value.group(1) if value else ""


def selected(page: str, select_id: str) -> str:
    select = re.search(rf"<select[^>]*id=\"{select_id}\".*?</select>", page, re.S)
    assert select, f"no select #{select_id}"
    option = re.search(r'<option value="([^"]*)"[^>]*selected', select.group(0))
    return option.group(1) if option else ""


def test_a_refused_member_keeps_the_typed_name_and_role_with_the_reason_on_the_field(client, alice):
    client.force_login(alice)
    response = client.post("/teams/web/members/", {"username": "nobody-such-user", "role": "auditor"}, follow=True)
    page = response.content.decode()
    assert response.redirect_chain == [("/teams/web/", 302)]  # a reload of the page asks again with GET
    assert field_value(page, "id_username") == "nobody-such-user"
    assert selected(page, "id_role") == "auditor"
    error = re.search(r'<div role="alert" id="id_username_error"><ul class="errorlist"><li>(.*?)</li>', page)
    assert error and "no active user called &#x27;nobody-such-user&#x27;" in error.group(1)
    assert re.search(r'aria-describedby="[^"]*id_username_error"', page)
    assert not Membership.objects.filter(team__slug="web", user__username="nobody-such-user").exists()

    again = client.get("/teams/web/").content.decode()  # shown once: the next visit has an empty form
    assert field_value(again, "id_username") == "" and "nobody-such-user" not in again


def test_a_refused_channel_keeps_the_typed_target_but_never_the_secret(client, alice):
    client.force_login(alice)
    data = {"kind": "webhook", "target": HOOK, "secret": SECRET}
    response = client.post("/teams/web/channels/", data, follow=True)
    page = response.content.decode()
    assert field_value(page, "channel_target") == HOOK
    assert selected(page, "channel_kind") == "webhook"
    assert re.search(r'id="channel_target_error"><ul class="errorlist"><li>[^<]+</li>', page)
    assert "Type the signing secret again" in page
    assert SECRET not in page and field_value(page, "channel_secret") == ""
    assert SECRET not in str(dict(client.session))  # the session never held it
    assert not Channel.objects.exists()
    assert field_value(client.get("/teams/web/").content.decode(), "channel_target") == ""


def test_a_refused_assignment_shows_the_key_page_with_the_reason(client, alice, dave, tokenbay_key):
    dave.is_active = False
    dave.save()  # deactivated after the page offered him
    client.force_login(alice)
    response = client.post(f"/keys/{tokenbay_key.id}/assign/", {"username": "dave"})
    page = response.content.decode()
    assert response.status_code == 400
    assert re.search(r'role="alert" id="id_assign_username_error"><ul class="errorlist"><li>[^<]*dave', page)
    assert 'aria-describedby="id_assign_username_error"' in page
    assert not tokenbay_key.assignments.exists()


def test_audit_until_a_bare_date_includes_that_day(client, alice, tokenbay_key):
    client.force_login(alice)
    today = timezone.localdate().isoformat()  # a bare date is a day in the portal's TIME_ZONE
    page = client.get(f"/audit/?since={today}&until={today}").content.decode()
    assert "No events match" not in page and "<tbody" in page
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None and event.target in page
    yesterday = (timezone.localdate() - timedelta(days=1)).isoformat()
    assert "No events match" in client.get(f"/audit/?until={yesterday}").content.decode()
    last_day = client.get("/audit/?until=9999-12-31")  # until the end of the last day there is: no bound
    assert last_day.status_code == 200 and event.target in last_day.content.decode()


def test_audit_until_an_exact_moment_stays_a_strict_cut(api, alice, tokenbay_key):
    event = AuditEvent.objects.order_by("-id").first()
    exact = event.created_at.isoformat().replace("+00:00", "Z")
    ids = [row["id"] for row in api(alice).get("/api/v1/audit-events/", {"until": exact}).json()["results"]]
    assert event.id not in ids
    day = timezone.localtime(event.created_at).date().isoformat()
    ids = [row["id"] for row in api(alice).get("/api/v1/audit-events/", {"until": day}).json()["results"]]
    assert event.id in ids


def test_a_new_token_is_shown_by_the_redirected_page_once(client, bob):
    client.force_login(bob)
    confirm_password(client, bob)
    response = client.post("/tokens/", {"name": "laptop", "days": 7})
    assert response.status_code == 302 and response["Location"] == "/tokens/"
    token = AccessToken.objects.get(user=bob)
    assert f"ptl_{token.lookup_id}_" not in str(dict(client.session))  # kept encrypted while it waits
    shown = client.get("/tokens/")
    assert "no-store" in shown["Cache-Control"]
    raw = re.search(rf"ptl_{token.lookup_id}_[A-Za-z0-9_-]+", shown.content.decode()).group(0)
    script = APIClient()
    script.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert script.get("/api/v1/me/configs/").status_code == 200
    assert raw not in client.get("/tokens/").content.decode()
    assert AccessToken.objects.filter(user=bob).count() == 1


def test_an_install_command_is_shown_by_the_redirected_page_once(client, bob, bob_assignment):
    client.force_login(bob)
    response = client.post(f"/setup/{bob_assignment.id}/devices/", {"name": "box", "platform": "linux"})
    assert response.status_code == 302 and response["Location"] == f"/setup/{bob_assignment.id}/devices/"
    shown = client.get(response["Location"])
    assert "no-store" in shown["Cache-Control"]
    command = re.search(r"/api/v1/device/install/[\w-]+", shown.content.decode()).group(0)
    assert command not in str(dict(client.session))
    again = client.get(response["Location"], follow=True)
    assert command not in again.content.decode() and "shown once" in again.content.decode()
    assert Device.objects.filter(assignment=bob_assignment).count() == 1


def test_a_second_staff_offboarding_does_nothing_and_says_so(client, staff, bob, bob_assignment):
    client.force_login(staff)
    done = client.post("/users/bob/offboard/", follow=True)
    assert "Offboarded bob" in done.content.decode()
    again = client.post("/users/bob/offboard/", follow=True).content.decode()
    assert "Nothing was done: bob holds nothing left to take back." in again
    assert AuditEvent.objects.filter(action="account.offboarded").count() == 1


def test_a_second_team_offboarding_says_the_member_is_gone(client, alice, bob):
    client.force_login(alice)
    done = client.post("/teams/web/members/bob/offboard/")
    assert done.status_code == 302 and "?done=" in done["Location"]
    assert "Offboarded bob from Web" in client.get(done["Location"]).content.decode()
    again = client.post("/teams/web/members/bob/offboard/", follow=True).content.decode()
    assert "bob is not a member of Web: there is nothing to offboard." in again
    assert AuditEvent.objects.filter(action="member.offboarded").count() == 1
    assert client.get("/teams/web/members/bob/offboard/?done=forged").status_code == 302
