"""The console in real headless Chromium (Debian's package) driven by Playwright.

Sign in, filter, page, open a detail, reveal diagnostics, live updates, sign out; hostile job texts
render as text with nothing executed; no request leaves the app's origin; the keyboard alone
reaches every control.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from tests.support.browser import WAIT_MS, needs_chromium, sign_in, sync_api, tab_through
from tests.support.live_server import serving
from tests.support.run_events import add_event
from tests.support.seed import insert_run

pytestmark = needs_chromium


@pytest.fixture
def base_url(app) -> Iterator[str]:
    with serving(app) as url:
        yield url


def test_sign_in_filter_page_detail_diagnostics_sign_out(page, base_url, tokens, world):
    sign_in(page, tokens.all)
    assert "role: viewer" in page.inner_text("header")
    assert "rw_session" not in page.evaluate("document.cookie")  # HttpOnly
    page.click("nav >> text=Runs")
    page.check("input[name=status][value=completed]")
    page.fill("input[name=type]", "invoices.sync")
    page.click("text=Apply filters")
    page.wait_for_url("**status=completed**")
    assert "type=invoices.sync" in page.url  # the URL holds the filters
    expected = [r for r in world if r.status == "completed" and r.type == "invoices.sync"]
    rows = page.locator("table.runs tbody tr")
    assert rows.count() == len(expected)
    page.goto(page.url + "&limit=3")
    first_page = page.locator("table.runs tbody tr td:first-child").all_inner_texts()
    page.click("a[rel=next]")
    page.wait_for_url("**cursor=**")
    second_page = page.locator("table.runs tbody tr td:first-child").all_inner_texts()
    assert len(first_page) == 3 and second_page and not set(first_page) & set(second_page)
    page.click("table.runs tbody tr:first-child td:first-child a")
    page.wait_for_url("**/console/runs/*")
    diagnostics = page.locator("details.diagnostics")
    assert not page.is_visible("text=Why not healed yet")
    diagnostics.locator("summary").click()
    assert page.is_visible("text=Why not healed yet")
    page.click("text=Sign out")
    page.wait_for_url("**/console/sign-in")
    page.goto("/console/runs")
    assert page.url.endswith("/console/sign-in")
    assert all(url.startswith(base_url + "/") for url in page.watch.requests), page.watch.requests
    assert page.watch.errors == [] and page.watch.dialogs == []


def test_a_viewer_sees_no_action_and_a_bad_token_is_refused(page, tokens, world):
    page.goto("/console/sign-in")
    page.fill("#token", "rw_wrong")
    page.click("button[type=submit]")
    assert "not valid" in page.inner_text("[role=alert]")
    sign_in(page, tokens.t1)
    page.goto(f"/console/runs/{world[0].id}")
    # The only state-changing form a viewer gets is sign-out.
    assert page.locator("form[method=post]").count() == 1
    assert page.locator("form[method=post]").get_attribute("action") == "/console/sign-out"
    other = next(r for r in world if r.tenant_id == 2)
    response = page.goto(f"/console/runs/{other.id}")
    assert response.status == 404


HOSTILE = '<script>window.pwned=1;alert("x")</script><img src=x onerror="window.pwned=2">'


def test_hostile_texts_render_as_text_and_nothing_runs(page, base_url, tokens, engine):
    with engine.begin() as conn:
        run_id = insert_run(conn, status="running", outcome="pending", message=HOSTILE, type_=HOSTILE)
        conn.execute(text("UPDATE operation_runs SET initiator_name = :h WHERE id = :id"), {"h": HOSTILE, "id": run_id})
    add_event(engine, run_id, "attempt_failed", 5, error={"type": "ValueError", "message": HOSTILE})
    sign_in(page, tokens.all)
    for path in ("/console/runs", f"/console/runs/{run_id}", "/console/healer", "/console/"):
        page.goto(path)
        page.wait_for_load_state("load")
        assert page.evaluate("window.pwned") is None, path
        if path != "/console/":
            assert HOSTILE in page.inner_text("main"), path
    assert page.watch.dialogs == []
    assert all(url.startswith(base_url + "/") for url in page.watch.requests), page.watch.requests


def test_a_live_run_updates_without_a_reload(page, tokens, engine):
    with engine.begin() as conn:
        run_id = insert_run(conn, status="running", outcome="pending", message="starting")
    sign_in(page, tokens.all)
    page.goto(f"/console/runs/{run_id}")
    page.evaluate("window.marker = 'same page'")
    with engine.begin() as conn:
        conn.execute(text("UPDATE operation_runs SET operator_message = 'halfway', progress_processed = 5, "
                          "progress_total = 10 WHERE id = :id"), {"id": run_id})  # fmt: skip
    # NOTE: expect() polls from Python: the page's CSP forbids the eval that wait_for_function needs.
    sync_api.expect(page.locator("[data-field=operator_message]")).to_have_text("halfway", timeout=WAIT_MS)
    sync_api.expect(page.locator("[data-field=progress]")).to_have_text("5 / 10", timeout=WAIT_MS)
    assert page.evaluate("window.marker") == "same page"  # updated in place, not reloaded


def test_the_keyboard_alone_reaches_every_control(page, tokens, world):
    sign_in(page, tokens.all)
    for path in ("/console/runs?limit=5", f"/console/runs/{world[9].id}", "/console/", "/console/healer"):
        page.goto(path)
        reached = set(tab_through(page))
        controls = page.evaluate(
            "Array.from(document.querySelectorAll('[data-k]')).filter(e => e.offsetParent !== null "
            "|| e.classList.contains('skip')).map(e => e.getAttribute('data-k'))"
        )
        assert set(controls) <= reached, (path, set(controls) - reached)
    # Enter on a focused disclosure reveals the diagnostics.
    page.goto(f"/console/runs/{world[9].id}")
    page.focus("details.diagnostics summary")
    page.keyboard.press("Enter")
    assert page.is_visible("text=Why not healed yet")
