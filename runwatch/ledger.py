"""Apply run events to the ledger: dedupe, fold, one guarded upsert per batch."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from . import events as ev
from . import statements as sql
from . import wire
from .fold import TERMINAL_KINDS, fold
from .thresholds import ThresholdPolicy

# NOTE: metadata lives on the run row; repeating it in every event row would only cost space.
_EVENT_COLUMNS = frozenset({"id", "kind", "message_id", "at", "meta"})


@dataclass
class ApplyResult:
    events_new: int = 0
    events_duplicate: int = 0
    runs_written: int = 0
    late_events: list[str] = field(default_factory=list)
    #: The runs these events ended (``statements._FINISHED_COLUMNS``), for the run counters in /metrics.
    finished: list[dict[str, Any]] = field(default_factory=list)


def logged(event: dict[str, Any]) -> bool:
    """Whether ``event`` gets a row of its own in ``run_events``.

    PERF: the log keeps one row per transition, not one per event. A plain enqueue leaves no row
    (the run row's creation records it: created_at, queue, Redis id); a delayed, moved or
    requeued one does (an operator's requeue is evidence an SRE looks for in the log). A start
    folded into its outcome (a job shorter than a flush) stays in that outcome's row, as
    ``details.start``. An unlogged enqueue cannot be recognized as a duplicate, which is
    harmless: applying it again changes nothing.
    """
    return (
        event["kind"] != ev.ENQUEUED
        or event.get("delay_ms") is not None
        or "moved_out_of_delay_queue" in event
        or "requeued_from" in event
    )


def apply_events(conn: Connection, events: Sequence[dict[str, Any]], policy: ThresholdPolicy) -> ApplyResult:
    """Record ``events`` (already validated) in the caller's transaction.

    Idempotent: an event id already in the log is skipped, so the stream may redeliver.
    """
    result = ApplyResult()
    if not events:
        return result
    rows = [{**_columns(e), "details": _details(e)} for e in events if logged(e)]
    seen = set(conn.execute(sql.INSERT_EVENTS, {"events": wire.dumps(rows).decode()}).scalars().all()) if rows else ()
    by_message: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event["id"] not in seen:  # NOTE: an unlogged event is never seen: the log is how a duplicate is known
            result.events_new += 1
            by_message[event["message_id"]].extend(_unfold(event))
    result.events_duplicate = len(events) - result.events_new
    if not by_message:
        return result
    deltas = [fold(message_events, policy) for message_events in by_message.values()]
    written = set()
    upserted = conn.execute(sql.UPSERT_RUNS, {"rows": wire.dumps([_wire(d) for d in deltas]).decode()})
    for row in upserted.mappings().all():
        written.add(row["message_id"])
        if row["finished"]:
            result.finished.append(dict(row))
    result.runs_written = len(written)
    late_deliveries = []
    for delta in deltas:
        result.late_events.extend(delta["late_event_ids"])
        if delta["message_id"] not in written:
            # The row was already terminal: every terminal event of this delta came too late.
            result.late_events.extend(e["id"] for e in by_message[delta["message_id"]] if e["kind"] in TERMINAL_KINDS)
            if delta["deliveries"]:
                late_deliveries.append({k: delta[k] for k in ("message_id", "deliveries", "attempts")})
    if late_deliveries:
        conn.execute(sql.COUNT_LATE_DELIVERIES, {"rows": wire.dumps(late_deliveries).decode()})
    if result.late_events:
        conn.execute(sql.MARK_LATE, {"ids": result.late_events})
    return result


def _unfold(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A start the recorder folded into a later event, as an event of its own (for the fold only:
    it is logged inside that event's row)."""
    start = event.get("start")
    if start is not None:
        yield {"id": None, "kind": ev.STARTED, "message_id": event["message_id"], "meta": event["meta"], **start}
    yield event


def _wire(delta: dict[str, Any]) -> dict[str, Any]:
    """A delta as the upsert reads it. PERF: an absent key reads as NULL, and PostgreSQL parses
    about a third less JSON per run without the empty ones (and without the fold's own list)."""
    return {k: v for k, v in delta.items() if v is not None and k != "late_event_ids"}


def _columns(event: dict[str, Any]) -> dict[str, Any]:
    return {"id": event["id"], "kind": event["kind"], "message_id": event["message_id"], "at": event["at"]}


def _details(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in _EVENT_COLUMNS}
