"""Searches of names people type find them in any case, in every alphabet, with the same rows on SQLite and
PostgreSQL: SQLite's LIKE folds ASCII letters only, so ÉLO once found élodie on PostgreSQL and nobody on SQLite."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from gateways.models import GatewayKey
from portal import audit
from portal.models import Action, Membership, Role, Team
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def member_search(user, query: str) -> list[str]:
    page = signed_in(user).get("/teams/web/", {"q": query})
    assert page.status_code == 200
    return [m.user.username for m in page.context["memberships"]]


def users_search(user, query: str) -> list[str]:
    page = signed_in(user).get("/users/", {"q": query})
    assert page.status_code == 200
    return [u.username for u in page.context["page"]]


def admin_search(client, changelist: str, query: str) -> list:
    page = client.get(f"/admin/{changelist}/", {"q": query})
    assert page.status_code == 200
    return list(page.context["cl"].result_list)


@pytest.fixture
def accented_members(web):
    for username in ("élodie", "zoë", "weiß", "νίκος", "ольга", "björn"):
        Membership.objects.create(team=web, user=make_user(username), role=Role.MEMBER)


@pytest.mark.parametrize(
    "query, found",
    [
        ("élo", ["élodie"]),
        ("ÉLO", ["élodie"]),
        ("Élodie", ["élodie"]),
        ("ZOË", ["zoë"]),
        ("WEISS", ["weiß"]),  # ß in capitals is SS, on both databases
        ("weiß", ["weiß"]),
        ("ΝΊΚΟΣ", ["νίκος"]),  # a final ς is Σ in capitals too
        ("Ольга", ["ольга"]),
        ("BJÖRN", ["björn"]),
        ("BJORN", []),  # case aside, not accents
    ],
)
def test_the_team_member_search_finds_a_name_in_any_case(alice, accented_members, query, found):
    assert member_search(alice, query) == found


@pytest.mark.parametrize("query", ["müller", "MÜLLER", "zoë", "ZOË", "ZOË@EXAMPLE.COM", "straße", "STRASSE"])
def test_the_users_search_finds_an_accented_name_in_any_case(staff, query):
    user = make_user("zoë")
    user.first_name, user.last_name = "Straße", "Müller"
    user.save()
    make_user("zoe")
    assert users_search(staff, query) == ["zoë"]


@pytest.mark.parametrize("query, found", [("_", ["a_b"]), ("%", ["pct"]), ("\\", ["back"]), ("A_B", ["a_b"])])
def test_wildcards_in_a_search_match_only_themselves(staff, query, found):
    for username, last_name in (("a_b", ""), ("axb", ""), ("pct", "100%"), ("back", "a\\b"), ("plain", "ab")):
        user = make_user(username)
        user.last_name = last_name
        user.save()
    assert users_search(staff, query) == found


def test_the_admin_user_list_finds_an_accented_name_in_any_case(root_client):
    user = make_user("zoë")
    user.last_name = "Müller"
    user.save()
    make_user("zoe")
    assert [u.username for u in admin_search(root_client, "auth/user", "MÜLLER")] == ["zoë"]
    assert [u.username for u in admin_search(root_client, "auth/user", "ZOË")] == ["zoë"]


def test_the_admin_team_and_membership_lists_find_an_accented_name_in_any_case(root_client, alice, web):
    Team.objects.create(name="Équipe Öst", slug="equipe")
    Membership.objects.create(team=web, user=make_user("élodie"), role=Role.MEMBER)
    assert [t.slug for t in admin_search(root_client, "portal/team", "équipe ÖST")] == ["equipe"]
    assert [m.user.username for m in admin_search(root_client, "portal/membership", "ÉLO")] == ["élodie"]


def test_the_admin_key_list_finds_an_accented_label_in_any_case(root_client, tokaify_key, tokenbay_key):
    GatewayKey.objects.filter(pk=tokaify_key.pk).update(label="Clé d'Élodie")
    assert [k.pk for k in admin_search(root_client, "gateways/gatewaykey", "CLÉ D'ÉLODIE")] == [tokaify_key.pk]


def test_the_admin_audit_list_finds_an_accented_actor_in_any_case(root_client, web):
    élodie = make_user("élodie")
    audit.record(Action.ACCOUNT_UPDATED, actor=élodie, target="zoë")
    found = admin_search(root_client, "portal/auditevent", "ÉLODIE")
    assert [e.actor_username for e in found] == ["élodie"]
    assert [e.target for e in admin_search(root_client, "portal/auditevent", "ZOË")] == ["zoë"]


def test_the_admin_device_and_lock_out_lists_find_an_accented_user_name_in_any_case(root_client):
    élodie = make_user("élodie")
    TOTPDevice.objects.create(user=élodie, name="Téléphone", confirmed=True)
    AccessAttempt.objects.create(
        username="élodie", ip_address="10.0.0.1", user_agent="test", path_info="/login/", failures_since_start=1
    )
    assert [d.user.username for d in admin_search(root_client, "otp_totp/totpdevice", "ÉLODIE")] == ["élodie"]
    assert [a.username for a in admin_search(root_client, "axes/accessattempt", "ÉLODIE")] == ["élodie"]
