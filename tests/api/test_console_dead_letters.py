"""The console's Dead letters and Actions pages over plain HTTP: scope, preview, confirm, roles, CSRF, escaping."""

from __future__ import annotations

import html as htmllib
import re
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import text

from runwatch.mirror import MirrorLetter, add_letters
from runwatch.tokens import OPERATOR, create_token
from tests.support.console_client import FORM, csrf_of, page, sign_in
from tests.support.run_events import add_event
from tests.support.seed import insert_run

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
_LETTER_ROWS = re.compile(r'<tr data-letter="(\d+)">')
_HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')
_CONFIRM = re.compile(r'<form method="post" action="/console/dead-letters/confirm".*?</form>', re.S)


@pytest.fixture
def letters(engine) -> dict[str, int]:
    """Mirror rows: a, b (tenant 1), c (tenant 2), d (no tenant) on 'jobs'; e (tenant 1, hostile text) on 'mail'."""
    now = time.time()
    specs = {
        "a": ("jobs", "doomed", "RuntimeError", "boom", 1, 100),
        "b": ("jobs", "doomed", "RuntimeError", "boom", 1, 200),
        "c": ("jobs", "doomed", "RuntimeError", "boom", 2, 300),
        "d": ("jobs", "broken", "KeyError", "missing", None, 400),
        "e": ("mail", HOSTILE, HOSTILE, HOSTILE, 1, 500),
    }
    with engine.begin() as conn:
        add_letters(conn, [
            MirrorLetter(queue_name=q, redis_message_id=f"r-{name}", dead_at=now - age, message_id=f"m-{name}",
                         actor_name=actor, tenant_id=tenant, exception_type=exc, exception_message=msg)
            for name, (q, actor, exc, msg, tenant, age) in specs.items()
        ])  # fmt: skip
        rows = conn.execute(text("SELECT redis_message_id, id FROM dead_letters")).all()
    return {rid.removeprefix("r-"): i for rid, i in rows}


@pytest.fixture
def ops(engine, store) -> dict[str, str]:
    with engine.begin() as conn:
        return {
            "root": create_token(conn, name="root ops", tenant_ids=None, role=OPERATOR)[0],
            "t1": create_token(conn, name="t1 ops", tenant_ids=[1], role=OPERATOR)[0],
        }


def shown(html: str) -> list[int]:
    return [int(i) for i in _LETTER_ROWS.findall(html)]


def post(client, path: str, cookies, fields: list[tuple[str, str]]):
    return client.simulate_post(path, body=urlencode(fields), headers=FORM, cookies=cookies)


def preview(client, cookies, *, kind="requeue", ids=(), **filters):
    csrf = csrf_of(page(client, "/console/dead-letters", cookies).text)
    fields = [("csrf", csrf), ("kind", kind), ("scope", "ids" if ids else "filter")]
    fields += [("id", str(i)) for i in ids] + [(k, str(v)) for k, v in filters.items()]
    return post(client, "/console/dead-letters/preview", cookies, fields)


def confirm_fields(preview_html: str) -> list[tuple[str, str]]:
    form = _CONFIRM.search(preview_html)
    assert form, "no confirmation form"
    return [(name, htmllib.unescape(value)) for name, value in _HIDDEN.findall(form.group(0))]


def action_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM operator_actions")).scalar_one()


def test_groups_and_list_are_scoped_to_the_sessions_tenants(client, tokens, letters):
    everything = page(client, "/console/dead-letters", sign_in(client, tokens.all)).text
    assert sorted(shown(everything)) == sorted(letters.values())
    assert "Dead letters</a>" in everything  # in the navigation
    assert re.search(r"<td>jobs</td><td>doomed</td><td>RuntimeError</td>\s*<td><a [^>]+>3</a>", everything)
    mine = page(client, "/console/dead-letters", sign_in(client, tokens.t1)).text
    assert sorted(shown(mine)) == sorted([letters["a"], letters["b"], letters["e"]])
    assert re.search(r"<td>jobs</td><td>doomed</td><td>RuntimeError</td>\s*<td><a [^>]+>2</a>", mine)
    assert "broken" not in mine  # APPSEC: no tenant-less letter, not even in a group
    narrowed = page(client, "/console/dead-letters", sign_in(client, tokens.t1), tenant_id="2").text
    assert shown(narrowed) == []  # a filter narrows within the scope, never widens it


def test_list_filters_and_pages_with_a_cursor(client, tokens, letters):
    cookies = sign_in(client, tokens.all)
    assert shown(page(client, "/console/dead-letters", cookies, queue="jobs", actor="doomed").text) == [
        letters["a"], letters["b"], letters["c"]]  # fmt: skip
    first = page(client, "/console/dead-letters", cookies, limit="2", queue="", actor="").text
    nxt = re.search(r'<a href="([^"]+)" rel="next">', first).group(1).replace("&amp;", "&")
    second = client.simulate_get(nxt.split("?")[0], query_string=nxt.split("?")[1], cookies=cookies).text
    assert shown(first) == [letters["a"], letters["b"]] and shown(second) == [letters["c"], letters["d"]]
    assert page(client, "/console/dead-letters", cookies, min_age_seconds="x").status_code == 400


def test_preview_shows_the_count_and_first_rows(client, ops, letters):
    cookies = sign_in(client, ops["root"])
    chosen = preview(client, cookies, ids=(letters["a"], letters["c"]))
    assert chosen.status_code == 200
    assert '<strong data-field="matched">2</strong>' in chosen.text
    assert sorted(shown(chosen.text)) == sorted([letters["a"], letters["c"]])
    assert "Confirm requeue of 2 letters" in chosen.text
    everything = preview(client, cookies, kind="purge", queue="jobs", actor="doomed")
    assert '<strong data-field="matched">3</strong>' in everything.text and "deletes them" in everything.text
    assert "all letters where actor = doomed, queue = jobs" in everything.text
    scoped = preview(client, sign_in(client, ops["t1"]), queue="jobs")  # APPSEC: the session's tenants only
    assert '<strong data-field="matched">2</strong>' in scoped.text
    nothing = preview(client, sign_in(client, ops["t1"]), ids=(letters["c"],))
    assert '<strong data-field="matched">0</strong>' in nothing.text and not _CONFIRM.search(nothing.text)
    assert '<strong data-field="matched">5</strong>' in preview(client, cookies).text  # no filter: all
    csrf = csrf_of(page(client, "/console/dead-letters", cookies).text)
    none_checked = post(client, "/console/dead-letters/preview", cookies, [("csrf", csrf), ("kind", "requeue"),
                                                                          ("scope", "ids")])  # fmt: skip
    assert none_checked.status_code == 400 and "Select at least one letter" in none_checked.text
    bad_kind = preview(client, cookies, kind="delete", ids=(letters["a"],))
    assert bad_kind.status_code == 400 and "text/html" in bad_kind.headers["content-type"]


def test_confirm_twice_makes_one_action_and_redirects_to_it(client, ops, letters, engine):
    cookies = sign_in(client, ops["root"])
    fields = confirm_fields(preview(client, cookies, queue="jobs", actor="doomed").text)
    assert dict(fields)["key"] and dict(fields)["kind"] == "requeue"
    first = post(client, "/console/dead-letters/confirm", cookies, fields)
    again = post(client, "/console/dead-letters/confirm", cookies, fields)
    assert first.status_code == again.status_code == 303
    location = first.headers["location"]
    assert re.fullmatch(r".*/console/actions/\d+", location) and again.headers["location"] == location
    assert action_count(engine) == 1
    action = page(client, "/console/actions/" + location.rsplit("/", 1)[1], cookies)
    assert action.status_code == 200 and 'data-field="action-status">pending<' in action.text
    assert "3 selected" in action.text and 'http-equiv="refresh"' in action.text
    assert "all letters where actor = doomed, queue = jobs" in action.text
    another = confirm_fields(preview(client, cookies, queue="jobs", actor="doomed").text)  # a new preview: a new key
    assert dict(another)["key"] != dict(fields)["key"]


def test_a_viewer_sees_no_buttons_and_is_refused_with_an_html_403(client, tokens, ops, letters, engine):
    cookies = sign_in(client, tokens.all)
    html = page(client, "/console/dead-letters", cookies).text
    assert 'type="checkbox"' not in html and "/console/dead-letters/preview" not in html
    assert "Preview" not in html
    fields = [("csrf", csrf_of(html)), ("kind", "purge"), ("scope", "ids"), ("id", str(letters["a"]))]
    refused = post(client, "/console/dead-letters/preview", cookies, fields)
    assert refused.status_code == 403 and "text/html" in refused.headers["content-type"]
    assert "viewer" in refused.text
    frozen = confirm_fields(preview(client, sign_in(client, ops["root"]), ids=(letters["a"],)).text)
    frozen = [(k, csrf_of(html) if k == "csrf" else v) for k, v in frozen]
    assert post(client, "/console/dead-letters/confirm", cookies, frozen).status_code == 403
    assert action_count(engine) == 0


def test_a_form_without_this_sessions_csrf_token_is_refused(client, ops, letters, engine):
    cookies = sign_in(client, ops["root"])
    fields = confirm_fields(preview(client, cookies, ids=(letters["a"],)).text)
    for bad in ([(k, v) for k, v in fields if k != "csrf"], [(k, "x" if k == "csrf" else v) for k, v in fields]):
        assert post(client, "/console/dead-letters/confirm", cookies, bad).status_code == 403
    other_session = sign_in(client, ops["root"])
    assert post(client, "/console/dead-letters/confirm", other_session, fields).status_code == 403
    no_csrf = [("kind", "requeue"), ("scope", "ids"), ("id", str(letters["a"]))]
    assert post(client, "/console/dead-letters/preview", cookies, no_csrf).status_code == 403
    assert action_count(engine) == 0


def test_hostile_job_texts_are_escaped_on_every_new_page(client, ops, letters):
    cookies = sign_in(client, ops["root"])
    listing = page(client, "/console/dead-letters", cookies).text
    chosen = preview(client, cookies, ids=(letters["e"],))
    location = post(client, "/console/dead-letters/confirm", cookies, confirm_fields(chosen.text)).headers["location"]
    action_page = page(client, "/console/actions/" + location.rsplit("/", 1)[1], cookies).text
    filtered = preview(client, cookies, actor=HOSTILE).text  # the filter itself is shown back
    for html in (listing, chosen.text, filtered, action_page, page(client, "/console/actions", cookies).text):
        assert "<script>alert" not in html and "<img src=x" not in html
    for html in (listing, chosen.text, filtered):
        assert "&lt;script&gt;alert" in html


def test_actions_audit_and_detail_are_scoped(client, ops, letters, engine):
    root, t1 = sign_in(client, ops["root"]), sign_in(client, ops["t1"])
    root_at = post(
        client,
        "/console/dead-letters/confirm",
        root,
        confirm_fields(preview(client, root, kind="purge", ids=(letters["c"],)).text),
    ).headers["location"]
    t1_at = post(client, "/console/dead-letters/confirm", t1,
                 confirm_fields(preview(client, t1, queue="jobs").text)).headers["location"]  # fmt: skip
    root_id, t1_id = int(root_at.rsplit("/", 1)[1]), int(t1_at.rsplit("/", 1)[1])
    listed = re.compile(r'<a href="/console/actions/(\d+)">#')
    audit = page(client, "/console/actions", root).text
    assert [int(i) for i in listed.findall(audit)] == [t1_id, root_id]
    assert "root ops" in audit and "t1 ops" in audit and "purge" in audit and "all letters where queue = jobs" in audit
    assert [int(i) for i in listed.findall(page(client, "/console/actions", t1).text)] == [t1_id]
    assert [int(i) for i in listed.findall(page(client, "/console/actions", root, kind="purge").text)] == [root_id]
    detail = page(client, f"/console/actions/{t1_id}", root).text
    assert "m-a" in detail and "m-b" in detail and "m-c" not in detail  # the letters t1 could see
    theirs, missing = page(client, f"/console/actions/{root_id}", t1), page(client, "/console/actions/999999", t1)
    assert theirs.status_code == missing.status_code == 404 and theirs.text == missing.text
    assert page(client, "/console/actions/abc", t1).text == missing.text
    assert page(client, "/console/actions", root, status="bogus").status_code == 400


def test_an_operator_action_reads_plainly_on_the_runs_timeline(client, tokens, engine):
    with engine.begin() as conn:
        run_id = insert_run(conn, outcome="failed", source="failed_callback")
    add_event(engine, run_id, "operator_action", 5, action_id=7, action="requeue", result="requeued",
              requested_by={"token_id": 1, "token_name": HOSTILE}, new_run_id=run_id)  # fmt: skip
    html = page(client, f"/console/runs/{run_id}", sign_in(client, tokens.all)).text
    assert "<strong>operator action</strong>: <span" in html
    assert "requeue by &lt;script&gt;" in html and '(<a href="/console/actions/7">action #7</a>), requeued' in html
    assert f'new run <a href="/console/runs/{run_id}">' in html


@pytest.mark.parametrize("path", ["/console/dead-letters", "/console/actions", "PREVIEW"])
def test_new_pages_have_no_inline_script_or_style_and_weigh_under_150_kb(client, ops, letters, path):
    cookies = sign_in(client, ops["root"])
    html = preview(client, cookies, queue="jobs").text if path == "PREVIEW" else page(client, path, cookies).text
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", html)
    assert not re.search(r"<[^>]+\sstyle\s*=", html) and "<style" not in html
    total = len(html.encode()) + sum(
        len(client.simulate_get(src.split("?")[0]).content)
        for src in re.findall(r'(?:src|href)="(/console/static/[^"]+)"', html)
    )
    assert total < 150_000
