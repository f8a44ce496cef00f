"""Fold a message's events into one row delta, the input of the guarded upsert.

Pure and order-insensitive: the result does not depend on the order events arrive in, only on
their content, so producer and worker events racing each other give the same row.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import events as ev
from .lifecycle import Outcome, Status
from .reasons import CATALOGUE
from .thresholds import ThresholdPolicy

TERMINAL_KINDS = frozenset({ev.COMPLETED, ev.DEAD_LETTERED})
_STAGE = {ev.ENQUEUED: 0, ev.STARTED: 1, ev.PROGRESS: 2, ev.ATTEMPT_FAILED: 3, ev.COMPLETED: 4, ev.DEAD_LETTERED: 4}


def fold(message_events: Iterable[dict[str, Any]], policy: ThresholdPolicy) -> dict[str, Any]:
    """Reduce the events of one message (non-empty) to the columns of ``operation_runs``.

    Times stay epoch seconds (PERF: the upsert converts them with ``to_timestamp``).
    """
    events = sorted(message_events, key=lambda e: (e["at"], _STAGE[e["kind"]]))
    first, meta = events[0], {}
    for event in events:  # metadata: the first value anyone saw wins
        for key, value in event["meta"].items():
            meta.setdefault(key, value) if value is not None else None
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
        "status": Status.QUEUED.value,
        "outcome": Outcome.PENDING.value,
        "deliveries": 0,
        "attempts": 0,
        "summary_counts": {},
    }
    row["late_event_ids"] = []
    for event in events:
        if event.get("redis_message_id"):
            row["redis_message_id"] = event["redis_message_id"]  # the latest delivery's Redis id
            row["redis_message_id_at"] = event["at"]  # ... and when it was seen: newest wins in the ledger
        if row["status"] == Status.COMPLETED.value:
            # NOTE: the first terminal event wins; a later outcome is kept as a late event.
            if event["kind"] in TERMINAL_KINDS:
                row["late_event_ids"].append(event["id"])
            elif event["kind"] == ev.STARTED:  # a duplicate delivery: it happened, so it counts
                _count_delivery(row, event)
            continue
        _APPLY[event["kind"]](row, event)
    return row


def _enqueued(row: dict[str, Any], event: dict[str, Any]) -> None:
    pass  # everything an enqueue says is metadata, already folded


def _started(row: dict[str, Any], event: dict[str, Any]) -> None:
    _advance(row, Status.RUNNING)
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
    _advance(row, Status.RUNNING)
    row["last_progress_at"] = event["at"]
    for key in ("progress_processed", "progress_total", "operator_message"):
        if event.get(key) is not None:
            row[key] = event[key]
    row["summary_counts"].update(event.get("summary") or {})


def _attempt_failed(row: dict[str, Any], event: dict[str, Any]) -> None:
    _outcome_started(row, event)
    _advance(row, Status.RUNNING)
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
    row["status"] = Status.COMPLETED.value
    row["outcome"] = event["outcome"]
    row["completed_at"] = event["at"]
    row["failure_summary"] = event.get("failure_summary") or []
    row["next_retry_at"] = None


def _dead_lettered(row: dict[str, Any], event: dict[str, Any]) -> None:
    _outcome_started(row, event)
    reason = CATALOGUE[event["reason_code"]]
    row["status"] = Status.COMPLETED.value
    row["outcome"] = Outcome.FAILED.value
    row["completed_at"] = row["reconciled_at"] = event["at"]
    row["reconciliation_source"] = reason.source.value
    row["reason_code"] = reason.code
    row["reason_message"] = reason.message
    row["reconciliation_evidence"] = event.get("evidence") or {}
    row["failure_summary"] = event.get("failure_summary") or []
    row["next_retry_at"] = None


def _advance(row: dict[str, Any], status: Status) -> None:
    if row["status"] == Status.QUEUED.value and status == Status.RUNNING:
        row["status"] = status.value


_APPLY = {
    ev.ENQUEUED: _enqueued,
    ev.STARTED: _started,
    ev.PROGRESS: _progress,
    ev.ATTEMPT_FAILED: _attempt_failed,
    ev.COMPLETED: _completed,
    ev.DEAD_LETTERED: _dead_lettered,
}
