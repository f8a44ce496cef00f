"""The JSON schemas of the console's endpoints (dead letters, operator actions, maintenance passes).

The request schemas state exactly what ``selection`` accepts, so generated valid input is always
accepted and anything else is a 400.
"""

from __future__ import annotations

from typing import Any

from runwatch.actions import KINDS, STATUSES
from runwatch.queries import MAX_BIGINT

from .openapi_schemas import REF, TEXT, nullable
from .selection import MAX_AGE_SECONDS, MAX_IDS

AGE = {"type": "integer", "minimum": 0, "maximum": MAX_AGE_SECONDS}
FILTER_DOCS = {
    "queue": "Queue name, exact match.",
    "actor": "Actor name, exact match.",
    "exception_type": "Exception class name (e.g. `TimeoutError`), exact match.",
    "tenant_id": "Tenant; narrows within the token's scope, never widens it.",
    "min_age_seconds": "Dead at least this many seconds.",
    "max_age_seconds": "Dead at most this many seconds.",
}

SCHEMAS: dict[str, Any] = {
    "DeadLetter": {
        "type": "object",
        "description": "A dead letter as the bridge mirrors it from the broker: no payload, no arguments.",
        "required": ["id", "queue_name", "redis_message_id", "dead_at", "age_seconds"],
        "properties": {
            "id": {"type": "integer", "description": "The letter's id in the mirror (use it in a selection)."},
            "queue_name": {"type": "string"},
            "redis_message_id": {"type": "string"},
            "message_id": nullable("string", description="Null when the payload cannot be decoded."),
            "actor_name": nullable("string"),
            "exception_type": nullable("string"),
            "exception_message": nullable("string", description="Redacted, one line, capped."),
            "decode_error": nullable("string", description="Why the payload could not be decoded (redacted)."),
            "dead_at": {"type": "string", "format": "date-time"},
            "age_seconds": {"type": "number"},
            "tenant_id": nullable("integer"),
            "run_id": nullable("integer", description="The operation run of the letter's message."),
        },
    },
    "DeadLetterPage": {
        "type": "object",
        "required": ["data", "links"],
        "properties": {
            "data": {"type": "array", "items": {"$ref": REF + "DeadLetter"}},
            "links": {"type": "object", "required": ["next"], "properties": {"next": nullable("string")}},
        },
    },
    "DeadLetterGroup": {
        "type": "object",
        "required": ["queue_name", "count", "oldest_dead_at", "newest_dead_at"],
        "properties": {
            "queue_name": {"type": "string"},
            "actor_name": nullable("string"),
            "exception_type": nullable("string"),
            "count": {"type": "integer"},
            "oldest_dead_at": {"type": "string", "format": "date-time"},
            "newest_dead_at": {"type": "string", "format": "date-time"},
            "oldest_age_seconds": {"type": "number"},
            "newest_age_seconds": {"type": "number"},
        },
    },
    "DeadLetterFilter": {
        "type": "object",
        "additionalProperties": False,
        "description": "Letters matching every given member (an empty filter: every letter the token sees).",
        "properties": {
            "queue": TEXT,
            "actor": TEXT,
            "exception_type": TEXT,
            "tenant_id": {"type": "integer", "minimum": 1, "maximum": MAX_BIGINT},
            "min_age_seconds": AGE,
            "max_age_seconds": AGE,
        },
    },
    "DeadLetterSelection": {
        "type": "object",
        "description": "Exactly one of `ids` (letters by their mirror id) or `filter`. Letters outside the token's "
        "tenants are never selected.",
        "additionalProperties": False,
        "minProperties": 1,
        "maxProperties": 1,
        "properties": {
            "ids": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_IDS,
                "items": {"type": "integer", "minimum": 1, "maximum": MAX_BIGINT},
            },
            "filter": {"$ref": REF + "DeadLetterFilter"},
        },
    },
    "DeadLetterPreview": {
        "type": "object",
        "required": ["matched", "data"],
        "properties": {
            "matched": {"type": "integer", "description": "Letters the selection matches now, in the token's scope."},
            "data": {"type": "array", "items": {"$ref": REF + "DeadLetter"}, "description": "The newest 20."},
        },
    },
    "OperatorAction": {
        "type": "object",
        "required": ["id", "kind", "status", "requested_by", "selection", "counts", "requested_at"],
        "properties": {
            "id": {"type": "integer"},
            "kind": {"type": "string", "enum": list(KINDS)},
            "status": {"type": "string", "enum": list(STATUSES)},
            "requested_by": {
                "type": "object",
                "required": ["token_id", "token_name"],
                "properties": {"token_id": {"type": "integer"}, "token_name": {"type": "string"}},
            },
            "tenant_ids": {
                "type": ["array", "null"],
                "items": {"type": "integer"},
                "description": "The requesting token's tenants (null: all tenants).",
            },
            "selection": {"type": "object", "description": "The selection as requested."},
            "counts": {
                "type": "object",
                "required": ["matched", "done", "skipped"],
                "properties": {
                    "matched": {"type": "integer", "description": "Letters selected when the action was requested."},
                    "done": {"type": "integer", "description": "Requeued or purged."},
                    "skipped": {"type": "integer", "description": "Gone from the broker before the bridge acted."},
                },
            },
            "requested_at": {"type": "string", "format": "date-time"},
            "started_at": nullable("string", format="date-time"),
            "finished_at": nullable("string", format="date-time"),
            "error": nullable("string"),
        },
    },
    "OperatorActionItem": {
        "type": "object",
        "required": ["position", "queue_name", "redis_message_id"],
        "properties": {
            "position": {"type": "integer"},
            "queue_name": {"type": "string"},
            "redis_message_id": {"type": "string"},
            "message_id": nullable("string"),
            "run_id": nullable("integer"),
            "tenant_id": nullable("integer"),
            "result": {"type": ["string", "null"], "enum": ["requeued", "purged", "skipped", None]},
            "new_run_id": nullable("integer", description="The run a requeue created."),
            "note": nullable("string"),
            "finished_at": nullable("string", format="date-time"),
        },
    },
    "OperatorActionDetail": {
        "allOf": [
            {"$ref": REF + "OperatorAction"},
            {
                "type": "object",
                "required": ["items", "items_truncated"],
                "properties": {
                    "items": {"type": "array", "items": {"$ref": REF + "OperatorActionItem"}},
                    "items_truncated": {"type": "boolean", "description": "More than 200 letters: the first 200."},
                },
            },
        ]
    },
    "OperatorActionPage": {
        "type": "object",
        "required": ["data", "links"],
        "properties": {
            "data": {"type": "array", "items": {"$ref": REF + "OperatorAction"}},
            "links": {"type": "object", "required": ["next"], "properties": {"next": nullable("string")}},
        },
    },
    "MaintenancePass": {
        "type": "object",
        "required": ["name", "finished_at", "age_seconds", "duration_ms", "result"],
        "properties": {
            "name": {"type": "string"},
            "finished_at": {"type": "string", "format": "date-time"},
            "age_seconds": {"type": "number"},
            "duration_ms": {"type": "number"},
            "result": {"type": "object", "additionalProperties": {"type": "number"}},
        },
    },
}
