"""Real headless Chromium (Debian's package) driven by Playwright: launch, watch a page, sign in, tab."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = os.environ.get("RUNWATCH_CHROMIUM", "/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
# NOTE: in CI a missing browser fails the tests instead of skipping them unseen.
needs_chromium = pytest.mark.skipif(
    not shutil.which(CHROMIUM) and not os.environ.get("CI"),
    reason=f"{CHROMIUM} missing: scripts/bootstrap installs Debian's chromium",
)
#: Longest wait for something the page does by itself (a poll every few seconds).
WAIT_MS = 30_000


@contextmanager
def launched() -> Iterator[Any]:
    """Headless Chromium for a module's tests (the ``browser`` fixture)."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


class Watch:
    """Every request, console message and dialog of a page: the evidence of the origin/CSP checks."""

    def __init__(self, page) -> None:
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))


def sign_in(page, token: str) -> None:
    page.goto("/console/runs")
    assert page.url.endswith("/console/sign-in")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/")


def tab_through(page, limit: int = 300) -> list[str]:
    """Press Tab until focus comes back round; the identity of each focused control, in order."""
    page.evaluate("document.querySelectorAll('a,button,input,select,summary,textarea').forEach("
                  "(e, i) => e.setAttribute('data-k', String(i)))")  # fmt: skip
    seen: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        key = page.evaluate("document.activeElement && document.activeElement.getAttribute('data-k')")
        if seen and key == seen[-1]:
            continue  # a date-time input takes one Tab per part (day, month, year, ...)
        if (key is None and seen) or key in seen:
            break
        if key is not None:
            seen.append(key)
    return seen
