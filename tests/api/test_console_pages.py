"""Console pages over plain HTTP: filters, pages, detail, tenant scope, escaping, assets, size."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import text

from tests.support.console_client import page, sign_in
from tests.support.run_events import add_event
from tests.support.seed import insert_run, newest_first

_ROW_IDS = re.compile(r'<a href="/console/runs/(\d+)">#')
_NEXT = re.compile(r'<a href="([^"]+)" rel="next">')


def ids(html: str) -> list[int]:
    return [int(i) for i in _ROW_IDS.findall(html.split("<tbody>", 1)[-1])]


def test_runs_page_is_newest_first_and_scoped_to_the_tokens_tenants(client, tokens, world):
    for token, visible in ((tokens.all, world), (tokens.t13, [r for r in world if r.tenant_id in (1, 3)])):
        result = page(client, "/console/runs", sign_in(client, token), limit="200")
        assert result.status_code == 200
        assert ids(result.text) == newest_first(visible)


def test_runs_page_filters_with_several_values_and_keeps_them_in_the_url(client, tokens, world):
    cookies = sign_in(client, tokens.all)
    path = "/console/runs?status=queued&status=running&outcome=&type=&limit=200"
    result = client.simulate_get(path.split("?")[0], query_string=path.split("?")[1], cookies=cookies)
    assert result.status_code == 200
    assert ids(result.text) == newest_first([r for r in world if r.status in ("queued", "running")])
    assert 'value="queued" checked' in result.text and 'value="running" checked' in result.text


def test_runs_page_pages_with_a_cursor_link_that_keeps_the_filters(client, tokens, world):
    cookies = sign_in(client, tokens.all)
    expected = newest_first([r for r in world if r.status == "completed"])
    seen, query = [], "status=completed&limit=5"
    while query:
        result = client.simulate_get("/console/runs", query_string=query, cookies=cookies)
        assert result.status_code == 200
        seen += ids(result.text)
        match = _NEXT.search(result.text)
        query = urlsplit(match.group(1).replace("&amp;", "&")).query if match else None
        if query:
            assert parse_qs(query)["status"] == ["completed"]
    assert seen == expected


def test_runs_page_filters_by_queue_actor_reason_message_and_created_range(client, tokens, world, engine):
    cookies = sign_in(client, tokens.all)
    target = world[5]
    with engine.connect() as conn:
        message_id = conn.execute(text("SELECT message_id FROM operation_runs WHERE id = :id"), {"id": target.id})
        message_id = message_id.scalar_one()
    assert ids(page(client, "/console/runs", cookies, message_id=message_id).text) == [target.id]
    stale = page(client, "/console/runs", cookies, reason_code="run.stale_running", limit="200").text
    assert ids(stale) == newest_first([r for r in world if r.source == "scheduled_reconciler"])
    assert ids(page(client, "/console/runs", cookies, queue_name="nope").text) == []
    assert len(ids(page(client, "/console/runs", cookies, queue_name="default", limit="200").text)) == len(world)
    assert ids(page(client, "/console/runs", cookies, actor_name="reports.render", created_after="2000-01-01T00:00",
                    created_before="2999-01-01T00:00:00", limit="200").text) == newest_first(
        [r for r in world if r.type == "reports.render"])  # fmt: skip


def test_runs_page_shows_a_badge_with_words_and_the_operator_message(client, tokens, engine):
    with engine.begin() as conn:
        insert_run(conn, status="running", outcome="pending", age=7200, progress_age=3600, message="Halfway there")
    html = page(client, "/console/runs", sign_in(client, tokens.all)).text
    assert "likely stale</span>" in html and "Halfway there" in html


def test_a_bad_filter_is_an_html_400_naming_it(client, tokens):
    result = page(client, "/console/runs", sign_in(client, tokens.all), status="bogus")
    assert result.status_code == 400 and "text/html" in result.headers["content-type"] and "status" in result.text


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/console/runs", "status=&status=&outcome=&type=&limit=50"),
        ("/console/dead-letters", "queue=&queue=&actor=&exception_type=&limit=50"),
        ("/console/actions", "status=&status=&kind=&limit=50"),
    ],
)
def test_a_filter_form_sent_with_blank_fields_means_any(client, tokens, path, query):
    # NOTE: a form sends every field, and a repeated one (checkboxes, multi-selects) as a list of blanks.
    result = client.simulate_get(path, query_string=query, cookies=sign_in(client, tokens.all))
    assert result.status_code == 200, result.text.split("<main", 1)[-1][:600]


def test_detail_shows_fields_timeline_lineage_and_diagnostics(client, tokens, engine):
    with engine.begin() as conn:
        original = insert_run(conn, outcome="failed", source="failed_callback", message="It failed")
        retry = insert_run(conn, status="running", outcome="pending", age=30, message="Trying again")
        conn.execute(text("UPDATE operation_runs SET retry_of = :o WHERE id = :r"), {"o": original, "r": retry})
    add_event(engine, original, "enqueued", 100)
    add_event(engine, original, "attempt_failed", 90, error={"type": "KeyError", "message": "missing key"})
    add_event(engine, original, "operator_requeued", 10, actor="ops")
    cookies = sign_in(client, tokens.all)
    html = page(client, f"/console/runs/{original}", cookies).text
    assert "It failed" in html and "run.queue_failure_bridge" in html and "Queue failure was reconciled" in html
    assert "enqueued" in html and "attempt failed" in html and "KeyError" in html and "missing key" in html
    assert "operator requeued" in html  # an unknown kind renders generically
    assert f'href="/console/runs/{retry}"' in html  # retried by
    assert '<details class="diagnostics"' in html and "Why not healed yet" in html
    assert "never touches terminal runs" in html
    live = page(client, f"/console/runs/{retry}", cookies).text
    assert f'href="/console/runs/{original}"' in live and 'data-live="true"' in live
    assert "not stale yet" in live


def test_why_not_healed_shows_the_healers_last_finding(client, tokens, engine):
    with engine.begin() as conn:
        run_id = insert_run(conn, status="queued", outcome="pending", age=7200)
        note = '{"why": "backlog", "note": "backlog: the broker still holds the message"}'
        conn.execute(text("UPDATE operation_runs SET healer_checked_at = now(), healer_note = CAST(:n AS jsonb) "
                          "WHERE id = :id"), {"id": run_id, "n": note})  # fmt: skip
    html = page(client, f"/console/runs/{run_id}", sign_in(client, tokens.all)).text
    assert "left alone: the broker still holds the message" in html


def test_another_tenants_run_is_the_same_404_as_a_missing_one(client, tokens, engine):
    with engine.begin() as conn:
        other = insert_run(conn, tenant_id=2)
    cookies = sign_in(client, tokens.t1)
    theirs, missing = page(client, f"/console/runs/{other}", cookies), page(client, "/console/runs/99999999", cookies)
    assert theirs.status_code == missing.status_code == 404 and theirs.text == missing.text
    assert page(client, "/console/runs/abc", cookies).text == missing.text
    live_theirs = page(client, f"/console/runs/{other}/live", cookies)
    live_missing = page(client, "/console/runs/99999999/live", cookies)
    assert live_theirs.status_code == 404 and live_theirs.text == live_missing.text


def test_live_json_follows_the_run(client, tokens, engine):
    with engine.begin() as conn:
        run_id = insert_run(conn, status="running", outcome="pending", message="working")
    body = page(client, f"/console/runs/{run_id}/live", sign_in(client, tokens.all)).json
    assert body["id"] == run_id and body["status"] == "running" and body["operator_message"] == "working"


HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_job_provided_texts_are_escaped_everywhere(client, tokens, engine):
    with engine.begin() as conn:
        run_id = insert_run(conn, status="running", outcome="pending", age=7200, progress_age=3600,
                            message=HOSTILE, type_=HOSTILE)  # fmt: skip
        conn.execute(text("""UPDATE operation_runs SET initiator_name = :h, actor_name = :h,
            summary_counts = jsonb_build_object(CAST(:h AS text), 1),
            last_error = jsonb_build_object('type', CAST(:h AS text), 'message', CAST(:h AS text)) WHERE id = :id"""),
                     {"h": HOSTILE, "id": run_id})  # fmt: skip
    add_event(engine, run_id, "attempt_failed", 5, error={"type": HOSTILE, "message": HOSTILE})
    cookies = sign_in(client, tokens.all)
    for path in ("/console/runs", f"/console/runs/{run_id}", "/console/", "/console/healer"):
        html = page(client, path, cookies).text
        assert "<script>alert" not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;alert" in html, path


@pytest.mark.parametrize("path", ["/console/", "/console/runs", "/console/healer", "/console/sign-in", "RUN"])
def test_pages_have_no_inline_script_style_or_handler(client, tokens, world, path):
    cookies = sign_in(client, tokens.all)
    html = page(client, f"/console/runs/{world[3].id}" if path == "RUN" else path, cookies).text
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", html)
    assert not re.search(r"<[^>]+\sstyle\s*=", html) and "<style" not in html


def test_overview_counts_only_the_tokens_tenants(client, tokens, world):
    html_all = page(client, "/console/", sign_in(client, tokens.all)).text
    html_t1 = page(client, "/console/", sign_in(client, tokens.t1)).text
    total = re.compile(r"All types</th>(?:<td>.*?</td>){4}<td>(\d+)</td>")
    assert int(total.search(html_all).group(1)) == len(world)
    assert int(total.search(html_t1).group(1)) == len([r for r in world if r.tenant_id == 1])
    assert "<svg" in html_t1 and "failure rate" in html_t1 and "Event backlog" in html_t1
    assert 'http-equiv="refresh"' in html_t1


def test_healer_page_shows_passes_and_nearest_deadlines(client, tokens, world, engine):
    with engine.begin() as conn:
        conn.execute(
            text("""INSERT INTO maintenance_passes (name, started_at, finished_at, duration_ms, result)
            VALUES ('healer', now(), now(), 12.5,
                    '{"candidates": 7, "reconciled": 2, "skipped": {"backlog": 5}, "paused": "redis unreachable"}'),
                   ('bridge', now(), now(), 3.0, '{"scanned": 4}')""")
        )
    html_all = page(client, "/console/healer", sign_in(client, tokens.all)).text
    assert "paused: redis unreachable" in html_all and "<dt>candidates</dt><dd>7</dd>" in html_all
    assert "<dt>scanned</dt><dd>4</dd>" in html_all  # another job's result, whatever its keys
    live_t1 = [r for r in world if r.tenant_id == 1 and r.status != "completed"]
    html_t1 = page(client, "/console/healer", sign_in(client, tokens.t1)).text
    assert sorted(int(i) for i in re.findall(r'href="/console/runs/(\d+)"', html_t1)) == sorted(r.id for r in live_t1)
    assert "paused: redis unreachable" in html_t1 and "candidates" not in html_t1  # counts span all tenants


def test_assets_are_served_by_the_app_and_a_page_weighs_under_150_kb(client, tokens, world):
    cookies = sign_in(client, tokens.all)
    html = page(client, "/console/runs", cookies, limit="50").text
    total = len(html.encode())
    for src in re.findall(r'(?:src|href)="(/console/static/[^"]+)"', html):
        asset = client.simulate_get(src.split("?")[0])
        assert asset.status_code == 200 and "max-age" in asset.headers["cache-control"]
        total += len(asset.content)
    assert total < 150_000
    assert client.simulate_get("/console/static/../app.py").status_code == 404
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)  # nothing from another origin


def test_overview_figures_are_reused_briefly_per_scope(client, tokens, world, engine):
    total = re.compile(r"All types</th>(?:<td>.*?</td>){4}<td>(\d+)</td>")
    cookies = sign_in(client, tokens.all)
    before = int(total.search(page(client, "/console/", cookies).text).group(1))
    with engine.begin() as conn:
        insert_run(conn, tenant_id=1)
    assert int(total.search(page(client, "/console/", cookies).text).group(1)) == before  # cached
    t1 = int(total.search(page(client, "/console/", sign_in(client, tokens.t1)).text).group(1))
    assert t1 == len([r for r in world if r.tenant_id == 1]) + 1  # another scope: its own, fresh figures
