"""Small named reads the bridge and the CLI share (the API has its own in ``queries``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, text

_BY_ID = text("SELECT * FROM operation_runs WHERE id = :id")
_STATUS_BY_MESSAGE = text("SELECT message_id, status, id FROM operation_runs WHERE message_id = ANY(:ids)")
_RETRIES_OF = text("SELECT id FROM operation_runs WHERE retry_of = :id ORDER BY id")
_RECORD_PASS = text("""
INSERT INTO maintenance_passes (name, started_at, finished_at, duration_ms, result)
VALUES (:name, to_timestamp(:started), now(), :duration_ms, CAST(:result AS jsonb))
ON CONFLICT (name) DO UPDATE SET started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at,
    duration_ms = EXCLUDED.duration_ms, result = EXCLUDED.result
""")
_LAST_PASS = text("SELECT * FROM maintenance_passes WHERE name = :name")


def run_by_id(conn: Connection, run_id: int) -> dict[str, Any] | None:
    row = conn.execute(_BY_ID, {"id": run_id}).mappings().first()
    return dict(row) if row else None


def statuses(conn: Connection, message_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
    """message_id -> (status, run id) for the messages that have a run."""
    rows = conn.execute(_STATUS_BY_MESSAGE, {"ids": list(message_ids)})
    return {r.message_id: (r.status, r.id) for r in rows}


def retries_of(conn: Connection, run_id: int) -> list[int]:
    return list(conn.execute(_RETRIES_OF, {"id": run_id}).scalars())


def record_pass(conn: Connection, name: str, *, started: float, duration_ms: float, result: dict[str, Any]) -> None:
    conn.execute(
        _RECORD_PASS,
        {"name": name, "started": started, "duration_ms": duration_ms, "result": json.dumps(result, default=str)},
    )


def last_pass(conn: Connection, name: str) -> dict[str, Any] | None:
    row = conn.execute(_LAST_PASS, {"name": name}).mappings().first()
    return dict(row) if row else None
