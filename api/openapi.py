"""The API's own OpenAPI 3.1 document, served at ``/api/openapi.json``.

A superset of ``contract/operation-run-lifecycle.openapi.yaml``: the contract's paths,
parameters, enums and required fields unchanged, plus pagination, the extra filters, the
diagnostics block, the security scheme and every status the API answers. Nullable contract
fields (``nullable: true``, an OpenAPI 3.0 spelling) are written the 3.1 way, ``[T, "null"]``;
``tests/api/test_openapi_contract.py`` fails if this document ever contradicts the contract.
"""

from __future__ import annotations

import copy
from typing import Any

from . import openapi_console
from .openapi_schemas import REF, SCHEMAS, TEXT
from .params import (
    DEFAULT_LIMIT,
    FRESHNESS_STATES,
    INCLUDES,
    MAX_LIMIT,
    MAX_VALUES,
    OUTCOMES,
    REASON_CODES,
    SOURCES,
    STATUSES,
)

_PROBLEM = {"application/problem+json": {"schema": {"$ref": REF + "Problem"}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _PROBLEM}


_ERRORS = {
    "400": _error("Malformed, repeated or unknown query parameter (the problem names it)"),
    "401": {
        **_error("No valid bearer token"),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer challenge"}},
    },
    "500": _error("Unexpected server error (logged; no internals in the body)"),
    "503": {
        **_error("The run ledger (PostgreSQL) is temporarily unavailable"),
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}},
    },
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"in": "query", "name": name, "schema": schema, "description": description}


_SEVERAL = (
    f" Extension: several values separated by commas (at most {MAX_VALUES}) match any of them;"
    " the parameter itself is still given once."
)

_LIST_PARAMETERS = [
    _query("status", {"type": "string", "enum": list(STATUSES)}, "Lifecycle status." + _SEVERAL),
    _query("outcome", {"type": "string", "enum": list(OUTCOMES)}, "Outcome (pending while live)." + _SEVERAL),
    _query("type", {"type": "string"}, "Operation type, exact match." + _SEVERAL),
    _query("tenant_id", {"type": "integer"}, "Tenant; narrows within the token's scope, never widens it."),
    _query("freshness_state", {"type": "string", "enum": list(FRESHNESS_STATES)}, "Derived freshness."),
    _query("reconciled", {"type": "boolean"}, "Reconciled by a failure source (true/false, also 1/0)."),
    _query("reconciliation_source", {"type": "string", "enum": list(SOURCES)}, "Extension: who reconciled the run."),
    _query("created_after", {"type": "string", "format": "date-time"}, "Extension: created at or after (RFC 3339)."),
    _query("created_before", {"type": "string", "format": "date-time"}, "Extension: created before (RFC 3339)."),
    _query("queue_name", TEXT, "Extension: Dramatiq queue, exact match."),
    _query("actor_name", TEXT, "Extension: Dramatiq actor, exact match."),
    _query("reason_code", {"type": "string", "enum": list(REASON_CODES)}, "Extension: reconciliation reason code."),
    _query("message_id", TEXT, "Extension: the Dramatiq message id (a message-id lookup)."),
    _query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        "Extension: page size.",
    ),
    _query("cursor", {"type": "string"}, "Extension: opaque cursor from links.next; only valid with the same filters."),
]


def _public(description: str, content: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "get": {
            "summary": description,
            "security": [],
            "responses": {"200": {"description": "OK", "content": content}, **(extra or {})},
        }
    }


_JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Runwatch monitoring API",
        "version": "0.1.0",
        "summary": "Operation runs of Dramatiq jobs: lifecycle, freshness and reconciliation.",
        "description": "Serves the Operation Run Lifecycle Monitoring Contract, extended compatibly. "
        "Every /api/admin endpoint needs a bearer token (`runwatch tokens create`) scoped to tenants or to all "
        "of them; health, metrics and this document need none. Errors are RFC 9457 problem+json.",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearerAuth": []}],
    "paths": {
        "/api/admin/operations": {
            "get": {
                "summary": "List operation runs with lifecycle freshness semantics",
                "operationId": "listOperationRuns",
                "description": "Newest first by (created_at, id). Filters combine with AND.",
                "parameters": _LIST_PARAMETERS,
                "responses": {
                    "200": {
                        "description": "Paginated collection of operation runs",
                        "content": {"application/json": {"schema": {"$ref": REF + "OperationRunPage"}}},
                    },
                    **_ERRORS,
                },
            }
        },
        "/api/admin/operations/{operationRun}": {
            "get": {
                "summary": "Get one operation run with lifecycle reconciliation detail",
                "operationId": "getOperationRun",
                "parameters": [
                    {"in": "path", "name": "operationRun", "required": True, "schema": {"type": "integer"}},
                    _query("include", {"type": "string", "enum": list(INCLUDES)}, "Extension: reveal diagnostics."),
                ],
                "responses": {
                    "200": {
                        "description": "Operation run detail",
                        "content": {"application/json": {"schema": {"$ref": REF + "OperationRunDetail"}}},
                    },
                    "404": _error("Run not found or caller not entitled to the run scope"),
                    **_ERRORS,
                },
            }
        },
        "/health/live": _public("Liveness: the process answers", _JSON_OBJECT),
        "/health/ready": _public(
            "Readiness: PostgreSQL and the configured brokers (Redis, RabbitMQ) answer",
            _JSON_OBJECT,
            {"503": _error("A dependency is down (named)")},
        ),
        "/metrics": _public("Prometheus metrics", {"text/plain": {"schema": {"type": "string"}}}),
        "/api/openapi.json": _public("This document", _JSON_OBJECT),
    },
    "components": {
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "rw_<secret>"}},
        # The console's endpoints: dead letters, operator actions (the audit), maintenance passes.
        "schemas": {**SCHEMAS, **openapi_console.SCHEMAS},
    },
}

_DOCUMENT["paths"].update(openapi_console.paths(errors=_ERRORS, error=_error, query=_query))


def document() -> dict[str, Any]:
    """A fresh copy of the document (callers may not mutate the module's)."""
    return copy.deepcopy(_DOCUMENT)
