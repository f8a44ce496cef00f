"""Retention prunes old terminal runs with their events, in batches, never live runs."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from runwatch.cli import main
from runwatch.errors import ConfigError
from runwatch.retention import prune_once, retention_days
from tests.support.ledger import seed


def _completed(engine, outcome, days):
    """A run completed ``days`` ago, with one event."""
    run_id = seed(engine, "completed", outcome=outcome, completed_days=days)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO run_events (event_uuid, message_id, kind, at) SELECT gen_random_uuid(), "
                "message_id, 'completed', now() FROM operation_runs WHERE id = :i"
            ),
            {"i": run_id},
        )
    return run_id


def _ids(engine):
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT id FROM operation_runs")).scalars())


def test_prune_deletes_only_old_terminal_runs_per_outcome(engine):
    for _ in range(5):
        _completed(engine, "succeeded", 100)
    old_failed = _completed(engine, "failed", 100)
    recent = _completed(engine, "succeeded", 10)
    live = [seed(engine, "queued", age=10**7), seed(engine, "running", age=10**7)]
    days = {**retention_days({}), "failed": 365}

    dry = prune_once(engine, days, dry_run=True)
    assert dry.deleted["succeeded"] == 5 and len(_ids(engine)) == 9
    result = prune_once(engine, days, batch=2)
    assert result.deleted == {"blocked": 0, "failed": 0, "partially_succeeded": 0, "succeeded": 5}
    assert _ids(engine) == {old_failed, recent, *live}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run_events")).scalar() == 2


def test_retention_configuration_is_validated():
    assert retention_days({"RUNWATCH_RETENTION_DAYS": "30", "RUNWATCH_RETENTION_DAYS_FAILED": "400"}) == {
        "blocked": 30,
        "failed": 400,
        "partially_succeeded": 30,
        "succeeded": 30,
    }
    with pytest.raises(ConfigError, match="RUNWATCH_RETENTION_DAYS"):
        retention_days({"RUNWATCH_RETENTION_DAYS": "forever"})


def test_cli_prune_dry_run(engine, database_url, monkeypatch, capsys):
    monkeypatch.setenv("RUNWATCH_DATABASE_URL", database_url)
    run_id = _completed(engine, "blocked", 200)
    assert main(["prune", "--dry-run"]) == 0
    assert "would delete 1 run" in capsys.readouterr().out and run_id in _ids(engine)
    assert main(["prune", "--older-than-days", "0"]) == 2


def test_a_prune_pass_is_recorded_like_every_pass(engine):
    _completed(engine, "succeeded", 100)
    prune_once(engine, retention_days({}))
    prune_once(engine, retention_days({}))
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM maintenance_passes WHERE name = 'prune'")).mappings().one()
    assert row["status"] == "ok" and row["last_success_at"] is not None
    assert row["result"]["deleted_total"] == 0  # the second pass found nothing left
    assert row["totals"]["passes.ok"] == 2 and row["totals"]["duration.count"] == 2


def test_a_dry_run_or_locked_out_prune_is_not_recorded(engine):
    from runwatch import passes

    _completed(engine, "succeeded", 100)
    prune_once(engine, retention_days({}), dry_run=True)
    with passes.locked(engine, passes.PRUNE) as held:
        assert held is not None
        assert prune_once(engine, retention_days({})).locked_out
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM maintenance_passes WHERE name = 'prune'")).scalar() == 0
