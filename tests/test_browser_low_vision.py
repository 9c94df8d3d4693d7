"""The pages as a person with low vision or a small screen uses them, in real headless Chromium: text follows the
browser's font-size setting, table cells and badges keep their words whole at 320 px (a wide table scrolls in its
own box), and the latency chart's labels stay readable on a phone (the chart scrolls rather than shrinks)."""

from __future__ import annotations

import pytest

from tests import test_browser_pages
from tests.test_browser_pages import address_of, session_cookie

world = test_browser_pages.world  # the pages' fixture: every role, with data on each page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

# Every word of a few letters in `selector` that the layout splits over two lines (mid-word), as "word".
SPLIT_WORDS = """sel => { const out = [];
  for (const root of document.querySelectorAll(sel)) {
    const w = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let n; (n = w.nextNode());) {
      if (n.parentElement.closest('.visually-hidden, [hidden], details:not([open]) > :not(summary)')) continue;
      const re = /[A-Za-z]{2,12}/g; let m;
      while ((m = re.exec(n.data))) {
        const r = document.createRange(); r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
        const rects = [...r.getClientRects()].filter((x) => x.width > 0);
        if (rects.length > 1 && Math.abs(rects[0].top - rects[rects.length - 1].top) > 2) out.push(m[0]);
      }
    }
  }
  return out; }"""


def open_as(browser, live_server, world, who, address, **options):
    context = browser.new_context(bypass_csp=True, **options)
    if who:
        context.add_cookies([session_cookie(live_server, world[who])])
    page = context.new_page()
    page.goto(live_server.url + address_of(world, address))
    page.wait_for_load_state("networkidle")
    return context, page


def test_text_follows_the_browsers_font_size_setting(live_server, chromium, world):
    """A low-vision user sets the browser's default font size to 32 px (Chrome: Settings > Appearance >
    Font size). Text sized in px ignores it: the key page stays at 15 px."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    context.add_cookies([session_cookie(live_server, world["alice"])])
    page = context.new_page()
    context.new_cdp_session(page).send("Page.setFontSizes", {"fontSizes": {"standard": 32, "fixed": 26}})
    page.goto(live_server.url + address_of(world, "/keys/{key}/"))
    sizes = page.evaluate("""() => ({
      body: parseFloat(getComputedStyle(document.querySelector('main p')).fontSize),
      badge: parseFloat(getComputedStyle(document.querySelector('.badge')).fontSize),
      help: parseFloat(getComputedStyle(document.querySelector('.helptext')).fontSize) })""")
    context.close()
    # Twice the default (16 px -> 32 px) must give about twice the text: 15 px -> 30 px, 12 px -> 24 px.
    assert sizes["body"] >= 28, sizes
    assert sizes["badge"] >= 22, sizes
    assert sizes["help"] >= 24, sizes


def test_the_latency_charts_labels_stay_readable_on_a_320px_screen(live_server, chromium, world):
    """The chart's times, "420 ms" and "failed" are SVG text in a 520-unit viewBox scaled down to the card:
    at 320 px (or 1280 px at 400 %) they are drawn about 6 px tall."""
    context, page = open_as(
        chromium, live_server, world, "alice", "/keys/{key}/", viewport={"width": 320, "height": 640}
    )
    heights = page.evaluate(
        "[...document.querySelectorAll('svg.chart text')].map(t => [t.textContent, t.getBoundingClientRect().height])"
    )
    context.close()
    assert heights, "no chart"
    small = [(text, round(h, 1)) for text, h in heights if h < 10]  # 11 px text is about 13 px tall
    assert small == [], f"chart labels too small to read at 320 px: {small}"


def test_a_state_badge_keeps_its_word_whole_on_a_desktop(live_server, chromium, world):
    """Key page, Recent probes, at 1280 px: the verdict badge reads "timeou" / "t"."""
    context, page = open_as(
        chromium, live_server, world, "alice", "/keys/{key}/", viewport={"width": 1280, "height": 900}
    )
    split = page.evaluate(SPLIT_WORDS, "main .badge")
    context.close()
    assert split == [], f"badges split mid-word at 1280 px: {split}"


def test_the_connections_table_keeps_words_whole_at_320px(live_server, chromium, world):
    """An auditor on a phone (or at 400 % zoom): the table scrolls sideways in its box, yet its Key column is
    squeezed to a few letters: "Bob lapt/op", and the state badge stacks "a/c/t/i/v/e"."""
    context, page = open_as(
        chromium, live_server, world, "alice", "/connections/", viewport={"width": 320, "height": 640}
    )
    split = page.evaluate(SPLIT_WORDS, "main table")
    context.close()
    assert split == [], f"words split mid-word in the connections table at 320 px: {split}"


def test_the_notification_channels_actions_stay_readable_at_320px(live_server, chromium, world):
    """Team page, Notifications: the table has no scroll box of its own, so at 320 px "Send a test" and
    "Remove" are stacked one letter per line (and the state reads "enabl/ed")."""
    context, page = open_as(
        chromium, live_server, world, "alice", "/teams/web/", viewport={"width": 320, "height": 640}
    )
    split = page.evaluate(SPLIT_WORDS, "#notifications table")
    context.close()
    assert split == [], f"words split mid-word in the channels table at 320 px: {split}"
