"""Long lists a person reads: connections narrowed to one developer, a row with many devices, one's own tokens and
devices a page at a time, and My set-up for someone with many set-ups."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gateways.models import Assignment, Device
from gateways.services import assign_key, store_key
from portal.models import AccessToken, Membership, Role, Team
from tests.conftest import api_client_for, confirm_password, make_user

pytestmark = pytest.mark.django_db


def body(response) -> str:
    return (b"".join(response.streaming_content) if response.streaming else response.content).decode()


def table_rows(html: str) -> list[str]:
    """The rows of the page's one data table."""
    return re.findall(r"<tr[ >].*?</tr>", html.split("<tbody>", 1)[1].split("</tbody>", 1)[0], re.S)


def links(html: str) -> list[str]:
    return [href.replace("&amp;", "&") for href in re.findall(r'href="(\?[^"]*)"', html)]


def add_devices(assignment: Assignment, n: int, *, live: bool = True, start: int = 0) -> None:
    """n devices of the assignment's holder, made an hour apart, newest last (installed, or only made)."""
    now = timezone.now()
    Device.objects.bulk_create(
        [
            Device(
                user=assignment.user,
                key=assignment.key,
                assignment=assignment,
                name=f"box {i:04d}",
                platform="linux",
                install_lookup_id=f"L{assignment.pk}x{i:05d}",
                install_digest="0" * 64,
                install_expires_at=now + timedelta(minutes=15),
                installed_at=now if live else None,
                token_lookup_id=f"T{assignment.pk}x{i:05d}" if live else None,
                last_seen_at=now if live else None,
                created_at=now - timedelta(hours=n + start - i),
            )
            for i in range(start, start + n)
        ]
    )


# --- R1: connections narrowed to one developer ---------------------------------------------------------------


@pytest.fixture
def crowd(alice, bob, dave, web, tokenbay, tokaify, tokenbay_key, tokaify_key):
    """bob holds both web keys, erin and bobby one each: `user=bob` must find bob's two rows only."""
    assign_key(key=tokenbay_key, username="bob", actor=alice)
    assign_key(key=tokaify_key, username="bob", actor=alice)
    for name in ("erin", "bobby"):
        Membership.objects.create(team=web, user=make_user(name), role=Role.MEMBER)
        assign_key(key=tokenbay_key, username=name, actor=alice)
    client = Client()
    client.force_login(dave)  # the team's auditor
    return client


def test_the_connections_page_narrows_to_one_developer_and_keeps_it_in_every_link(crowd):
    html = crowd.get("/connections/", {"user": "bob"}).content.decode()
    rows = table_rows(html)
    assert len(rows) == 2 and all("<td>bob</td>" in row for row in rows), rows
    assert 'name="user"' in html and 'value="bob"' in html  # the filter form shows what is asked
    hrefs = links(html)
    sorts = [h for h in hrefs if "sort=" in h and "export" not in h]
    exports = [h for h in hrefs if "export=csv" in h]
    assert sorts and exports
    assert all(parse_qs(urlsplit(h).query).get("user") == ["bob"] for h in sorts + exports), hrefs


def test_the_user_filter_matches_the_whole_name_not_part_of_it(crowd):
    html = crowd.get("/connections/", {"user": "bo"}).content.decode()
    assert "No connections match these filters." in html


def test_the_connections_csv_and_the_api_narrow_to_one_developer(crowd, dave):
    page_csv = list(csv.DictReader(io.StringIO(body(crowd.get("/connections/", {"user": "bob", "export": "csv"})))))
    assert sorted(row["user"] for row in page_csv) == ["bob", "bob"]
    api = api_client_for(dave)
    listed = api.get("/api/v1/connections/", {"user": "bob"})
    assert listed.status_code == 200
    assert [row["user"] for row in listed.json()["results"]] == ["bob", "bob"]
    api_csv = api.get("/api/v1/connections/", {"user": "erin", "export": "csv"})
    assert [row["user"] for row in csv.DictReader(io.StringIO(body(api_csv)))] == ["erin"]


def test_a_user_name_no_account_could_have_is_refused_with_a_sentence(crowd, dave):
    too_long = "b" * 151
    page = crowd.get("/connections/", {"user": too_long, "export": "csv"})
    assert page.status_code == 400 and not page.streaming
    assert "Nothing was exported: user must be" in page.content.decode()
    refused = api_client_for(dave).get("/api/v1/connections/", {"user": too_long})
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith("user must be")


def test_the_next_link_keeps_the_developer_and_the_query_count_holds(crowd, alice, bob, web, tokenbay, monkeypatch):
    for n in range(5):
        key = store_key(
            team=web, gateway=tokenbay, label=f"Extra {n}", secret=f"sk-extra-{n}-0123456789abcdef", actor=alice
        )
        assign_key(key=key, username="bob", actor=alice)
        assign_key(key=key, username="erin", actor=alice)
    monkeypatch.setattr("gateways.views.CONNECTIONS_PER_PAGE", 3)
    seen, url, pages = [], "/connections/?user=bob&sort=team", []
    while url:
        with CaptureQueriesContext(connection) as queries:
            html = crowd.get(url).content.decode()
        pages.append(len(queries))
        seen += [re.search(r"<code>(sk-[^<]*)</code>", row).group(1) for row in table_rows(html)]
        assert all("<td>bob</td>" in row for row in table_rows(html))
        following = [h for h in links(html) if "cursor=" in h]
        url = f"/connections/{following[0]}" if following else ""
        if url:
            assert parse_qs(urlsplit(url).query)["user"] == ["bob"]
    assert len(seen) == 7 and len(pages) == 3
    assert len(set(pages)) == 1, f"queries per page: {pages}"
    api = api_client_for(bob)  # bob's own rows, through the API's cursor
    first = api.get("/api/v1/connections/", {"user": "bob", "limit": 4}).json()
    rest = api.get(first["next"]).json()
    assert len(first["results"]) == 4 and len(rest["results"]) == 3 and rest["next"] is None
    assert "user=bob" in first["next"]


def test_the_schema_documents_the_user_filter(client, bob):
    client.force_login(bob)
    schema = client.get("/api/v1/schema/", {"format": "json"}).json()
    parameters = schema["paths"]["/api/v1/connections/"]["get"]["parameters"]
    user = next(p for p in parameters if p["name"] == "user")
    assert user["in"] == "query" and user["description"]


# --- R2: a connections row with many devices --------------------------------------------------------------------


def test_a_connections_row_names_five_devices_and_links_to_the_rest(client, alice, bob, bob_assignment, tokenbay_key):
    add_devices(bob_assignment, 12)
    client.force_login(alice)
    with CaptureQueriesContext(connection) as many:
        html = client.get("/connections/").content.decode()
    (row,) = table_rows(html)
    assert len(re.findall(r"<bdi>box \d+</bdi>", row)) == 5
    more = re.search(r'<a href="([^"]+)">7 more<', row)
    assert more and more.group(1) == f"/keys/{tokenbay_key.id}/#live-devices", row
    assert 'data-live-devices="12"' in row
    # bob's own row sends him to his own devices, the page he can see them on.
    mine = Client()
    mine.force_login(bob)
    assert '<a href="/devices/">7 more<' in mine.get("/connections/").content.decode()
    # The CSV keeps its documented count, and the page costs what it cost with one device.
    (exported,) = csv.DictReader(io.StringIO(body(client.get("/connections/?export=csv"))))
    assert exported["live_devices"] == "12"
    Device.objects.filter(name__gt="box 0000").delete()
    with CaptureQueriesContext(connection) as one:
        html = client.get("/connections/").content.decode()
    assert "data-more-devices" not in html and len(re.findall(r"<bdi>box \d+</bdi>", html)) == 1
    assert len(one) == len(many)


# --- R3: a person's own tokens and devices, a page at a time ---------------------------------------------------


def test_my_tokens_are_listed_a_hundred_at_a_time_newest_first(client, bob):
    now = timezone.now()
    for i in range(150):
        token, _ = AccessToken.issue(bob, name=f"t{i:03d}")
        AccessToken.objects.filter(pk=token.pk).update(created_at=now - timedelta(hours=150 - i))
    client.force_login(bob)
    with CaptureQueriesContext(connection) as first_queries:
        first = client.get("/tokens/").content.decode()
    names = re.findall(r"<tr><td>(t\d{3})</td>", first)
    assert names == [f"t{i:03d}" for i in range(149, 49, -1)]
    (older,) = [h for h in links(first) if "cursor=" in h]
    with CaptureQueriesContext(connection) as second_queries:
        second = client.get(f"/tokens/{older}").content.decode()
    assert re.findall(r"<tr><td>(t\d{3})</td>", second) == [f"t{i:03d}" for i in range(49, -1, -1)]
    assert not [h for h in links(second) if "cursor=" in h]
    assert len(first_queries) == len(second_queries)
    # Making a token from the second page works, and shows it at once, on the first.
    confirm_password(client, bob)
    made = client.post(f"/tokens/{older}", {"name": "fresh", "days": 1})
    assert made.status_code == 302
    shown = client.get(made["Location"]).content.decode()
    assert "Your new token" in shown and re.findall(r"<tr><td>(t\d{3}|fresh)</td>", shown)[0] == "fresh"


def test_a_bad_cursor_on_my_tokens_shows_the_first_page_with_a_sentence(client, bob):
    AccessToken.issue(bob, name="only")
    client.force_login(bob)
    response = client.get("/tokens/", {"cursor": "not-one"})
    html = response.content.decode()
    assert response.status_code == 200 and "<td>only</td>" in html
    assert "Showing the first page." in html


def test_my_devices_are_listed_a_hundred_at_a_time_and_removing_one_stays_on_its_page(client, bob, bob_assignment):
    add_devices(bob_assignment, 150)
    client.force_login(bob)
    with CaptureQueriesContext(connection) as first_queries:
        first = client.get("/devices/").content.decode()
    ids = re.findall(r'<tr data-device="(\d+)"', first)
    assert len(ids) == 100
    assert re.findall(r"<bdi>(box \d+)</bdi> <span", first)[:2] == ["box 0149", "box 0148"]
    (older,) = [h for h in links(first) if "cursor=" in h]
    with CaptureQueriesContext(connection) as second_queries:
        second = client.get(f"/devices/{older}").content.decode()
    second_ids = re.findall(r'<tr data-device="(\d+)"', second)
    assert len(second_ids) == 50 and not set(ids) & set(second_ids)
    assert len(first_queries) == len(second_queries)
    # Remove from the second page: back on the second page, the device shown removed.
    form = re.search(r'action="/devices/(\d+)/remove/".*?name="next" value="([^"]+)"', second, re.S)
    removed = client.post(f"/devices/{form.group(1)}/remove/", {"next": form.group(2).replace("&amp;", "&")})
    assert removed.status_code == 302 and removed["Location"] == f"/devices/{older}"
    assert Device.objects.get(pk=form.group(1)).revoked_at is not None


# --- R4: My set-up for someone with many set-ups ----------------------------------------------------------------


def many_setups(alice, bob, tokenbay, n: int) -> None:
    """bob in n teams, holding one key of each."""
    for t in range(n):
        team = Team.objects.create(name=f"Team {t:02d}", slug=f"team{t:02d}")
        Membership.objects.create(team=team, user=alice, role=Role.ADMIN)
        Membership.objects.create(team=team, user=bob, role=Role.MEMBER)
        key = store_key(
            team=team, gateway=tokenbay, label=f"Key {t}", secret=f"sk-team{t:02d}-0123456789abcdef", actor=alice
        )
        assign_key(key=key, username="bob", actor=alice)


def test_my_setup_with_many_setups_starts_with_a_link_to_each_card(client, alice, bob, tokenbay):
    many_setups(alice, bob, tokenbay, 6)
    client.force_login(bob)
    html = client.get("/setup/").content.decode()
    cards = re.findall(r'<section class="card" id="assignment-(\d+)"', html)
    assert len(cards) == 6
    index = re.search(r'<nav[^>]*aria-labelledby="setup-index".*?</nav>', html, re.S)
    assert index, "no list of the set-ups at the top of My set-up"
    linked = re.findall(r'<a href="#assignment-(\d+)">(.*?)</a>', index.group(0), re.S)
    assert [n for n, _ in linked] == cards
    first = Assignment.objects.get(pk=cards[0]).key
    assert re.sub(r"<[^>]+>", "", linked[0][1]) == f"{first.team.name} · {first.gateway.name} · {first.label}"
    assert html.index("setup-index") < html.index(f'id="assignment-{cards[0]}"')
    assert html.count('action="/setup/') >= 6  # each card keeps its own device form


def test_my_setup_with_five_setups_has_no_list_of_them(client, alice, bob, tokenbay):
    many_setups(alice, bob, tokenbay, 5)
    client.force_login(bob)
    html = client.get("/setup/").content.decode()
    assert len(re.findall(r'<section class="card" id="assignment-', html)) == 5
    assert "setup-index" not in html
