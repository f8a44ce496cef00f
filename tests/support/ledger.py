"""Runs inserted straight into the ledger with SQL, their age faked in the database, and read back."""

from __future__ import annotations

import uuid

from sqlalchemy import text

INSERT = text("""
INSERT INTO operation_runs (message_id, type, queue_name, actor_name, status, outcome, tenant_id, created_at,
    started_at, last_progress_at, completed_at, worker_id, redis_message_id, time_limit_ms,
    queued_stale_seconds, running_stale_seconds, threshold_source)
VALUES (:message_id, :type, 'q', 'a', :status, :outcome, :tenant_id, now() - make_interval(secs => :age),
    CASE WHEN :status <> 'queued' THEN now() - make_interval(secs => :age) END,
    CASE WHEN :status <> 'queued' THEN now() - make_interval(secs => :age) END,
    CASE WHEN :status = 'completed' THEN now() - make_interval(days => :completed_days) END,
    :worker_id, :rid, :time_limit_ms, 60, 60, 'default')
RETURNING id
""")


def seed(
    engine,
    status="queued",
    *,
    age=120,
    outcome="pending",
    type_="t",
    tenant_id=None,
    worker_id=None,
    rid=None,
    time_limit_ms=None,
    completed_days=0,
):
    with engine.begin() as conn:
        return conn.execute(
            INSERT,
            {
                "message_id": uuid.uuid4().hex,
                "type": type_,
                "status": status,
                "outcome": outcome,
                "tenant_id": tenant_id,
                "age": age,
                "worker_id": worker_id,
                "rid": rid,
                "time_limit_ms": time_limit_ms,
                "completed_days": completed_days,
            },
        ).scalar()


def row(engine, run_id):
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM operation_runs WHERE id = :i"), {"i": run_id}).mappings().one())
