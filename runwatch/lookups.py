"""Small named reads the bridge, the healer, the console and the CLI share (the API's lists are in ``queries``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, text

_BY_ID = text("SELECT * FROM operation_runs WHERE id = :id")
_STATUS_BY_MESSAGE = text("SELECT message_id, status, id FROM operation_runs WHERE message_id = ANY(:ids)")
_RETRIES_OF = text("SELECT id FROM operation_runs WHERE retry_of = :id ORDER BY id")
#: What became of each message's run: its reason code, else ``status/outcome``.
_REASONS = text("""
SELECT message_id, coalesce(reason_code, status || '/' || outcome) FROM operation_runs WHERE message_id = ANY(:ids)
""")
#: The database's clock: every deadline is judged by it, never by a host's.
_NOW = text("SELECT now()")
#: Seconds from ``t`` to the database's now.
_SECONDS_SINCE = text("SELECT extract(epoch FROM now() - :t)")


def run_by_id(conn: Connection, run_id: int) -> dict[str, Any] | None:
    row = conn.execute(_BY_ID, {"id": run_id}).mappings().first()
    return dict(row) if row else None


def statuses(conn: Connection, message_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
    """message_id -> (status, run id) for the messages that have a run."""
    rows = conn.execute(_STATUS_BY_MESSAGE, {"ids": list(message_ids)})
    return {r.message_id: (r.status, r.id) for r in rows}


def completed(conn: Connection, message_ids: Iterable[str]) -> int:
    """How many of the messages' runs are completed."""
    return sum(status == "completed" for status, _ in statuses(conn, message_ids).values())


def retries_of(conn: Connection, run_id: int) -> list[int]:
    return list(conn.execute(_RETRIES_OF, {"id": run_id}).scalars())


def reasons(conn: Connection, message_ids: Iterable[str]) -> dict[str, str]:
    """message_id -> reason code (or ``status/outcome``) for the messages that have a run."""
    return {m: reason for m, reason in conn.execute(_REASONS, {"ids": list(message_ids)})}


def db_now(conn: Connection) -> Any:
    return conn.execute(_NOW).scalar_one()


def seconds_since(conn: Connection, t: Any) -> float:
    return float(conn.execute(_SECONDS_SINCE, {"t": t}).scalar_one())
