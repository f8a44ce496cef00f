"""The OpenAPI paths and schemas of the dead-letter, operator-action and maintenance endpoints.

``openapi.document()`` merges these into the served document, with its own shared error responses
(passed in, so this module imports nothing of ``openapi`` and no cycle exists). The request body
schemas state exactly what ``selection`` accepts, so generated valid input is always accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runwatch.actions import KINDS, STATUSES

from .console_schemas import AGE, FILTER_DOCS, SCHEMAS
from .openapi_schemas import REF, TEXT
from .params import DEFAULT_LIMIT, MAX_LIMIT

__all__ = ["SCHEMAS", "paths"]


def _json(schema_name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF + schema_name}}}


def _ok(description: str, schema_name: str) -> dict[str, Any]:
    return {"200": {"description": description, "content": _json(schema_name)}}


def _data_of(description: str, schema_name: str) -> dict[str, Any]:
    """A 200 whose body is ``{"data": [<schema_name>, ...]}``."""
    items = {"type": "array", "items": {"$ref": REF + schema_name}}
    schema = {"type": "object", "required": ["data"], "properties": {"data": items}}
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


def paths(
    *,
    errors: dict[str, Any],
    error: Callable[[str], dict[str, Any]],
    query: Callable[[str, dict[str, Any], str], dict[str, Any]],
) -> dict[str, Any]:
    """The console's paths, with the document's shared ``errors`` and its helpers."""
    limit = query(
        "limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}, "Page size."
    )
    cursor = query("cursor", {"type": "string"}, "Opaque cursor from links.next; only valid with the same filters.")
    filters = [
        query(name, TEXT if name in ("queue", "actor", "exception_type") else AGE, doc)
        for name, doc in FILTER_DOCS.items()
        if name != "tenant_id"
    ] + [query("tenant_id", {"type": "integer"}, FILTER_DOCS["tenant_id"])]
    body = {"required": True, "content": _json("DeadLetterSelection")}
    key = {
        "in": "header",
        "name": "Idempotency-Key",
        "required": True,
        "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,200}$"},
        "description": "Names this request: a repeat with the same key returns the same action, never a second.",
    }
    forbidden = {"403": error("The token is a viewer; requeue and purge need an operator token")}

    def act(kind: str, what: str) -> dict[str, Any]:
        return {
            "post": {
                "summary": f"Ask the bridge to {what} the selected dead letters (operator token)",
                "operationId": f"{kind}DeadLetters",
                "description": "Writes a pending operator action with the letters the selection matches now, in the "
                "token's scope; the bridge executes it. Letters gone by then are counted as skipped.",
                "parameters": [key],
                "requestBody": body,
                "responses": {
                    "202": {"description": "Action requested", "content": _json("OperatorAction")},
                    **_ok("This Idempotency-Key's action, unchanged", "OperatorAction"),
                    "409": error("The Idempotency-Key was used with a different request"),
                    **forbidden,
                    **errors,
                },
            }
        }

    return {
        "/api/admin/dead-letters": {
            "get": {
                "summary": "List dead letters (the bridge's mirror of the broker), newest first",
                "operationId": "listDeadLetters",
                "parameters": [*filters, limit, cursor],
                "responses": {**_ok("A page of dead letters", "DeadLetterPage"), **errors},
            }
        },
        "/api/admin/dead-letters/{letterId}": {
            "get": {
                "summary": "One dead letter of the mirror",
                "operationId": "getDeadLetter",
                "parameters": [{"in": "path", "name": "letterId", "required": True, "schema": {"type": "integer"}}],
                "responses": {
                    **_ok("The letter", "DeadLetter"),
                    "404": error("Letter not found (gone from the broker) or outside the token's tenants"),
                    **errors,
                },
            }
        },
        "/api/admin/dead-letters/groups": {
            "get": {
                "summary": "Dead letters grouped by queue, actor and exception type, largest group first",
                "operationId": "groupDeadLetters",
                "parameters": [*filters, limit],
                "responses": {**_data_of("Groups", "DeadLetterGroup"), **errors},
            }
        },
        "/api/admin/dead-letters/preview": {
            "post": {
                "summary": "Count and show what a selection matches, changing nothing",
                "operationId": "previewDeadLetters",
                "requestBody": body,
                "responses": {**_ok("The preview", "DeadLetterPreview"), **errors},
            }
        },
        "/api/admin/dead-letters/requeue": act("requeue", "requeue"),
        "/api/admin/dead-letters/purge": act("purge", "purge"),
        "/api/admin/actions": {
            "get": {
                "summary": "The audit: operator actions, newest first",
                "operationId": "listOperatorActions",
                "parameters": [
                    query("status", {"type": "string", "enum": list(STATUSES)}, "Action status."),
                    query("kind", {"type": "string", "enum": list(KINDS)}, "Action kind."),
                    limit,
                    cursor,
                ],
                "responses": {**_ok("A page of actions", "OperatorActionPage"), **errors},
            }
        },
        "/api/admin/actions/{actionId}": {
            "get": {
                "summary": "One operator action with the letters it selected and what became of each",
                "operationId": "getOperatorAction",
                "parameters": [{"in": "path", "name": "actionId", "required": True, "schema": {"type": "integer"}}],
                "responses": {
                    "200": {"description": "The action", "content": _json("OperatorActionDetail")},
                    "404": error("Action not found or outside the token's tenants"),
                    **errors,
                },
            }
        },
        "/api/admin/maintenance/passes": {
            "get": {
                "summary": "The last pass of each periodic job (healer, bridge scan, mirror, actions)",
                "operationId": "listMaintenancePasses",
                "responses": {**_data_of("Passes", "MaintenancePass"), **errors},
            }
        },
    }
