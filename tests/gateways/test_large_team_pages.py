"""The team page, the key page and the dashboard of a large team: hundreds of members, assignees and devices,
dozens of keys to look at. Each list shows a page at a time, with the rest one link away, at the same cost."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import urljoin

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.utils import timezone

from gateways.models import Assignment, Device, Gateway, GatewayKey
from gateways.services import store_key
from portal.models import Membership, Role, Team

pytestmark = pytest.mark.django_db

PAGE = 100  # what /users/ and /connections/ show at once
PHONE = {"width": 390, "height": 844}
DASH = "\N{EN DASH}"  # between the first and last row of a page


def add_members(team: Team, count: int, prefix: str = "member") -> list:
    """`count` members of `team` named prefix000, prefix001...: bulk, as an SSO sync or an import makes them."""
    password = make_password("pw")
    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"{prefix}{n:03d}", password=password) for n in range(count)]
    )
    Membership.objects.bulk_create([Membership(team=team, user=user, role=Role.MEMBER) for user in users])
    return users


def section(page: str, start: str) -> str:
    """From the marker `start` to the end of its card."""
    assert start in page, f"no {start!r} on the page"
    return page.split(start, 1)[1].split("</section>", 1)[0]


def member_names(page: str) -> list[str]:
    table = section(page, "<h2>Members</h2>").split("</table>", 1)[0]
    return re.findall(r"<tr><td>([^<]+)</td><td>", table)


def links_in(part: str, base: str = "/teams/web/") -> dict[str, str]:
    """Each link's text as shown (tags and visually-hidden words stripped) and its address, as the browser reads it
    on the page at `base`."""
    found = re.findall(r'<a href="([^"]*)"[^>]*>(.*?)</a>', part, re.S)
    shown = [(href, re.sub(r'<span class="visually-hidden">.*?</span>', "", text, flags=re.S)) for href, text in found]
    return {re.sub(r"<[^>]+>", "", text).strip(): urljoin(base, html.unescape(href)) for href, text in shown}


# --- Q1: the team page of a team of hundreds ---------------------------------------------------------------


def test_the_team_page_shows_a_hundred_members_at_a_time_for_the_same_queries(
    client, alice, web, django_assert_max_num_queries
):
    client.force_login(alice)
    add_members(web, 2)
    with django_assert_max_num_queries(18) as small:
        client.get("/teams/web/")
    add_members(web, 247, prefix="person")  # 250 members in all
    with django_assert_max_num_queries(len(small.captured_queries)):
        first = client.get("/teams/web/").content.decode()
    assert len(member_names(first)) == PAGE
    assert "250 members." in first
    pager = section(first, 'data-pages="page"')
    assert f"1{DASH}100 of 250 members; 150 more." in pager
    second = client.get(links_in(pager)["Next page"]).content.decode()
    third = client.get(links_in(section(second, 'data-pages="page"'))["Next page"]).content.decode()
    names = member_names(third)
    assert len(names) == 50 and names[-1] == "person246"  # by user name, the last page holding the rest
    assert client.get("/teams/web/", {"page": "²"}).status_code == 200  # a page that is no number: the first


def test_the_team_page_finds_members_by_user_name_and_its_page_links_keep_the_search(client, alice, web):
    client.force_login(alice)
    add_members(web, 250)
    add_members(web, 5, prefix="contractor")
    page = client.get("/teams/web/", {"q": " MEMBER "}).content.decode()  # any case, spaces around ignored
    names = member_names(page)
    assert names[0] == "member000" and names[-1] == "member099" and len(names) == PAGE
    assert "250 members whose user name contains “MEMBER”." in page
    next_page = links_in(section(page, 'data-pages="page"'))["Next page"]
    assert "q=MEMBER" in next_page and "page=2" in next_page
    assert member_names(client.get(next_page).content.decode())[0] == "member100"
    assert member_names(client.get("/teams/web/", {"q": "r24"}).content.decode()) == [f"member24{n}" for n in range(10)]
    assert member_names(client.get("/teams/web/", {"q": "tractor"}).content.decode())[-1] == "contractor004"
    nobody = client.get("/teams/web/", {"q": "member250"}).content.decode()
    assert member_names(nobody) == []
    assert "Nobody in <bdi>Web</bdi> has a user name containing “member250”." in nobody


def test_the_add_and_invite_forms_come_before_the_keys_and_members_and_every_section_stays(client, alice, web):
    client.force_login(alice)
    add_members(web, 150)
    page = client.get("/teams/web/").content.decode()
    add = page.index('action="/teams/web/members/"')
    invite = page.index('href="/teams/web/invitations/"')
    assert add < page.index("<h2>Keys</h2>") < page.index("<h2>Members</h2>")
    assert invite < page.index("<h2>Keys</h2>")
    # The other sections are still there: invitations with their count, SSO groups, alert channels.
    assert "0 pending invitations." in page and "Save groups" in page and 'id="channel_target"' in page
    # A member on the second page is removed from there as from the first.
    second = client.get("/teams/web/", {"page": "2"}).content.decode()
    assert 'action="/teams/web/members/member149/remove/"' in second
    assert client.post("/teams/web/members/member149/remove/").status_code == 302
    assert not Membership.objects.filter(team=web, user__username="member149").exists()


def test_a_member_sees_the_team_paged_without_the_admins_forms(client, bob, web):
    client.force_login(bob)
    add_members(web, 120)
    page = client.get("/teams/web/", {"q": "bob"}).content.decode()
    assert member_names(page) == ["bob"]
    assert 'action="/teams/web/members/"' not in page and "/invitations/" not in page


@pytest.fixture
def corp():
    """A team of 300 members and 40 keys, its admin alice: the keys table runs long too."""
    admin = get_user_model().objects.create_user("alice", "alice@example.com", "pw-alice")
    team = Team.objects.create(name="Corp", slug="corp")
    Membership.objects.create(team=team, user=admin, role=Role.ADMIN)
    add_members(team, 300)
    tokenbay = Gateway.objects.get(slug="tokenbay")
    for n in range(40):
        store_key(
            team=team, gateway=tokenbay, label=f"Key {n:02d}", secret=f"sk-corp-{n:02d}-0123456789ab", actor=admin
        )
    return {"admin": admin, "team": team}


@pytest.fixture
def browser(corp, chromium):  # after the rows: see tests/test_browser_pages.py
    return chromium


@pytest.mark.browser
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_on_a_phone_the_admin_reaches_add_a_member_and_invite_at_the_top_of_a_large_teams_page(
    live_server, corp, browser
):
    from tests.test_browser_pages import session_cookie

    context = browser.new_context(viewport=PHONE)
    context.add_cookies([session_cookie(live_server, corp["admin"])])
    page = context.new_page()
    page.goto(live_server.url + "/teams/corp/")
    top = "(s) => Math.round(document.querySelector(s).getBoundingClientRect().top + window.scrollY)"
    save = page.evaluate(top, "form[action$='/members/'] button[type=submit]")
    invite = page.evaluate(top, "a[href$='/invitations/']")
    assert save < 2 * PHONE["height"] and invite < 2 * PHONE["height"], (
        f"'Save member' is {save} px and 'Invite by e-mail' {invite} px down the page"
    )
    assert page.locator("#members tbody tr").count() == PAGE
    page.fill("#id_member_q", "member29")
    page.click("#members form[role=search] button[type=submit]")
    page.wait_for_url("**q=member29**")
    found = page.locator("#members tbody tr td:first-child").all_inner_texts()
    context.close()
    assert found == [f"member29{n}" for n in range(10)]


# --- Q2: "Assign to" in a team of hundreds -----------------------------------------------------------------


def assign_field(page: str) -> str:
    match = re.search(r'<select[^>]*id="id_assign_username".*?</select>', page, re.S) or re.search(
        r'<input[^>]*id="id_assign_username"[^>]*>', page
    )
    assert match, "no 'Assign to' field"
    return match.group(0)


def test_a_short_team_picks_the_assignee_from_a_list(client, alice, bob, web, tokenbay_key):
    add_members(web, 40)  # with alice and bob: 42 names, within AssignForm.PICK_FROM_AT_MOST
    client.force_login(alice)
    field = assign_field(client.get(f"/keys/{tokenbay_key.id}/").content.decode())
    assert field.startswith("<select") and field.count("<option") == 42


def test_a_long_team_types_the_assignee_with_the_names_as_suggestions(client, alice, bob, web, tokenbay_key):
    add_members(web, 397)
    Assignment.objects.create(key=tokenbay_key, user=bob, assigned_by=alice)
    client.force_login(alice)
    page = client.get(f"/keys/{tokenbay_key.id}/").content.decode()
    field = assign_field(page)
    assert field.startswith("<input") and 'list="id_assign_username_list"' in field
    suggestions = re.search(r'<datalist id="id_assign_username_list">(.*?)</datalist>', page, re.S)
    names = re.findall(r'<option value="([^"]*)">', suggestions.group(1))
    assert len(names) == 398 and "bob" not in names and "member396" in names  # who does not hold it yet
    assert '<label for="id_assign_username">Assign to</label>' in page

    # A typed name is assigned (spaces around it ignored), a name nobody has is refused with a sentence
    # and kept as typed, and an empty one is asked for.
    assert client.post(f"/keys/{tokenbay_key.id}/assign/", {"username": " member123 "}).status_code == 302
    assert tokenbay_key.assignments.filter(user__username="member123").exists()
    refused = client.post(f"/keys/{tokenbay_key.id}/assign/", {"username": "membr124"})
    page = refused.content.decode()
    assert refused.status_code == 400
    assert re.search(
        r'id="id_assign_username_error"><ul class="errorlist"><li>There is no active user called &#x27;membr124&#x27;',
        page,
    )
    field = assign_field(page)
    assert 'value="membr124"' in field and 'aria-invalid="true"' in field and "id_assign_username_error" in field
    empty = client.post(f"/keys/{tokenbay_key.id}/assign/", {"username": "  "})
    assert empty.status_code == 400
    assert "Choose or type the user name of a member of Web to assign the key to." in empty.content.decode()
    outsider = get_user_model().objects.create_user("outsider")
    not_member = client.post(f"/keys/{tokenbay_key.id}/assign/", {"username": "outsider"}).content.decode()
    assert "outsider is not a member of web. Add them to the team first." in not_member
    assert not tokenbay_key.assignments.filter(user=outsider).exists()
    assert tokenbay_key.assignments.count() == 2


# --- Q3: the key page with hundreds of assignees and thousands of devices ----------------------------------


def give_key(key: GatewayKey, users: list, admin) -> list[Assignment]:
    return Assignment.objects.bulk_create([Assignment(key=key, user=user, assigned_by=admin) for user in users])


def add_devices(assignment: Assignment, count: int, start: int = 0) -> None:
    """`count` installed devices of one holder, seen just now: what a loop of installs leaves."""
    now = timezone.now()
    Device.objects.bulk_create(
        [
            Device(
                user=assignment.user,
                key=assignment.key,
                assignment=assignment,
                name=f"box {n:04d}",
                platform="linux",
                install_lookup_id=f"F{assignment.pk}-{n:05d}",
                install_digest="0" * 64,
                install_expires_at=now + timedelta(minutes=15),
                installed_at=now,
                token_lookup_id=f"G{assignment.pk}-{n:05d}",
                last_seen_at=now,
                created_at=now + timedelta(seconds=n),
            )
            for n in range(start, start + count)
        ]
    )


def assignee_rows(page: str) -> list[str]:
    return re.findall(r"<tr><td><bdi>([^<]+)</bdi>", section(page, '<section class="card" id="assigned-to">'))


def device_rows(page: str) -> list[str]:
    return re.findall(r'<tr data-device="\d+"><td>[^<]*</td><td><bdi>([^<]+)</bdi>', page)


def test_the_key_page_shows_a_hundred_assignees_and_devices_at_a_time_for_the_same_queries(
    client, alice, bob, web, tokenbay_key, django_assert_max_num_queries
):
    client.force_login(alice)
    address = f"/keys/{tokenbay_key.id}/"
    (bob_holds,) = give_key(tokenbay_key, [bob], alice)
    add_devices(bob_holds, 2)
    with django_assert_max_num_queries(30) as small:
        client.get(address)
    give_key(tokenbay_key, add_members(web, 249), alice)  # 250 assignees
    add_devices(bob_holds, 1500, start=2)  # 1,502 devices of one member
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(address)
    page = response.content.decode()
    assert len(page) < 400_000
    assignees, devices = assignee_rows(page), device_rows(page)
    assert len(assignees) == PAGE and len(devices) == PAGE
    assert devices[0] == "box 1501"  # newest first
    assert f"1{DASH}100 of 250 assignees; 150 more." in page and f"1{DASH}100 of 1502 devices; 1402 more." in page
    assert "its 250 assignees can no longer download it" in page  # Revoke counts them all, not the page

    # Each list's pages, reached by its own link, which keeps the other list where it was.
    later = links_in(section(page, 'data-pages="devices_page"'), address)["Next page"]
    assert "devices_page=2" in later and later.endswith("#live-devices")
    page = client.get(later).content.decode()
    assert device_rows(page)[0] == "box 1401" and assignee_rows(page) == assignees
    later = links_in(section(page, 'data-pages="assignees_page"'), address)["Next page"]
    assert "assignees_page=2" in later and "devices_page=2" in later
    page = client.get(later).content.decode()
    assert device_rows(page)[0] == "box 1401" and assignee_rows(page)[0] not in assignees
    last = client.get(address, {"assignees_page": "3", "devices_page": "99999"}).content.decode()
    assert len(assignee_rows(last)) == 50 and device_rows(last)[-1] == "box 0000"  # past the end: the last
    assert client.get(address, {"devices_page": "²"}).status_code == 200


# --- Q4: the dashboard's "N more" leads to a list of them all ----------------------------------------------


def dashboard_section(page: str, slug: str) -> str:
    return section(page, f'data-section="{slug}"')


def more_line(part: str) -> str:
    match = re.search(r"<p[^>]*data-more>(.*?)</p>", part, re.S)
    assert match, "no 'N more' line"
    return match.group(1)


def key_labels(page: str) -> list[str]:
    table = section(page, "<h2>Keys</h2>").split("</table>", 1)[0]
    return re.findall(r'<td><bdi><a href="/keys/[^"]+/">([^<]+)</a>', table)


def age_keys(team: Team, gateway, admin, prefix: str, count: int, **fields) -> None:
    """`count` keys of `team`, changed afterwards as the dashboard finds them (stored long ago, expiring...)."""
    made = [
        store_key(
            team=team,
            gateway=gateway,
            label=f"{prefix} {n:02d}",
            secret=f"sk-{prefix}-{n:02d}-0123456789ab",
            actor=admin,
        )
        for n in range(count)
    ]
    GatewayKey.objects.filter(pk__in=[key.pk for key in made]).update(**fields)


def test_the_dashboards_more_links_each_team_to_its_keys_of_that_section(
    client, alice, web, data_team, tokenbay, settings, django_assert_max_num_queries
):
    Membership.objects.create(team=data_team, user=alice, role=Role.ADMIN)
    long_ago = timezone.now() - timedelta(days=settings.CONNECTION_STALE_DAYS + 5)
    age_keys(web, tokenbay, alice, "Spare", 26, created_at=long_ago)
    age_keys(data_team, tokenbay, alice, "Idle", 4, created_at=long_ago)
    age_keys(web, tokenbay, alice, "Fresh", 3)  # stored today: not unused yet
    client.force_login(alice)
    with django_assert_max_num_queries(14):  # the dashboard's own bound (tests/gateways/test_dashboard.py)
        page = client.get("/dashboard/").content.decode()
    line = more_line(dashboard_section(page, "unused"))
    assert line.startswith("10 more")
    links = links_in(line, "/dashboard/")
    assert links == {"Web": "/teams/web/?state=unused#keys", "Data": "/teams/data/?state=unused#keys"}
    assert "(26)" in line and "(4)" in line and line.index("Web") < line.index("Data")  # most first

    # Each link lists every one of that team's keys in the section, and nothing else.
    web_page = client.get(links["Web"]).content.decode()
    assert sorted(key_labels(web_page)) == [f"Spare {n:02d}" for n in range(26)]
    assert "Showing only: <strong>keys nobody fetched in 30 days</strong> (26)." in web_page
    assert links_in(section(web_page, "Showing only:"))["Show every key"] == "/teams/web/#keys"
    assert len(key_labels(client.get("/teams/web/").content.decode())) == 29
    assert sorted(key_labels(client.get(links["Data"]).content.decode())) == [f"Idle {n:02d}" for n in range(4)]


def test_a_single_teams_more_says_see_them_all_and_the_failing_and_expiring_lists_match(
    client, alice, web, tokenbay, django_assert_max_num_queries
):
    now = timezone.now()
    age_keys(
        web,
        tokenbay,
        alice,
        "Broken",
        23,
        last_probe_verdict="auth_failed",
        last_probe_at=now,
        config_changed_at=now - timedelta(hours=1),
    )
    age_keys(web, tokenbay, alice, "Ending", 21, expires_at=now + timedelta(days=2))
    age_keys(web, tokenbay, alice, "Fine", 2, last_probe_verdict="ok", last_probe_at=now)
    client.force_login(alice)
    page = client.get("/dashboard/").content.decode()
    for slug, count, prefix in (("failing", 23, "Broken"), ("expiring", 21, "Ending")):
        line = more_line(dashboard_section(page, slug))
        assert line.startswith(f"{count - 20} more")
        assert links_in(line, "/dashboard/") == {"see them all": f"/teams/web/?state={slug}#keys"}
        listed = client.get(f"/teams/web/?state={slug}").content.decode()
        assert sorted(key_labels(listed)) == [f"{prefix} {n:02d}" for n in range(count)]
    # The failing keys stay in the warning at the top when another list is shown.
    expiring = client.get("/teams/web/?state=expiring").content.decode()
    assert "Broken 00" in section(expiring, "<h2>Failing keys</h2>")


def test_staff_get_a_link_per_team_and_a_state_nobody_knows_is_refused_with_a_sentence(
    client, alice, charlie, web, data_team, tokenbay, staff, settings
):
    long_ago = timezone.now() - timedelta(days=settings.CONNECTION_STALE_DAYS + 5)
    age_keys(web, tokenbay, alice, "Spare", 12, created_at=long_ago)
    age_keys(data_team, tokenbay, charlie, "Idle", 12, created_at=long_ago)
    client.force_login(staff)
    line = more_line(dashboard_section(client.get("/dashboard/").content.decode(), "unused"))
    assert line.startswith("4 more")
    assert links_in(line, "/dashboard/") == {
        "Web": "/teams/web/?state=unused#keys",
        "Data": "/teams/data/?state=unused#keys",
    }
    assert len(key_labels(client.get("/teams/data/?state=unused").content.decode())) == 12

    client.force_login(alice)
    refused = client.get("/teams/web/", {"state": "stale"})
    page = refused.content.decode()
    assert refused.status_code == 200
    assert "state must be one of failing, expiring, unused; showing every key." in page
    assert len(key_labels(page)) == 12
