"""Runs whose message crashed its workers again and again (the poison-pill rule's input), seeded with SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from tests.support.ledger import seed


def crash_loop(
    engine: Any,
    deliveries: int,
    *,
    attempts: int = 1,
    starts_ago_seconds: float = 0,
    message_id: str | None = None,
    **kwargs: Any,
) -> int:
    """A running run delivered ``deliveries`` times (a start event each, ``starts_ago_seconds`` + n s ago)."""
    run_id = seed(engine, "running", age=5, worker_id="w-crashed", **kwargs)
    if message_id is not None:
        set_message_id(engine, run_id, message_id)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE operation_runs SET deliveries = :d, attempts = :a WHERE id = :i"),
            {"d": deliveries, "a": attempts, "i": run_id},
        )
        conn.execute(
            text(
                "INSERT INTO run_events (event_uuid, message_id, kind, at, details) "
                "SELECT gen_random_uuid(), message_id, 'started', now() - make_interval(secs => :ago + n), "
                "jsonb_build_object('attempt', 1, 'worker_id', 'w' || n) "
                "FROM operation_runs, generate_series(1, :d) AS n WHERE id = :i"
            ),
            {"d": deliveries, "i": run_id, "ago": starts_ago_seconds},
        )
    return run_id


def message_id_of(engine: Any, run_id: int) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT message_id FROM operation_runs WHERE id = :i"), {"i": run_id}).scalar_one()


def set_message_id(engine: Any, run_id: int, message_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE operation_runs SET message_id = :m WHERE id = :i"), {"m": message_id, "i": run_id})
