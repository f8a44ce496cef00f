"""Every error the API answers is an RFC 9457 problem (``application/problem+json``).

Falcon's own errors (unknown route, wrong method, ...) go through the same serializer; anything
unexpected is logged here and answered with a generic 500 that carries no traceback and no SQL.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

import falcon

from runwatch.queries import DatabaseUnavailable

PROBLEM_JSON = "application/problem+json"
#: Seconds a client should wait before retrying while PostgreSQL is unavailable.
RETRY_AFTER_SECONDS = 5

log = logging.getLogger("runwatch.api")


class Problem(falcon.HTTPError):
    """An HTTP error with RFC 9457 extension members (e.g. the offending ``parameter``)."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extensions: Any):
        super().__init__(status, title=HTTPStatus(status).phrase, description=detail, headers=headers)
        self.extensions = extensions


def invalid_param(name: str, why: str) -> Problem:
    """A 400 naming the query parameter at fault; ``why`` never echoes the raw value."""
    return Problem(400, f"Query parameter '{name}' {why}.", parameter=name)


def problem_body(error: falcon.HTTPError) -> dict[str, Any]:
    status = error.status_code
    body: dict[str, Any] = {
        # NOTE: "about:blank" says the status code is the whole story; title is its phrase (RFC 9457 §4.2.1).
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": error.description or HTTPStatus(status).description,
    }
    body.update(getattr(error, "extensions", {}))
    return body


def serialize_problem(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Falcon error serializer: always problem+json, whatever the client accepts."""
    resp.content_type = PROBLEM_JSON
    resp.text = json.dumps(problem_body(error), separators=(",", ":"))


def _unexpected(req: falcon.Request, resp: falcon.Response, error: Exception, params: dict[str, Any]) -> None:
    # APPSEC: the traceback goes to the log only; the client learns nothing about internals.
    log.exception("unhandled error on %s %s", req.method, req.path)
    raise Problem(500, "The server failed to answer this request; the error was logged.")


def _database_down(req: falcon.Request, resp: falcon.Response, error: Exception, params: dict[str, Any]) -> None:
    log.warning("database unavailable on %s %s: %s", req.method, req.path, error)
    detail = "The run ledger is temporarily unavailable; retry shortly."
    raise Problem(503, detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def install(app: falcon.App) -> None:
    """Route every error of ``app`` through problem+json."""
    app.set_error_serializer(serialize_problem)
    # NOTE: Falcon picks the most specific handler, so HTTPError keeps its own and only the rest lands here.
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(DatabaseUnavailable, _database_down)
