"""``runwatch heal`` and ``runwatch prune`` print one JSON line per pass, or a table and a summary."""

from __future__ import annotations

import io
import json
import re
import uuid

import pytest
from runwatch.bridge.heal_commands import DECISION_COLUMNS
from sqlalchemy import text

from runwatch.cli import main
from runwatch.variables import VARIABLES

#: Running for 700 s with a 60 s threshold, its worker gone: stale.
_STALE_RUN = text("""
INSERT INTO operation_runs (message_id, type, queue_name, actor_name, status, outcome, created_at, started_at,
    last_progress_at, worker_id, redis_message_id, queued_stale_seconds, running_stale_seconds, threshold_source)
VALUES (:message_id, 't', 'q', 'a', 'running', 'pending', now() - interval '700 seconds',
    now() - interval '700 seconds', now() - interval '700 seconds', 'gone', 'rid-1', 60, 60, 'default')
RETURNING id
""")
_OLD_SUCCESS = text("""
INSERT INTO operation_runs (message_id, type, queue_name, actor_name, status, outcome, created_at, completed_at,
    queued_stale_seconds, running_stale_seconds, threshold_source)
VALUES (:message_id, 't', 'q', 'a', 'completed', 'succeeded', now() - interval '400 days',
    now() - interval '400 days', 60, 60, 'default')
""")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def env(database_url, servers, namespace, monkeypatch):
    for var in VARIABLES:
        monkeypatch.delenv(var.name, raising=False)
    monkeypatch.setenv("RUNWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("RUNWATCH_REDIS_URL", servers.redis_url)
    monkeypatch.setenv("RUNWATCH_EVENT_STREAM", f"{namespace}:events")


def test_a_heal_pass_as_one_json_line(engine, env, namespace, capsys):
    with engine.begin() as conn:
        run_id = conn.execute(_STALE_RUN, {"message_id": uuid.uuid4().hex}).scalar()
    assert main(["heal", "--namespace", namespace, "--once", "--dry-run", "--format", "json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    passed = json.loads(line)
    assert list(passed) == ["locked_out", "dry_run", "candidates", "reconciled", "skipped", "paused", "duration_ms",
                            "decisions"]  # fmt: skip
    assert passed["dry_run"] is True and passed["candidates"] == 1
    (decision,) = passed["decisions"]
    assert list(decision) == [c.key for c in DECISION_COLUMNS] and decision["id"] == run_id
    with engine.connect() as conn:  # a dry run changes nothing
        assert (
            conn.execute(text("SELECT status FROM operation_runs WHERE id = :i"), {"i": run_id}).scalar() == "running"
        )


def test_a_heal_pass_as_a_table_with_a_spinner_on_a_terminal_only(engine, env, namespace, capsys, monkeypatch):
    with engine.begin() as conn:
        run_id = conn.execute(_STALE_RUN, {"message_id": uuid.uuid4().hex}).scalar()
    assert main(["heal", "--namespace", namespace, "--once", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "\x1b" not in captured.out
    header, _, row, summary = captured.out.splitlines()
    assert header.split()[:3] == ["run", "action", "why"] and row.split()[0] == str(run_id)
    assert summary.startswith("heal: 1 stale candidate(s), would reconcile")
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["heal", "--namespace", namespace, "--once", "--dry-run"]) == 0
    assert "heal: pass running" in terminal.getvalue()


def test_explain_as_a_field_value_table(engine, env, namespace, capsys):
    with engine.begin() as conn:
        run_id = conn.execute(_STALE_RUN, {"message_id": uuid.uuid4().hex}).scalar()
    assert main(["heal", "--namespace", namespace, "--explain", str(run_id)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["field", "value"] and re.search(rf"^run +{run_id}$", out, re.M)
    assert "next" in out and "\x1b" not in out


def test_prune_as_one_json_line_and_as_a_table(engine, env, capsys, monkeypatch):
    with engine.begin() as conn:
        conn.execute(_OLD_SUCCESS, {"message_id": uuid.uuid4().hex})
    assert main(["prune", "--dry-run", "--format", "json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    pruned = json.loads(line)
    assert list(pruned) == ["dry_run", "locked_out", "deleted", "by_outcome", "duration_seconds"]
    assert (
        pruned["deleted"] == 1 and {"outcome": "succeeded", "older_than_days": 90, "deleted": 1} in pruned["by_outcome"]
    )
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["prune"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["outcome", "older"] and "\x1b" not in out
    assert out.splitlines()[-1].startswith("prune: deleted 1 run(s)")
    assert "prune" in terminal.getvalue()  # the progress display, on a terminal's stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM operation_runs")).scalar() == 0
