"""Rows of ``runwatch.queries`` in the JSON shapes of the contract (and its compatible extensions)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

#: Evidence keys that hold tracebacks: diagnostics, served only with ``?include=diagnostics``.
TRACEBACK_KEYS = frozenset({"traceback", "last_enqueued_traceback_tail"})


def rfc3339(value: datetime | None) -> str | None:
    """UTC, ``Z`` suffix, microseconds only when there are any: RFC 3339 with a time zone."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def list_item(row: dict[str, Any]) -> dict[str, Any]:
    """An ``OperationRunListItem`` (its timestamps arrive as RFC 3339 text from the query)."""
    return {
        "id": row["id"],
        "type": row["type"],
        # NOTE: the contract types these as plain strings; the type name is the natural label.
        "type_label": row["type_label"] if row["type_label"] is not None else row["type"],
        "status": row["status"],
        "outcome": row["outcome"],
        "freshness_state": row["freshness_state"],
        "reconciled": row["reconciled"],
        "tenant_id": row["tenant_id"],
        "initiator_name": row["initiator_name"],
        "operator_message": row["operator_message"] or "",
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "completed_at": row["completed_at"],
    }


def detail(row: dict[str, Any]) -> dict[str, Any]:
    """An ``OperationRunDetail`` without diagnostics."""
    body = list_item(row)
    body["summary_counts"] = row["summary_counts"]
    body["failure_summary"] = [
        {"code": str(f.get("code", "")), "message": str(f.get("message", ""))}
        for f in row["failure_summary"]
        if isinstance(f, dict)
    ]
    body["reconciliation"] = (
        None
        if row["reconciled_at"] is None
        else {
            "reconciled_at": row["reconciled_at"],
            "source": row["reconciliation_source"],
            "reason_code": row["reason_code"],
            "reason_message": row["reason_message"],
            "evidence": default_evidence(row["reconciliation_evidence"]),
        }
    )
    return body


def default_evidence(evidence: Any) -> Any:
    """What an operator needs to act on (exception type, masked message, where, digest, keys), no traceback."""
    # APPSEC: a traceback shows code and data around the failure; it is secondary evidence
    # (docs/design.md §8), revealed only with diagnostics.
    if isinstance(evidence, dict):
        return {k: default_evidence(v) for k, v in evidence.items() if k not in TRACEBACK_KEYS}
    if isinstance(evidence, list):
        return [default_evidence(v) for v in evidence]
    return evidence


def event(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "at": rfc3339(row["at"]),
        "recorded_at": rfc3339(row["recorded_at"]),
        "late": row.get("late", True),
        "details": row["details"],
    }


def diagnostics(
    row: dict[str, Any], events: list[dict[str, Any]], events_truncated: bool, late: list[dict[str, Any]]
) -> dict[str, Any]:
    """Secondary lifecycle evidence, shown only with ``?include=diagnostics``."""
    return {
        "threshold_seconds": row["threshold_seconds"],
        "threshold_source": row["threshold_source"],
        "stale_at": rfc3339(row["stale_at"]),
        "attempts": row["attempts"],
        "deliveries": row["deliveries"],
        "max_retries": row["max_retries"],
        "time_limit_ms": row["time_limit_ms"],
        "last_error": row["last_error"],
        "next_retry_at": rfc3339(row["next_retry_at"]),
        "worker_id": row["worker_id"],
        "last_progress_at": rfc3339(row["last_progress_at"]),
        "progress": {"processed": row["progress_processed"], "total": row["progress_total"]},
        "message_id": row["message_id"],
        "queue_name": row["queue_name"],
        "actor_name": row["actor_name"],
        "retry_of": row["retry_of"],
        "evidence": row["reconciliation_evidence"] or {},
        # "Why not healed yet": what the healer found the last time it looked at this run.
        "healer": {"checked_at": rfc3339(row["healer_checked_at"]), "last_found": row["healer_note"]},
        "late_outcomes": [event(e) for e in late],
        "events": [event(e) for e in events],
        "events_truncated": events_truncated,
    }
