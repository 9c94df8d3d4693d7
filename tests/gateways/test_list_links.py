"""Where the links of today's changed pages lead, and what they are called for a screen reader (tests/test_browser_a11y_lists.py
follows the same links in Chromium): the key page answering a refused POST, the dashboard's "more" links, the team
page's key table, the token list's Revoke and a device that never fetched its key."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import urljoin

import pytest
from django.utils import timezone

from gateways.models import Device
from portal.models import AccessToken
from tests.gateways.test_large_team_pages import DASH, add_devices, add_members, age_keys, give_key, section

pytestmark = pytest.mark.django_db

HIDDEN = re.compile(r'<span class="visually-hidden">(.*?)</span>', re.S)


def page_links(part: str) -> list[tuple[str, str, str]]:
    """Each link of `part`: (its address as written, the words shown, the words a screen reader reads)."""
    found = re.findall(r'<a href="([^"]*)"[^>]*>(.*?)</a>', part, re.S)
    return [
        (
            html.unescape(href),
            re.sub(r"<[^>]+>", "", HIDDEN.sub("", text)).strip(),
            re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text)).strip(),
        )
        for href, text in found
    ]


def pager_links(page: str, param: str) -> list[tuple[str, str, str]]:
    match = re.search(rf'<p[^>]*data-pages="{param}"[^>]*>(.*?)</p>', page, re.S)
    assert match, f"no page links for {param}"
    return page_links(match.group(1))


@pytest.fixture
def crowded_key(alice, web, tokenbay_key):
    """A key 120 members hold, one of them on 110 live devices: both lists of its page run to a second page."""
    assignments = give_key(tokenbay_key, add_members(web, 120), alice)
    add_devices(assignments[0], 110)
    return tokenbay_key


@pytest.mark.parametrize(
    "action, form",
    [("assign", {"username": "nosuch"}), ("settings", {"label": ""})],
    ids=["refused-assign", "refused-settings"],
)
def test_the_key_pages_list_links_after_a_refused_post_open_the_key_page(client, alice, crowded_key, action, form):
    client.force_login(alice)
    key_page = f"/keys/{crowded_key.id}/"
    posted = f"{key_page}{action}/"
    refused = client.post(posted, form)
    assert refused.status_code == 400
    page = refused.content.decode()
    for param, shown in (
        ("assignees_page", f"101{DASH}120 of 120 assignees"),
        ("devices_page", f"101{DASH}110 of 110 devices"),
    ):
        (link,) = pager_links(page, param)
        href = link[0]
        assert href.startswith(key_page + "?"), href  # not relative to the address that takes POST only
        answer = client.get(urljoin(posted, href))
        assert answer.status_code == 200, href
        following = answer.content.decode()
        assert shown in following
        # The way back is the key page too.
        previous = [link for link in pager_links(following, param) if link[1] == "Previous page"]
        assert [link[0].split("#")[0].split("?")[0] for link in previous] == [key_page]


def test_the_team_pages_member_page_links_name_the_team_page(client, alice, web):
    add_members(web, 150)
    client.force_login(alice)
    (following,) = pager_links(client.get("/teams/web/", {"q": "member"}).content.decode(), "page")
    assert following[0] == "/teams/web/?q=member&page=2#members"
    (back,) = pager_links(client.get(following[0]).content.decode(), "page")
    assert back[0] == "/teams/web/?q=member&page=1#members"


def test_the_key_pages_two_lists_page_links_are_named_after_their_list(client, alice, crowded_key):
    client.force_login(alice)
    page = client.get(f"/keys/{crowded_key.id}/", {"assignees_page": "2", "devices_page": "2"}).content.decode()
    assert [(shown, read) for _, shown, read in pager_links(page, "assignees_page")] == [
        ("Previous page", "Previous page of assignees")
    ]
    assert [(shown, read) for _, shown, read in pager_links(page, "devices_page")] == [
        ("Previous page", "Previous page of devices")
    ]
    page = client.get(f"/keys/{crowded_key.id}/").content.decode()
    assert [read for _, _, read in pager_links(page, "assignees_page")] == ["Next page of assignees"]
    assert [read for _, _, read in pager_links(page, "devices_page")] == ["Next page of devices"]


# --- The dashboard's "more" links and the team page's filtered key table ----------------------------------


def more_links(page: str, slug: str) -> list[tuple[str, str, str]]:
    match = re.search(r"<p[^>]*data-more>(.*?)</p>", section(page, f'data-section="{slug}"'), re.S)
    assert match, f"no 'N more' line in {slug}"
    return page_links(match.group(1))


def test_the_dashboards_see_them_all_links_name_their_section_and_land_at_the_keys(
    client, alice, web, tokenbay, settings
):
    now = timezone.now()
    age_keys(web, tokenbay, alice, "Spare", 24, created_at=now - timedelta(days=settings.CONNECTION_STALE_DAYS + 5))
    age_keys(web, tokenbay, alice, "Ending", 22, expires_at=now + timedelta(days=2))
    client.force_login(alice)
    page = client.get("/dashboard/").content.decode()
    assert more_links(page, "expiring") == [
        (
            "/teams/web/?state=expiring#keys",
            "see them all",
            f"see them all (keys expiring within {settings.EXPIRY_WARNING_DAYS} days)",
        )
    ]
    assert more_links(page, "unused") == [
        (
            "/teams/web/?state=unused#keys",
            "see them all",
            f"see them all (keys nobody fetched in {settings.CONNECTION_STALE_DAYS} days)",
        )
    ]
    listed = client.get("/teams/web/?state=unused").content.decode()
    assert '<section class="card" id="keys">' in listed
    every = [link for link in page_links(section(listed, "Showing only:")) if link[1] == "Show every key"]
    assert [href for href, _, _ in every] == ["/teams/web/#keys"]
    toggles = [href for href, shown, _ in page_links(section(listed, "<h2>Keys</h2>")) if "revoked keys" in shown]
    assert toggles == ["/teams/web/?state=unused&revoked=hide#keys"]


def test_the_dashboards_team_by_team_links_name_their_section(client, alice, web, data_team, tokenbay, settings):
    from portal.models import Membership, Role

    Membership.objects.create(team=data_team, user=alice, role=Role.ADMIN)
    long_ago = timezone.now() - timedelta(days=settings.CONNECTION_STALE_DAYS + 5)
    age_keys(web, tokenbay, alice, "Spare", 26, created_at=long_ago)
    age_keys(data_team, tokenbay, alice, "Idle", 4, created_at=long_ago)
    client.force_login(alice)
    links = more_links(client.get("/dashboard/").content.decode(), "unused")
    title = f"keys nobody fetched in {settings.CONNECTION_STALE_DAYS} days"
    assert links == [
        ("/teams/web/?state=unused#keys", "Web", f"Web ({title})"),
        ("/teams/data/?state=unused#keys", "Data", f"Data ({title})"),
    ]


# --- Access tokens: Revoke on an older page --------------------------------------------------------------


def test_revoking_a_token_on_an_older_page_returns_to_that_page(client, bob):
    for n in range(105):
        AccessToken.issue(bob, name=f"script {n:03d}")
    client.force_login(bob)
    first = client.get("/tokens/").content.decode()
    older = html.unescape(re.search(r'<a href="([^"]+)">Older tokens</a>', first).group(1))
    older_page = client.get(f"/tokens/{older}").content.decode()
    form = re.search(r'<form method="post" action="(/tokens/\d+/revoke/)"[^>]*>(.*?)</form>', older_page, re.S)
    carried = html.unescape(re.search(r'name="next" value="([^"]+)"', form.group(2)).group(1))
    assert carried == f"/tokens/{older}"
    answer = client.post(form.group(1), {"next": carried})
    assert answer.status_code == 302 and answer["Location"] == f"/tokens/{older}"
    assert "revoked." in client.get(answer["Location"]).content.decode()


@pytest.mark.parametrize("wanted", ["https://elsewhere.example/tokens/", "//elsewhere.example/", "tokens", ""])
def test_revoking_a_token_with_a_next_elsewhere_returns_to_the_tokens_page(client, bob, wanted):
    token, _ = AccessToken.issue(bob, name="script")
    client.force_login(bob)
    answer = client.post(f"/tokens/{token.id}/revoke/", {"next": wanted})
    assert answer.status_code == 302 and answer["Location"] == "/tokens/"


# --- A device whose installer stopped ------------------------------------------------------------------------


def test_what_to_do_about_a_device_that_never_fetched_its_key_is_written_on_my_devices(client, bob, bob_assignment):
    now = timezone.now()
    Device.objects.create(
        user=bob,
        key=bob_assignment.key,
        assignment=bob_assignment,
        name="laptop",
        platform="linux",
        install_lookup_id="Fu6",
        install_digest="0" * 64,
        install_expires_at=now + timedelta(minutes=15),
        installed_at=now,
        token_lookup_id="Gu6",
    )
    client.force_login(bob)
    row = client.get("/devices/").content.decode().split("laptop", 1)[1].split("</tr>", 1)[0]
    shown = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row))  # the text, not a tooltip's attribute
    assert "installed, key never fetched" in shown
    assert "make a new install command on My set-up and remove this device" in shown
    assert "title=" not in row.split("data-device-state", 1)[1].split(">", 1)[0]
