"""Addresses with internationalised domains, user names that differ only in case, and lists in reading order."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory
from django.utils import timezone

from gateways.models import GatewayKey
from gateways.selectors import my_assignments
from gateways.services import assign_key, store_key
from portal.invitations import unique_username, username_taken
from portal.models import Invitation, Membership, Role, Team
from portal.oidc import sign_in_from_claims
from tests.conftest import make_user
from tests.portal.test_invitations import create_account_through

pytestmark = pytest.mark.django_db
INVITATIONS = "/api/v1/teams/web/invitations/"


def sso_sign_in(settings, email: str, sub: str = "idp-7"):
    settings.OIDC_ISSUER = "https://idp.example.com"
    request = RequestFactory().get("/oidc/callback/")
    request.session = SessionStore()
    return sign_in_from_claims(request, {"sub": sub, "email": email, "email_verified": True})


# K1: one address, two spellings of its domain.


def test_inviting_the_unicode_spelling_of_a_members_punycode_address_is_refused(api, alice, bob):
    bob.email = "bob@xn--bcher-kva.de"
    bob.save()
    response = api(alice).post(INVITATIONS, {"email": "bob@bücher.de", "role": "member"}, format="json")
    assert response.status_code == 400, response.json()
    assert "already belongs to a member" in str(response.json())


def test_an_invitation_keeps_the_ascii_form_and_the_other_spelling_is_the_same_address(api, alice):
    first = api(alice).post(INVITATIONS, {"email": "Carol@BÜCHER.de", "role": "member"}, format="json")
    assert first.status_code == 201, first.json()
    assert first.json()["email"] == "Carol@xn--bcher-kva.de"
    again = api(alice).post(INVITATIONS, {"email": "carol@xn--bcher-kva.de", "role": "member"}, format="json")
    assert again.status_code == 400 and "pending invitation" in str(again.json()), again.json()


def test_an_address_whose_domain_is_not_valid_idna_is_refused_with_a_sentence(api, alice):
    response = api(alice).post(INVITATIONS, {"email": "eve@☃.net", "role": "member"}, format="json")
    assert response.status_code == 400, response.content
    assert "cannot hold" in str(response.json())
    assert not Invitation.objects.exists()


def test_an_ascii_domain_that_idna_2008_would_refuse_is_still_accepted(api, alice):
    response = api(alice).post(INVITATIONS, {"email": "dan@ab--cd.example.com", "role": "member"}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["email"] == "dan@ab--cd.example.com"


def test_sso_with_the_unicode_spelling_signs_in_to_the_account_holding_the_ascii_one(settings, bob):
    bob.email = "bob@xn--bcher-kva.de"
    bob.save()
    assert sso_sign_in(settings, "bob@bücher.de") == bob
    assert get_user_model().objects.filter(email__icontains="bob@").count() == 1


def test_sso_accepts_an_invitation_stored_with_the_other_spelling(settings, web, alice):
    # An invitation made before addresses had one spelling holds the Unicode form.
    Invitation.issue(
        team=web,
        email="erin@bücher.de",
        role=Role.MEMBER,
        created_by=alice,
        expires_at=timezone.now() + timedelta(days=3),
    )
    erin = sso_sign_in(settings, "erin@xn--bcher-kva.de")
    assert Membership.objects.filter(team=web, user=erin, role=Role.MEMBER).exists()


# K2: user names that differ only in case, in any script.


def test_a_user_name_differing_only_in_the_case_of_a_non_ascii_letter_is_refused_on_the_page(api, alice, client):
    make_user("zoë")
    link = api(alice).post(INVITATIONS, {"email": "z2@example.com", "role": "member"}, format="json").json()
    page = create_account_through(client, link["accept_url"], "ZOË")
    assert page.status_code == 200
    # PostgreSQL's UPPER() lets the form's own check say so first; SQLite's LIKE leaves it to the portal's.
    assert "is taken" in page.content.decode() or "already exists" in page.content.decode()
    assert not get_user_model().objects.filter(username="ZOË").exists()


def test_names_whose_case_folds_agree_are_taken_and_others_are_free(db):
    make_user("straße")
    make_user("Émile")
    assert username_taken("STRASSE") and username_taken("émile") and username_taken("ÉMILE")
    assert not username_taken("strasse2") and not username_taken("emile") and not username_taken("stra")
    assert unique_username("ÉMILE") == "ÉMILE2"


def test_an_sso_account_gets_a_free_name_when_its_wanted_name_differs_only_by_case(settings, web):
    web.sso_member_group = "eng"
    web.save()
    make_user("zoë")
    settings.OIDC_ISSUER = "https://idp.example.com"
    request = RequestFactory().get("/oidc/callback/")
    request.session = SessionStore()
    claims = {"sub": "idp-9", "email": "z@example.com", "email_verified": True}
    user = sign_in_from_claims(request, {**claims, "preferred_username": "ZOË", "groups": ["eng"]})
    assert user.username == "ZOË2"


# K3: the audit trail's actor filter.


def test_the_audit_actor_filter_finds_a_name_typed_in_decomposed_form(api, alice, web, tokaify):
    zoe = make_user("zo\u00eb")
    Membership.objects.create(team=web, user=zoe, role=Role.ADMIN)
    store_key(team=web, gateway=tokaify, label="Z", secret="sk-tokaify-k3-zoe-0123456789", actor=zoe)
    rows = api(alice).get("/api/v1/audit-events/", {"actor": "zoe\u0308"}).json()["results"]
    assert rows and {r["actor"] for r in rows} == {"zo\u00eb"}, rows


# K4: lists in the order people read them.


def test_the_team_list_sorts_names_without_regard_to_case_across_pages(api, staff):
    for name, slug in (("zeta", "zeta"), ("Beta", "beta"), ("alpha", "alpha"), ("delta", "delta"), ("Gamma", "gamma")):
        Team.objects.create(name=name, slug=slug)
    client = api(staff)
    whole = [t["name"] for t in client.get("/api/v1/teams/").json()["results"]]
    assert whole == ["alpha", "Beta", "delta", "Gamma", "zeta"], whole
    paged, url = [], "/api/v1/teams/?limit=2"
    while url:
        body = client.get(url).json()
        paged += [t["name"] for t in body["results"]]
        url = body["next"]
    assert paged == whole


def test_my_setup_lists_teams_and_keys_without_regard_to_case(web, alice, tokaify):
    other = Team.objects.create(name="analytics", slug="analytics")
    Membership.objects.create(team=other, user=alice, role=Role.ADMIN)
    for team, label in ((web, "beta"), (web, "Alpha"), (other, "Zulu")):
        key = store_key(
            team=team, gateway=tokaify, label=label, secret=f"sk-tokaify-k4-{label}-0123456789", actor=alice
        )
        assign_key(key=key, username="alice", actor=alice)
    rows = [(a.key.team.name, a.key.label) for a in my_assignments(alice)]
    assert rows == [("analytics", "Zulu"), ("Web", "Alpha"), ("Web", "beta")], rows
    assert GatewayKey.objects.count() == 3


def test_a_teams_keys_are_listed_by_label_without_regard_to_case(api, client, alice, web, tokaify):
    from gateways.services import store_key

    for n, label in enumerate(["bravo key", "Alpha key", "zulu key", "Golf key"]):
        store_key(team=web, gateway=tokaify, label=label, secret=f"sk-order-{n}-0123456789abcdef", actor=alice)
    listed = [row["label"] for row in api(alice).get("/api/v1/teams/web/keys/").json()["results"]]
    assert listed == ["Alpha key", "bravo key", "Golf key", "zulu key"]
    client.force_login(alice)
    page = client.get("/teams/web/").content.decode()
    assert [page.index(label) for label in listed] == sorted(page.index(label) for label in listed)


def test_accented_team_names_sort_among_their_letters_across_pages(api, staff):
    names = ["Zoe", "Émile", "erik", "Emil", "Øresund", "Ångström", "Oslo", "Ab", "Lyon", "Łódź", "Æther", "Afar"]
    for n, name in enumerate(names):
        Team.objects.create(name=name, slug=f"t{n}")
    client = api(staff)
    # As ICU's root order (PostgreSQL's und-x-icu) has them; SQLite must agree.
    wanted = ["Ab", "Æther", "Afar", "Ångström", "Emil", "Émile", "erik", "Łódź", "Lyon", "Øresund", "Oslo", "Zoe"]
    paged, url = [], "/api/v1/teams/?limit=3"
    while url:
        body = client.get(url).json()
        paged += [t["name"] for t in body["results"]]
        url = body["next"]
    assert paged == wanted, paged


def test_a_teams_keys_and_my_setups_put_accented_labels_among_their_letters(api, client, alice, web, tokaify):
    from gateways.services import store_key

    for n, label in enumerate(["Zulu", "Écran", "delta", "Foxtrot"]):
        key = store_key(team=web, gateway=tokaify, label=label, secret=f"sk-accent-{n}-0123456789abcdef", actor=alice)
        assign_key(key=key, username="alice", actor=alice)
    wanted = ["delta", "Écran", "Foxtrot", "Zulu"]
    assert [row["label"] for row in api(alice).get("/api/v1/teams/web/keys/").json()["results"]] == wanted
    assert [a.key.label for a in my_assignments(alice)] == wanted
    client.force_login(alice)
    page = client.get("/teams/web/").content.decode()
    assert [page.index(label) for label in wanted] == sorted(page.index(label) for label in wanted)


def test_gateways_are_listed_with_accented_names_among_their_letters(api, alice, staff):
    from gateways.models import Gateway

    preset = Gateway.objects.get(slug="tokaify")
    for slug, name in (("eclair", "Éclair relay"), ("zed", "Zed relay"), ("delta", "delta relay")):
        Gateway.objects.create(slug=slug, name=name, base_url=preset.base_url)
    names = [g["name"] for g in api(alice).get("/api/v1/gateways/").json()["results"]]
    ours = [n for n in names if n.endswith(" relay")]
    assert ours == ["delta relay", "Éclair relay", "Zed relay"], names


# Read from PostgreSQL (ORDER BY ... COLLATE "und-x-icu"): the suite runs on both, so SQLite must agree.
ICU_LABELS = ["ci_runner", "ci-runner", "ci~old", "ci2", "cia"]  # marks before digits before letters
ICU_TEAMS = ["web", "Web", "WEB"]  # lower case first


def test_a_teams_keys_put_marks_before_digits_before_letters_as_icu_does(api, alice, web, tokaify):
    from gateways.services import store_key

    for n, label in enumerate(reversed(ICU_LABELS)):
        store_key(team=web, gateway=tokaify, label=label, secret=f"sk-marks-{n:04d}-abcdefgh0123", actor=alice)
    assert [row["label"] for row in api(alice).get("/api/v1/teams/web/keys/").json()["results"]] == ICU_LABELS


def test_teams_named_alike_but_for_case_list_lower_case_first_as_icu_does(db):
    for n, name in enumerate(reversed(ICU_TEAMS)):
        Team.objects.create(name=name, slug=f"case{n}")
    assert [team.name for team in Team.objects.filter(slug__startswith="case")] == ICU_TEAMS


# Printable ASCII as PostgreSQL's und-x-icu orders it (read with psql).
ICU_ASCII = " _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789aAbBcCdDeEfFgGhHiIjJkKlLmMnNoOpPqQrRsStTuUvVwWxXyYzZ"


def test_sqlites_reading_order_puts_printable_ascii_where_icu_does():
    from portal.ordering import reading_key

    assert "".join(sorted(ICU_ASCII, key=reading_key)) == ICU_ASCII


def test_the_databases_reading_order_puts_printable_ascii_where_icu_does(db):
    from django.db import connection

    from portal.ordering import POSTGRESQL_COLLATION, SQLITE_COLLATION

    collation = POSTGRESQL_COLLATION if connection.vendor == "postgresql" else SQLITE_COLLATION
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE ascii_marks (c varchar(1))")
        cursor.executemany("INSERT INTO ascii_marks VALUES (%s)", [(c,) for c in ICU_ASCII])
        cursor.execute(f'SELECT c FROM ascii_marks ORDER BY c COLLATE "{collation}"')
        assert "".join(row[0] for row in cursor.fetchall()) == ICU_ASCII
