"""Debian's Chromium as every browser test launches it (`playwright install` cannot download here)."""

from __future__ import annotations

import os

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def launch(playwright, *, back_forward_cache: bool = False):
    """A headless Chromium from a `sync_playwright()` context; with `back_forward_cache`, as a person's browser
    has it: Playwright turns off the cache that restores a page whole on Back."""
    ignored = ["--disable-back-forward-cache"] if back_forward_cache else None
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, ignore_default_args=ignored)
