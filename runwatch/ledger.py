"""Apply run events to the ledger: one statement per batch (``statements.APPLY_EVENTS``).

Validation, dedupe by event id, the fold and the guarded upsert run inside PostgreSQL; this
module only passes the batch in and finishes the rare deltas the guard refused (their run was
terminal already): their terminal events are marked late, their deliveries still counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from . import statements as sql
from . import wire
from .thresholds import ThresholdPolicy


@dataclass
class ApplyResult:
    events_new: int = 0
    events_duplicate: int = 0
    runs_written: int = 0
    late_events: list[str] = field(default_factory=list)


def apply_events(conn: Connection, events: Sequence[dict[str, Any]], policy: ThresholdPolicy) -> ApplyResult:
    """Record ``events`` in the caller's transaction (see ``apply_batch``)."""
    return apply_batch(conn, wire.dumps(list(events)), policy)


def apply_batch(conn: Connection, batch: bytes, policy: ThresholdPolicy) -> ApplyResult:
    """Record the JSON array of events ``batch`` in the caller's transaction.

    Idempotent: an event id already in the log is skipped, so the stream may redeliver. An
    invalid event fails the whole statement with a ``DataError`` (the caller validates and
    rejects it, see ``workers.drainer``).
    """
    row = conn.execute(sql.APPLY_EVENTS, {"batch": batch.decode(), "policy": policy.as_json()}).one()
    result = ApplyResult(row.events_new, row.events - row.events_new, row.runs_written, list(row.late_ids or ()))
    refused = row.refused or ()
    late = {i for r in refused for i in r["terminal_ids"] or ()} - set(result.late_events)
    if late:
        result.late_events.extend(sorted(late))
        conn.execute(sql.MARK_LATE, {"ids": sorted(late)})
    deliveries = [{k: r[k] for k in ("message_id", "deliveries", "attempts")} for r in refused if r["deliveries"]]
    if deliveries:
        conn.execute(sql.COUNT_LATE_DELIVERIES, {"rows": wire.dumps(deliveries).decode()})
    return result
