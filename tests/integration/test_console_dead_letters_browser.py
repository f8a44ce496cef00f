"""The Dead letters page in real headless Chromium over real dead letters: select, preview, confirm, executed.

An operator checks two letters, previews a requeue, confirms, lands on the pending action; the
bridge's executor runs it; the action page then says done and the run's timeline shows the action.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from runwatch.api.app import create_app
from runwatch.api.store import Store
from runwatch.bridge.actions import execute_once
from runwatch.bridge.keys import Keys
from runwatch.bridge.mirror import mirror_once
from runwatch.bridge.redis_letters import RedisLetters

from runwatch.thresholds import ThresholdPolicy
from runwatch.tokens import OPERATOR, create_token
from tests.support.browser import WAIT_MS, needs_chromium, sign_in, sync_api, tab_through
from tests.support.letters import make_dead_letters
from tests.support.live_server import serving

pytestmark = needs_chromium


@pytest.fixture
def base_url(database_url, servers, engine) -> Iterator[str]:
    app = create_app(Store(database_url, token_cache_seconds=0), redis_url=servers.redis_url)
    with serving(app) as url:
        yield url


def test_operator_previews_confirms_and_sees_the_action_done_and_on_the_timeline(
    page, base_url, harness, engine, settings
):
    letters = make_dead_letters(harness, "jobs", [1, 1, 2])
    keys = Keys(harness.broker.namespace)
    mirror_once(RedisLetters(harness.broker.client, keys), engine)
    with engine.begin() as conn:
        token = create_token(conn, name="night shift", tenant_ids=None, role=OPERATOR)[0]
    sign_in(page, token)
    page.click("nav >> text=Dead letters")
    page.wait_for_url("**/console/dead-letters")
    rows = page.locator("table.letters tbody tr")
    assert rows.count() == len(letters)
    assert "doomed" in page.inner_text("table.groups") and "RuntimeError" in page.inner_text("table.groups")
    reached = set(tab_through(page))  # the keyboard alone reaches every checkbox and button
    controls = page.evaluate("Array.from(document.querySelectorAll('[data-k]')).filter(e => e.offsetParent !== null"
                             " || e.classList.contains('skip')).map(e => e.getAttribute('data-k'))")  # fmt: skip
    # NOTE: a radio group takes one Tab stop (its checked radio); arrow keys move within it.
    unchecked = page.evaluate("Array.from(document.querySelectorAll('input[type=radio]:not(:checked)'))"
                              ".map(e => e.getAttribute('data-k'))")  # fmt: skip
    assert set(controls) - set(unchecked) <= reached
    page.check("table.letters tbody tr:nth-child(1) input[type=checkbox]")
    page.check("table.letters tbody tr:nth-child(2) input[type=checkbox]")
    page.check("input[name=kind][value=requeue]")
    page.click("text=Preview the selected letters")
    page.wait_for_url("**/console/dead-letters/preview")
    assert page.inner_text("[data-field=matched]") == "2"
    assert page.locator("table.letters tbody tr").count() == 2
    page.click("text=Confirm requeue of 2 letters")
    page.wait_for_url("**/console/actions/*")
    assert page.inner_text("[data-field=action-status]") == "pending"

    result = execute_once(RedisLetters(harness.broker.client, keys), engine, ThresholdPolicy(settings))
    assert result.actions == 1
    page.reload()
    sync_api.expect(page.locator("[data-field=action-status]")).to_have_text("done", timeout=WAIT_MS)
    assert page.locator("table.items td.result", has_text="requeued").count() == 2
    page.click("table.items tbody tr:first-child td:nth-child(5) a")
    page.wait_for_url("**/console/runs/*")
    timeline = page.inner_text("ol.timeline")
    assert "operator action" in timeline and "requeue by night shift" in timeline and "requeued" in timeline
    page.click("nav >> text=Actions")
    assert "night shift" in page.inner_text("table.actions") and "done" in page.inner_text("table.actions")
    assert all(url.startswith(base_url + "/") for url in page.watch.requests), page.watch.requests
    assert page.watch.errors == [] and page.watch.dialogs == []
