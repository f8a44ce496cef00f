"""The schemas of the API's own OpenAPI document: operation runs, their events and diagnostics, problems.

``openapi.document()`` serves them under ``components/schemas`` with the console's
(``console_schemas``); the paths refer to them as ``REF + name``. ``nullable`` and ``TEXT`` are
the field shapes both sets share.
"""

from __future__ import annotations

from typing import Any

from .params import FRESHNESS_STATES, MAX_TEXT_CHARS, OUTCOMES, SOURCES, STATUSES

REF = "#/components/schemas/"
#: A free-text filter: what ``params.text_value`` accepts (no NUL, at most MAX_TEXT_CHARS).
TEXT = {"type": "string", "maxLength": MAX_TEXT_CHARS, "pattern": "^[^\\u0000]*$"}


def nullable(type_: str, **extra: Any) -> dict[str, Any]:
    """A 3.1 nullable field: the contract's ``nullable: true`` written as ``[T, "null"]``."""
    return {"type": [type_, "null"], **extra}


_EVENT = {
    "type": "object",
    "required": ["id", "kind", "at", "recorded_at", "late", "details"],
    "properties": {
        "id": {"type": "integer"},
        "kind": {"type": "string"},
        "at": {"type": "string", "format": "date-time"},
        "recorded_at": {"type": "string", "format": "date-time"},
        "late": {"type": "boolean", "description": "Arrived after the run was terminal; recorded, never applied."},
        "details": {"type": "object", "additionalProperties": True},
    },
}

_DIAGNOSTICS = {
    "type": "object",
    "description": "Secondary lifecycle evidence shown only when diagnostics are revealed.",
    "required": [
        "threshold_seconds",
        "threshold_source",
        "attempts",
        "deliveries",
        "evidence",
        "late_outcomes",
        "events",
    ],
    "properties": {
        "threshold_seconds": {"type": "integer", "description": "Queued threshold while queued, else running."},
        "threshold_source": {"type": "string"},
        "stale_at": nullable("string", format="date-time"),
        "attempts": {"type": "integer"},
        "deliveries": {"type": "integer"},
        "max_retries": nullable("integer"),
        "time_limit_ms": nullable("integer"),
        "last_error": {"description": "The last failed attempt's error (sanitized), or null."},
        "next_retry_at": nullable("string", format="date-time"),
        "worker_id": nullable("string"),
        "last_progress_at": nullable("string", format="date-time"),
        "progress": {
            "type": "object",
            "properties": {"processed": nullable("number"), "total": nullable("number")},
        },
        "message_id": {"type": "string"},
        "queue_name": {"type": "string"},
        "actor_name": {"type": "string"},
        "retry_of": nullable("integer"),
        "evidence": {"type": "object", "additionalProperties": True},
        "healer": {
            "type": "object",
            "description": "What the healer found when it last looked at this run (why not healed yet).",
            "properties": {
                "checked_at": nullable("string", format="date-time"),
                "last_found": {"description": "The healer's evidence and verdict (why, note), or null."},
            },
        },
        "late_outcomes": {"type": "array", "items": {"$ref": REF + "RunEvent"}},
        "events": {"type": "array", "items": {"$ref": REF + "RunEvent"}, "description": "Newest 200, oldest first."},
        "events_truncated": {"type": "boolean"},
    },
}

SCHEMAS: dict[str, Any] = {
    "OperationRunListItem": {
        "type": "object",
        "required": ["id", "type", "status", "outcome", "freshness_state", "reconciled", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "type": {"type": "string"},
            "type_label": {"type": "string"},
            "status": {"type": "string", "enum": list(STATUSES)},
            "outcome": {"type": "string", "enum": list(OUTCOMES)},
            "freshness_state": {"type": "string", "enum": list(FRESHNESS_STATES)},
            "reconciled": {"type": "boolean"},
            "tenant_id": nullable("integer"),
            "initiator_name": nullable("string"),
            "operator_message": {
                "type": "string",
                "description": "Operator-safe summary line shown by default on Monitoring surfaces.",
            },
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": nullable("string", format="date-time"),
            "completed_at": nullable("string", format="date-time"),
        },
    },
    "OperationRunDetail": {
        "allOf": [
            {"$ref": REF + "OperationRunListItem"},
            {
                "type": "object",
                "properties": {
                    "summary_counts": {"type": "object", "additionalProperties": {"type": "number"}},
                    "failure_summary": {"type": "array", "items": {"$ref": REF + "FailureSummaryItem"}},
                    "reconciliation": {"$ref": REF + "ReconciliationRecord"},
                    "diagnostics": {"$ref": REF + "Diagnostics"},
                },
            },
        ]
    },
    "FailureSummaryItem": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
    },
    "ReconciliationRecord": {
        "type": ["object", "null"],
        "description": "Null when the run was not reconciled.",
        "properties": {
            "reconciled_at": {"type": "string", "format": "date-time"},
            "source": {"type": "string", "enum": list(SOURCES)},
            "reason_code": {"type": "string"},
            "reason_message": {"type": "string"},
            "evidence": {"type": "object", "additionalProperties": True},
        },
    },
    "Diagnostics": _DIAGNOSTICS,
    "RunEvent": _EVENT,
    "OperationRunPage": {
        "type": "object",
        "required": ["data", "links"],
        "properties": {
            "data": {"type": "array", "items": {"$ref": REF + "OperationRunListItem"}},
            "links": {
                "type": "object",
                "required": ["next"],
                "properties": {"next": nullable("string", description="URL of the next (older) page, or null.")},
            },
        },
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "parameter": {"type": "string", "description": "The parameter at fault (400 only)."},
            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
}
