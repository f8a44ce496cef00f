"""Fold a message's events into one row delta, the input of the guarded upsert.

Pure and order-insensitive: the result does not depend on the order events arrive in, only on
their content, so producer and worker events racing each other give the same row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import events as ev
from .lifecycle import Outcome, Status
from .reasons import CATALOGUE
from .thresholds import ThresholdPolicy

TERMINAL_KINDS = frozenset({ev.COMPLETED, ev.DEAD_LETTERED})
# PERF: plain strings; an enum member's .value is a property call, on every event.
_QUEUED, _RUNNING, _COMPLETED = Status.QUEUED.value, Status.RUNNING.value, Status.COMPLETED.value
_PENDING, _FAILED = Outcome.PENDING.value, Outcome.FAILED.value
_STAGE = {ev.ENQUEUED: 0, ev.STARTED: 1, ev.PROGRESS: 2, ev.ATTEMPT_FAILED: 3, ev.COMPLETED: 4, ev.DEAD_LETTERED: 4}


def _order(event: dict[str, Any]) -> tuple[float, int]:
    return event["at"], _STAGE[event["kind"]]


def fold(message_events: Sequence[dict[str, Any]], policy: ThresholdPolicy) -> dict[str, Any]:
    """Reduce the events of one message (non-empty) to the columns of ``operation_runs``.

    Times stay epoch seconds (PERF: the upsert converts them with ``to_timestamp``).
    """
    events = sorted(message_events, key=_order) if len(message_events) > 1 else message_events
    first = events[0]
    meta = {k: v for k, v in first["meta"].items() if v is not None}
    for event in events[1:]:  # metadata: the first value anyone saw wins
        if event["meta"] is not first["meta"]:
            for key, value in event["meta"].items():
                if value is not None and key not in meta:
                    meta[key] = value
    thresholds = policy.resolve(
        meta["type"],
        queued_override=meta.get("queued_stale_seconds"),
        running_override=meta.get("running_stale_seconds"),
    )
    row: dict[str, Any] = {
        "message_id": first["message_id"],
        "queue_name": meta["queue"],
        "actor_name": meta["actor"],
        "type": meta["type"],
        "type_label": meta.get("label"),
        "tenant_id": meta.get("tenant_id"),
        "initiator_name": meta.get("initiator"),
        "created_at": meta["created_at"],
        "max_retries": meta.get("max_retries"),
        "time_limit_ms": meta.get("time_limit_ms"),
        "retry_of": meta.get("retry_of"),
        "args": meta.get("args"),
        "queued_stale_seconds": thresholds.queued_stale_seconds,
        "running_stale_seconds": thresholds.running_stale_seconds,
        "threshold_source": thresholds.source,
        "status": _QUEUED,
        "outcome": _PENDING,
        "deliveries": 0,
        "attempts": 0,
        "summary_counts": {},
    }
    row["late_event_ids"] = []
    for event in events:
        if event.get("redis_message_id"):
            row["redis_message_id"] = event["redis_message_id"]  # the latest delivery's Redis id
            row["redis_message_id_at"] = event["at"]  # ... and when it was seen: newest wins in the ledger
        if row["status"] == _COMPLETED:
            # NOTE: the first terminal event wins; a later outcome is kept as a late event.
            if event["kind"] in TERMINAL_KINDS:
                row["late_event_ids"].append(event["id"])
            elif event["kind"] == ev.STARTED:  # a duplicate delivery: it happened, so it counts
                _count_delivery(row, event)
            continue
        _APPLY[event["kind"]](row, event)
    return row


def _enqueued(row: dict[str, Any], event: dict[str, Any]) -> None:
    # Everything else an enqueue says is metadata, already folded. A delayed send waits as asked:
    # its eta starts the queued deadline (migration 0010), as a retry's starts the running one.
    delay_ms = event.get("delay_ms")
    if delay_ms and row["status"] == _QUEUED:
        row["next_retry_at"] = event["at"] + delay_ms / 1000


def _started(row: dict[str, Any], event: dict[str, Any]) -> None:
    _advance(row)
    at = event["at"]
    row["started_at"] = row.get("started_at") or at
    _count_delivery(row, event)
    row["worker_id"] = event.get("worker_id")
    row["last_progress_at"] = at
    row["next_retry_at"] = None


def _count_delivery(row: dict[str, Any], event: dict[str, Any]) -> None:
    row["deliveries"] += 1
    row["attempts"] = max(row["attempts"], event.get("attempt", 1))


def _progress(row: dict[str, Any], event: dict[str, Any]) -> None:
    _advance(row)
    row["last_progress_at"] = event["at"]
    for key in ("progress_processed", "progress_total", "operator_message"):
        if event.get(key) is not None:
            row[key] = event[key]
    row["summary_counts"].update(event.get("summary") or {})


def _attempt_failed(row: dict[str, Any], event: dict[str, Any]) -> None:
    _outcome_started(row, event)
    _advance(row)
    row["attempts"] = max(row["attempts"], event.get("attempt", 1))
    row["last_error"] = event.get("error")
    row["next_retry_at"] = event.get("next_retry_at")
    row["last_progress_at"] = event["at"]


def _outcome_started(row: dict[str, Any], event: dict[str, Any]) -> None:
    """An outcome says when its delivery started, so it can land before its start event does."""
    if event.get("started_at") is not None and not row.get("started_at"):
        row["started_at"] = event["started_at"]


def _completed(row: dict[str, Any], event: dict[str, Any]) -> None:
    _outcome_started(row, event)
    _progress(row, event)
    row["status"] = _COMPLETED
    row["outcome"] = event["outcome"]
    row["completed_at"] = event["at"]
    row["failure_summary"] = event.get("failure_summary") or []
    row["next_retry_at"] = None


def _dead_lettered(row: dict[str, Any], event: dict[str, Any]) -> None:
    _outcome_started(row, event)
    reason = CATALOGUE[event["reason_code"]]
    row["status"] = _COMPLETED
    row["outcome"] = _FAILED
    row["completed_at"] = row["reconciled_at"] = event["at"]
    row["reconciliation_source"] = reason.source.value
    row["reason_code"] = reason.code
    row["reason_message"] = reason.message
    row["reconciliation_evidence"] = event.get("evidence") or {}
    row["failure_summary"] = event.get("failure_summary") or []
    row["next_retry_at"] = None


def _advance(row: dict[str, Any]) -> None:
    if row["status"] == _QUEUED:
        row["status"] = _RUNNING


_APPLY = {
    ev.ENQUEUED: _enqueued,
    ev.STARTED: _started,
    ev.PROGRESS: _progress,
    ev.ATTEMPT_FAILED: _attempt_failed,
    ev.COMPLETED: _completed,
    ev.DEAD_LETTERED: _dead_lettered,
}
