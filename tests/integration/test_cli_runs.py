"""``runwatch runs``: the API's filters and query, plus message id, queue, actor and time, in a terminal."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from runwatch.cli import main
from runwatch.cli_runs import COLUMNS

_INSERT = text("""
INSERT INTO operation_runs (message_id, type, queue_name, actor_name, status, outcome, tenant_id, operator_message,
    queued_stale_seconds, running_stale_seconds, threshold_source, created_at, started_at, completed_at, retry_of,
    reconciled_at, reconciliation_source, reason_code, reason_message, reconciliation_evidence)
VALUES (:message_id, :type, :queue, :actor, :status, :outcome, :tenant, :message, 60, 60, 'default',
    now() - make_interval(secs => :age),
    CASE WHEN CAST(:status AS text) <> 'queued' THEN now() - make_interval(secs => :age) END,
    CASE WHEN CAST(:status AS text) = 'completed' THEN now() - make_interval(secs => :age / 2) END,
    :retry_of,
    CASE WHEN CAST(:reconciled AS boolean) THEN now() END,
    CASE WHEN CAST(:reconciled AS boolean) THEN 'adapter_reconciler' END,
    CASE WHEN CAST(:reconciled AS boolean) THEN 'run.queue_failure_bridge' END,
    CASE WHEN CAST(:reconciled AS boolean) THEN 'dead-lettered' END,
    CASE WHEN CAST(:reconciled AS boolean) THEN CAST('{}' AS jsonb) END)
RETURNING id
""")


def _run(conn, message_id, *, age=30, status="queued", outcome="pending", type="invoices.sync", queue="default",
         actor="sync_invoices", tenant=None, message=None, retry_of=None, reconciled=False):  # fmt: skip
    params = dict(message_id=message_id, age=age, status=status, outcome=outcome, type=type, queue=queue, actor=actor,
                  tenant=tenant, message=message, retry_of=retry_of, reconciled=reconciled)  # fmt: skip
    return conn.execute(_INSERT, params).scalar()


@pytest.fixture
def world(engine, database_url, monkeypatch):
    """Runs on both sides of every filter; ``ids`` by name."""
    monkeypatch.setenv("RUNWATCH_DATABASE_URL", database_url)
    with engine.begin() as conn:
        ids = {
            "fresh": _run(conn, "m-fresh", age=10, tenant=1),
            "stale": _run(conn, "m-stale", age=7200, queue="reports", actor="render", type="reports.render"),
            "done": _run(conn, "m-done", age=600, status="completed", outcome="succeeded", tenant=2),
            "failed": _run(conn, "m-failed", age=3 * 86400, status="completed", outcome="failed", reconciled=True),
        }
        ids["requeue"] = _run(conn, "m-requeue", age=5, retry_of=ids["failed"])
        ids["requeue2"] = _run(conn, "m-requeue2", age=4, retry_of=ids["requeue"])
    return ids


def _listed(capsys, *argv):
    assert main(["runs", "--format", "json", *argv]) == 0
    captured = capsys.readouterr()
    return [json.loads(line)["id"] for line in captured.out.splitlines()]


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], ["requeue2", "requeue", "fresh", "done", "stale", "failed"]),
        (["--status", "completed"], ["done", "failed"]),
        (["--outcome", "pending"], ["requeue2", "requeue", "fresh", "stale"]),
        (["--type", "reports.render"], ["stale"]),
        (["--tenant", "2"], ["done"]),
        (["--freshness", "likely_stale"], ["stale"]),
        (["--freshness", "terminal_normal"], ["done"]),
        (["--reconciled"], ["failed"]),
        (["--source", "adapter_reconciler"], ["failed"]),
        (["--no-reconciled", "--status", "completed"], ["done"]),
        (["--queue", "reports"], ["stale"]),
        (["--actor", "render"], ["stale"]),
        (["--since", "1h"], ["requeue2", "requeue", "fresh", "done"]),
        (["--since", "15m", "--until", "1m"], ["done"]),
        (["--since", "2d", "--status", "queued"], ["requeue2", "requeue", "fresh", "stale"]),
        (["--limit", "2"], ["requeue2", "requeue"]),
    ],
)
def test_filters_match_the_api_s_and_the_operator_s(world, capsys, argv, expected):
    assert _listed(capsys, *argv) == [world[name] for name in expected]


def test_since_takes_an_iso_time(world, capsys):
    moment = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert set(_listed(capsys, "--since", moment)) == {world[n] for n in ("requeue2", "requeue", "fresh", "done")}
    naive = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()  # no zone: UTC
    assert set(_listed(capsys, "--since", naive)) == {world[n] for n in ("requeue2", "requeue", "fresh", "done")}


@pytest.mark.parametrize("message_id", ["m-failed", "m-requeue", "m-requeue2"])
def test_a_message_id_finds_its_run_and_the_requeues_around_it(world, capsys, message_id):
    family = [world["requeue2"], world["requeue"], world["failed"]]
    assert _listed(capsys, "--message-id", message_id) == family
    assert _listed(capsys, "--message-id", "m-fresh") == [world["fresh"]]
    assert _listed(capsys, "--message-id", "no-such-message") == []


def test_json_lines_have_stable_keys_and_utc_times(world, capsys):
    assert main(["runs", "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 6 and all(list(row) == [c.key for c in COLUMNS] for row in rows)
    failed = next(r for r in rows if r["id"] == world["failed"])
    assert failed["reason_code"] == "run.queue_failure_bridge" and failed["reconciled"] is True
    requeue = next(r for r in rows if r["id"] == world["requeue"])
    assert requeue["retry_of"] == world["failed"] and requeue["message_id"] == "m-requeue"
    for key in ("created_at", "started_at", "completed_at"):
        stamp = failed[key]
        assert stamp.endswith("Z") and datetime.fromisoformat(stamp).utcoffset() == timedelta(0)


def test_a_table_in_a_pipe_is_plain_and_shows_times(world, capsys):
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    header, rule, *lines = out.splitlines()
    assert header.split()[:3] == ["id", "created", "completed"] and set(rule) <= {"-", " "}
    assert len(lines) == 6 and all(re.search(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", line) for line in lines)


def test_operator_messages_are_masked_and_cannot_drive_the_terminal(engine, database_url, monkeypatch, capsys):
    monkeypatch.setenv("RUNWATCH_DATABASE_URL", database_url)
    with engine.begin() as conn:
        _run(conn, "m-secret", message="retrying with password=hunter2 \x1b[2J [bold]done[/bold]")
    for fmt in ("table", "json"):
        assert main(["runs", "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert "hunter2" not in out and "password=***" in out
        assert "\x1b" not in out  # a table replaces control characters; JSON escapes them
    assert main(["runs", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["operator_message"].startswith("retrying with password=*** \x1b[2J")


def test_nothing_matching_says_so_and_json_prints_nothing(world, capsys):
    assert main(["runs", "--type", "nope"]) == 0 and capsys.readouterr().out == "(no runs match)\n"
    assert main(["runs", "--type", "nope", "--format", "json"]) == 0 and capsys.readouterr().out == ""


def test_a_full_page_says_more_may_match_on_stderr_for_json(world, capsys):
    assert main(["runs", "--limit", "1", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1 and "--limit reached" in captured.err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--since", "yesterday"], "neither a duration"),
        (["--status", "lost"], "invalid choice"),
        (["--limit", "0"], "at least 1"),
        (["--format", "yaml"], "invalid choice"),
    ],
)
def test_bad_filters_are_usage_errors(world, capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        main(["runs", *argv])
    assert exited.value.code == 2 and message in capsys.readouterr().err
