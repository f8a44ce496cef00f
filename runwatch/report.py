"""Runs as operators read them: the freshness rule in SQL, the CLI's extra columns, the demo's table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

#: The freshness rule in SQL, the twin of ``lifecycle.freshness`` (same database clock as the healer).
FRESHNESS_SQL = """
CASE WHEN status = 'completed' AND reconciled_at IS NOT NULL AND outcome = 'failed' THEN 'reconciled_failed'
     WHEN status = 'completed' THEN 'terminal_normal'
     WHEN stale_at <= now() THEN 'likely_stale'
     ELSE 'fresh_active' END
"""

#: What an operator's listing adds to the API's list columns (``runwatch runs``): where a run came from.
OPERATOR_COLUMNS = """
message_id, queue_name, actor_name, attempts, retry_of, reconciliation_source, reason_code
"""

_RECENT = f"""
SELECT id, type, status, outcome, {FRESHNESS_SQL} AS freshness, tenant_id, attempts, deliveries,
       reconciliation_source, reason_code, operator_message
FROM operation_runs {{where}} ORDER BY created_at DESC, id DESC LIMIT :limit
"""

COLUMNS = ("id", "type", "status", "outcome", "freshness", "tenant_id", "attempts", "source / reason / message")


def recent_runs(conn: Connection, *, limit: int = 30, message_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The newest runs, optionally only those of ``message_ids``."""
    where = "" if message_ids is None else "WHERE message_id = ANY(:ids)"
    params = {"limit": limit, "ids": list(message_ids or ())}
    return [dict(row) for row in conn.execute(text(_RECENT.format(where=where)), params).mappings()]


def format_runs(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "(no runs recorded yet)"
    table = [COLUMNS]
    for row in reversed(rows):
        note = " ".join(filter(None, (row["reconciliation_source"], row["reason_code"]))) or (
            row["operator_message"] or ""
        )
        table.append(
            (
                str(row["id"]),
                row["type"],
                row["status"],
                row["outcome"],
                row["freshness"],
                "-" if row["tenant_id"] is None else str(row["tenant_id"]),
                str(row["attempts"]),
                note[:60],
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
