"""Right-to-left names in headless Chromium: each typed name is isolated (<bdi>), so it cannot pull its
neighbours into its own direction, and a label stored before direction overrides were refused cannot
reverse the masked key or the fingerprint beside it."""

from __future__ import annotations

import pytest

from gateways.devices import create_device
from gateways.models import Gateway, GatewayKey
from gateways.services import assign_key, store_key
from portal.models import Membership, Role, Team
from tests.test_browser import browser, sign_in  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

# The left edge on screen of the first occurrence of each piece of text inside `selector`'s first match.
LEFT_OF = """([selector, pieces]) => {
  const root = document.querySelector(selector);
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const found = {};
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const piece of pieces) {
      const at = node.data.indexOf(piece);
      if (at < 0 || piece in found) continue;
      const range = document.createRange();
      range.setStart(node, at); range.setEnd(node, at + piece.length);
      found[piece] = range.getBoundingClientRect().left;
    }
  }
  return found;
}"""

# The left edges of the first and the last character of `piece`: read left to right, the first is left.
ENDS_OF = """([selector, piece]) => {
  const root = document.querySelector(selector);
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const at = node.data.indexOf(piece);
    if (at < 0) continue;
    const left = (i) => { const r = document.createRange(); r.setStart(node, i); r.setEnd(node, i + 1);
                          return r.getBoundingClientRect().left; };
    return [left(at), left(at + piece.length - 1)];
  }
  return null;
}"""


def _world(django_user_model, team_name: str, label: str, *, stored_label: str | None = None) -> GatewayKey:
    """alice (admin) and bob (member, holding the key on a device); `stored_label` is written past the rules,
    as a label saved before they refused it."""
    alice = django_user_model.objects.create_user("alice", password="pw-alice")
    bob = django_user_model.objects.create_user("bob", password="pw-bob")
    team = Team.objects.create(name=team_name, slug="rtl")
    Membership.objects.create(team=team, user=alice, role=Role.ADMIN)
    Membership.objects.create(team=team, user=bob, role=Role.MEMBER)
    key = store_key(
        team=team,
        gateway=Gateway.objects.get(slug="tokaify"),
        label=label,
        secret="sk-tokaify-bidi-0123456789abcdef",
        actor=alice,
    )
    if stored_label is not None:
        GatewayKey.objects.filter(pk=key.pk).update(label=stored_label)
        key.refresh_from_db()
    assignment = assign_key(key=key, username="bob", actor=alice)  # its audit row names the stored label
    create_device(assignment=assignment, name="work laptop", platform="linux", actor=bob)
    return key


def test_my_devices_keeps_a_hebrew_team_name_apart_from_a_label_starting_with_digits(
    live_server,
    browser,  # noqa: F811
    django_user_model,
):
    _world(django_user_model, "צוות", "2024 laptop")
    page = browser.new_page()
    sign_in(page, live_server, "bob", "pw-bob")
    page.goto(f"{live_server.url}/devices/")
    left = page.evaluate(LEFT_OF, ["tr[data-device] td:nth-child(2)", ["צוות", "2024", "laptop"]])
    assert left["צוות"] < left["2024"] < left["laptop"], left


def test_my_setup_shows_the_masked_key_after_a_stored_label_holding_a_direction_override(
    live_server,
    browser,  # noqa: F811
    django_user_model,
):
    key = _world(django_user_model, "Web", "CI laptop", stored_label="CI \u202elaptop")
    page = browser.new_page()
    sign_in(page, live_server, "bob", "pw-bob")
    page.goto(f"{live_server.url}/setup/")
    left = page.evaluate(LEFT_OF, ["section.card h2", ["Tokaify", "CI", "laptop", key.masked]])
    assert left["Tokaify"] < left["CI"] < left["laptop"] < left[key.masked], left


def test_the_audit_trail_shows_the_fingerprint_in_order_after_a_stored_label_holding_an_override(
    live_server,
    browser,  # noqa: F811
    django_user_model,
):
    key = _world(django_user_model, "Web", "CI laptop", stored_label="CI \u202elaptop")
    page = browser.new_page()
    sign_in(page, live_server, "alice", "pw-alice")
    page.goto(f"{live_server.url}/audit/?action=assignment.created")
    first, last = page.evaluate(ENDS_OF, ["tbody tr td:nth-child(6)", key.short_fingerprint])
    assert first < last, (key.short_fingerprint, first, last)
