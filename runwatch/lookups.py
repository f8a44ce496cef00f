"""Small named reads the bridge and the CLI share (the API has its own in ``queries``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, text

_BY_ID = text("SELECT * FROM operation_runs WHERE id = :id")
_STATUS_BY_MESSAGE = text("SELECT message_id, status, id FROM operation_runs WHERE message_id = ANY(:ids)")
_RETRIES_OF = text("SELECT id FROM operation_runs WHERE retry_of = :id ORDER BY id")


def run_by_id(conn: Connection, run_id: int) -> dict[str, Any] | None:
    row = conn.execute(_BY_ID, {"id": run_id}).mappings().first()
    return dict(row) if row else None


def statuses(conn: Connection, message_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
    """message_id -> (status, run id) for the messages that have a run."""
    rows = conn.execute(_STATUS_BY_MESSAGE, {"ids": list(message_ids)})
    return {r.message_id: (r.status, r.id) for r in rows}


def retries_of(conn: Connection, run_id: int) -> list[int]:
    return list(conn.execute(_RETRIES_OF, {"id": run_id}).scalars())
