"""Run events inserted straight into the ledger with SQL, their time faked in the database."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import text

_EVENT = text("""
INSERT INTO run_events (event_uuid, message_id, kind, at, late, details)
VALUES (:uuid, :message_id, :kind, now() - make_interval(secs => :ago), :late, CAST(:details AS jsonb))
""")


def message_id(engine, run_id: int) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT message_id FROM operation_runs WHERE id = :id"), {"id": run_id}).scalar_one()


def add_event(engine, run_id: int, kind: str, ago: float, *, late: bool = False, **details) -> None:
    with engine.begin() as conn:
        conn.execute(_EVENT, {"uuid": uuid.uuid4(), "message_id": message_id(engine, run_id), "kind": kind,
                              "ago": ago, "late": late, "details": json.dumps(details)})  # fmt: skip
