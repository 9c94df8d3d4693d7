"""Names that are not plain ASCII: a key's label and a team's name are one line of visible text in one spelling,
pages isolate each typed name from the text around it, and a script's header tells two non-Latin teams apart."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from gateways.devices import create_device
from gateways.models import GatewayKey
from gateways.services import assign_key, store_key
from portal.models import Membership, Role, Team
from tests.admin_forms import form_data as admin_form_data
from tests.conftest import make_user

SECRET = "sk-tokaify-names-0123456789abcdef"


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def create_key(api, user, label: str, secret: str = SECRET):
    return api(user).post(
        "/api/v1/teams/web/keys/", {"gateway": "tokaify", "label": label, "secret": secret}, format="json"
    )


# --- J1: direction overrides and control characters in a key label -----------------------------------------


@pytest.mark.parametrize("label", ["Laptop \u202eabcd", "CI \u2067x", "two\nlines", "tab\there", "a\u2028b"])
def test_the_api_refuses_a_key_label_that_reorders_or_breaks_its_line(api, alice, tokaify, label):
    answer = create_key(api, alice, label)
    assert answer.status_code == 400, answer.json()
    assert answer.json()["field"] == "label"
    assert "one line of text" in answer.json()["detail"] and "direction" in answer.json()["detail"]
    assert not GatewayKey.objects.exists()


def test_renaming_a_key_to_a_label_with_a_direction_override_is_refused(api, alice, tokaify_key):
    answer = api(alice).patch(f"/api/v1/keys/{tokaify_key.id}/", {"label": "CI \u202elaptop"}, format="json")
    assert answer.status_code == 400, answer.json()
    assert answer.json()["field"] == "label" and "reverse the text's direction" in answer.json()["detail"]
    assert GatewayKey.objects.get(pk=tokaify_key.pk).label == "Alice laptop"


def test_the_key_pages_refuse_a_label_with_a_direction_override_next_to_the_field(alice, tokaify_key):
    client = signed_in(alice)
    created = client.post("/teams/web/keys/new/", {"gateway": "tokaify", "label": "New \u202ekey", "secret": SECRET})
    assert created.status_code == 200
    assert "reverse the text's direction" in created.context["form"].errors["label"][0]
    renamed = client.post(
        f"/keys/{tokaify_key.id}/settings/", {"label": "CI \u202e", "disable_experimental_betas": "unknown"}
    )
    assert "reverse the text's direction" in " ".join(renamed.context["settings_form"].errors["label"])
    assert list(GatewayKey.objects.values_list("label", flat=True)) == ["Alice laptop"]


def test_the_admin_refuses_a_label_with_a_direction_override_on_its_form(root, tokaify_key):
    client = signed_in(root)
    url = f"/admin/gateways/gatewaykey/{tokaify_key.pk}/change/"
    shown = admin_form_data(client.get(url))
    shown["label"] = "CI \u202elaptop"
    answer = client.post(url, shown)
    assert answer.status_code == 200
    assert "characters that reverse the text" in answer.content.decode()
    assert GatewayKey.objects.get(pk=tokaify_key.pk).label == "Alice laptop"


def test_a_label_in_a_right_to_left_script_with_a_joiner_is_kept(api, alice, tokaify):
    # Persian needs the zero-width non-joiner; Hebrew and Arabic are text, not direction overrides.
    for label, secret in (("\u0645\u06cc\u200c\u062e\u0648\u0627\u0645", SECRET), ("צוות 2024", SECRET + "-2")):
        answer = create_key(api, alice, label, secret)
        assert answer.status_code == 201, answer.json()
        assert answer.json()["label"] == label


# --- J5: a name with nothing visible ---------------------------------------------------------------------


@pytest.mark.parametrize("label", ["\u200b\u200d", "\u0301\u0308", " \u3164 ", "\u2800", "\ufe0f\u2060"])
def test_a_key_label_of_only_invisible_characters_is_refused_with_a_sentence(api, alice, tokaify, label):
    answer = create_key(api, alice, label)
    assert answer.status_code == 400, answer.json()
    assert answer.json()["field"] == "label" and "shows as a blank" in answer.json()["detail"]
    renamed = create_key(api, alice, "CI", SECRET + "-ci")
    patched = api(alice).patch(f"/api/v1/keys/{renamed.json()['id']}/", {"label": label}, format="json")
    assert patched.status_code == 400 and "shows as a blank" in patched.json()["detail"]


def test_a_team_name_of_only_invisible_characters_is_refused_on_the_api_and_the_page(api, staff):
    answer = api(staff).post("/api/v1/teams/", {"name": "\u200b", "slug": "ghost"}, format="json")
    assert answer.status_code == 400, answer.json()
    assert answer.json()["field"] == "name" and "shows as a blank" in answer.json()["detail"]
    page = signed_in(staff).post("/teams/new/", {"name": "\u200d\u200b", "slug": "ghost"})
    assert page.status_code == 400 and "shows as a blank" in page.context["form"].errors["name"][0]
    assert not Team.objects.filter(slug="ghost").exists()


def test_a_team_name_with_an_emoji_sequence_is_kept(api, staff):
    name = "Ops \U0001f468\u200d\U0001f4bb"
    answer = api(staff).post("/api/v1/teams/", {"name": name, "slug": "ops"}, format="json")
    assert answer.status_code == 201, answer.json()
    assert Team.objects.get(slug="ops").name == name


# --- J4: one spelling per label ----------------------------------------------------------------------------


def test_two_live_keys_cannot_carry_one_label_in_two_unicode_spellings(api, alice, tokaify):
    assert create_key(api, alice, "Caf\u00e9").status_code == 201
    second = create_key(api, alice, "Cafe\u0301", SECRET + "-2")
    assert second.status_code == 400, second.json()
    assert "already has a key labelled" in second.json()["detail"]


def test_a_label_is_stored_precomposed_and_a_rename_to_another_spelling_is_refused(api, alice, tokaify):
    first = create_key(api, alice, "Re\u0301sume\u0301")
    assert GatewayKey.objects.get(pk=first.json()["id"]).label == "R\u00e9sum\u00e9"
    other = create_key(api, alice, "CI", SECRET + "-2")
    renamed = api(alice).patch(f"/api/v1/keys/{other.json()['id']}/", {"label": "R\u00e9sume\u0301"}, format="json")
    assert renamed.status_code == 400 and "already has a key labelled" in renamed.json()["detail"]


def test_the_admin_refuses_a_label_another_live_key_has_in_another_spelling(root, tokaify_key, tokaify, alice):
    store_key(team=tokaify_key.team, gateway=tokaify, label="Caf\u00e9", secret=SECRET, actor=alice)
    client = signed_in(root)
    url = f"/admin/gateways/gatewaykey/{tokaify_key.pk}/change/"
    shown = admin_form_data(client.get(url))
    shown["label"] = "Cafe\u0301"
    answer = client.post(url, shown)
    assert answer.status_code == 200 and "already has a key labelled" in answer.content.decode()
    assert GatewayKey.objects.get(pk=tokaify_key.pk).label == "Alice laptop"


def test_a_team_name_is_stored_precomposed(api, staff):
    assert api(staff).post("/api/v1/teams/", {"name": "E\u0301quipe", "slug": "eq"}, format="json").status_code == 201
    assert Team.objects.get(slug="eq").name == "\u00c9quipe"


# --- J3: script headers for teams whose names are not Latin ----------------------------------------------


def _download(api, user, assignment, fmt: str) -> str:
    answer = api(user).get(f"/api/v1/me/configs/{assignment.id}/{fmt}")
    assert answer.status_code == 200, answer.content
    return answer.content.decode()


@pytest.mark.parametrize("fmt", ["bash", "powershell", "cmd", "install.sh", "install.ps1"])
def test_two_non_latin_teams_read_apart_in_a_script_header_and_its_last_message(api, tokaify, fmt):
    mei = make_user("mei")
    texts = {}
    for name, slug in (("研发", "rd"), ("运维", "ops")):
        team = Team.objects.create(name=name, slug=slug)
        Membership.objects.create(team=team, user=mei, role=Role.ADMIN)
        key = store_key(team=team, gateway=tokaify, label="CI", secret=f"{SECRET}-{slug}", actor=mei)
        texts[slug] = _download(api, mei, assign_key(key=key, username="mei", actor=mei), fmt)
    for slug, text in texts.items():
        assert f"Tokaify for team ?? ({slug}) (key CI" in text, text[:400]
        assert all(ord(ch) < 128 for ch in text), "a header stays ASCII for CMD and PowerShell"
    if fmt.startswith("install"):
        assert "is set up for Tokaify for team ?? (rd) in $settings." in texts["rd"]


def test_a_latin_team_name_is_written_without_its_slug(api, bob_assignment):
    text = _download(api, bob_assignment.user, bob_assignment, "bash")
    assert "Claude Code -> TokenBay for team Web (key Bob laptop" in text.splitlines()[0]


# --- J2: each typed name isolated on the pages ---------------------------------------------------------------


@pytest.fixture
def rtl_world(db, tokaify):
    alice = make_user("alice")
    bob = make_user("bob")
    team = Team.objects.create(name="צוות", slug="rtl")
    Membership.objects.create(team=team, user=alice, role=Role.ADMIN)
    Membership.objects.create(team=team, user=bob, role=Role.MEMBER)
    key = store_key(team=team, gateway=tokaify, label="2024 laptop", secret=SECRET, actor=alice)
    assignment = assign_key(key=key, username="bob", actor=alice)
    device, _code = create_device(assignment=assignment, name="work laptop", platform="linux", actor=bob)
    return {"alice": alice, "bob": bob, "team": team, "key": key, "assignment": assignment, "device": device}


def test_my_devices_isolates_the_team_name_the_label_and_the_device_name(client, rtl_world):
    client.force_login(rtl_world["bob"])
    html = client.get("/devices/").content.decode()
    assert "team <bdi>צוות</bdi> · <bdi>2024 laptop</bdi>" in html
    assert "<bdi>work laptop</bdi>" in html


def test_my_setup_isolates_the_team_name_and_the_label(client, rtl_world):
    client.force_login(rtl_world["bob"])
    html = client.get("/setup/").content.decode()
    assert "team <bdi>צוות</bdi> · key <bdi>2024 laptop</bdi> · <code>" in html


def test_the_key_and_team_pages_isolate_the_names_they_show(client, rtl_world):
    client.force_login(rtl_world["alice"])
    key_page = client.get(f"/keys/{rtl_world['key'].id}/").content.decode()
    assert "<h1><bdi>2024 laptop</bdi> " in key_page
    assert re.search(r"team <bdi><a href=\"/teams/rtl/\">צוות</a></bdi>", key_page), key_page
    team_page = client.get("/teams/rtl/").content.decode()
    assert ">2024 laptop</a></bdi> <code>" in team_page and "<bdi>bob</bdi>" in team_page


def test_the_audit_list_isolates_its_target_and_each_detail_value(client, rtl_world):
    client.force_login(rtl_world["alice"])
    html = client.get("/audit/?action=key.created").content.decode()
    row = re.search(r"<tbody>.*?</tbody>", html, flags=re.S).group(0)
    assert "<td><bdi>2024 laptop</bdi> <code" in row, row  # the target, apart from its fingerprint
    assert "masked: <code><bdi>sk-…cdef</bdi></code>" in row, row


# --- Device names follow the same rule as labels and team names ------------------------------------------------


def add_device(api, bob, assignment, name: str):
    return api(bob).post(
        f"/api/v1/me/configs/{assignment.id}/devices/", {"name": name, "platform": "linux"}, format="json"
    )


@pytest.mark.parametrize("name", ["work \u202elaptop", "pc\u2067x", "a\u2028b"])
def test_a_device_name_that_reorders_or_breaks_its_line_is_refused(api, bob, bob_assignment, name):
    answer = add_device(api, bob, bob_assignment, name)
    assert answer.status_code == 400, answer.json()
    assert answer.json()["field"] == "name" and "reverse the text's direction" in answer.json()["detail"]
    assert not bob_assignment.devices.exists()


@pytest.mark.parametrize("name", ["\u200b\u200d", " \u3164 ", "\u0301"])
def test_a_device_name_of_only_invisible_characters_is_refused(api, bob, bob_assignment, name):
    answer = add_device(api, bob, bob_assignment, name)
    assert answer.status_code == 400, answer.json()
    assert "shows as a blank" in answer.json()["detail"]
    assert not bob_assignment.devices.exists()


def test_a_device_name_with_an_emoji_sequence_is_kept_and_stored_precomposed(api, bob, bob_assignment):
    coder = "\U0001f469\u200d\U0001f4bb"  # woman technologist: two emoji joined by a zero-width joiner
    answer = add_device(api, bob, bob_assignment, f"{coder} Cafe\u0301 laptop")
    assert answer.status_code == 201, answer.json()
    assert bob_assignment.devices.get().name == f"{coder} Caf\u00e9 laptop"
