"""Dead-letter resources: list, groups, preview, and the requeue/purge requests. Thin: validate, ask, shape.

Letters come from the bridge's mirror in PostgreSQL (the API never talks to the broker). A requeue
or purge is written as a pending operator action that the bridge executes; the answer is that
action (``202`` when new, ``200`` when the Idempotency-Key names one already).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import falcon

from runwatch import actions, dead_letters
from runwatch.actions import IdempotencyConflict, SelectionTooLarge
from runwatch.queries import Position

from . import cursor, params, selection
from .auth import require_operator
from .console_store import ConsoleStore
from .errors import Problem

_ID = re.compile(r"-?[0-9]{1,4000}")
_LETTER_FIELDS = (
    "id", "queue_name", "redis_message_id", "message_id", "actor_name", "exception_type", "exception_message",
    "decode_error", "dead_at", "age_seconds", "tenant_id", "run_id",
)  # fmt: skip


def letter(row: dict[str, Any]) -> dict[str, Any]:
    """A ``DeadLetter`` as the API serves it (no payload, no arguments)."""
    return {name: row[name] for name in _LETTER_FIELDS}


def page(
    req: falcon.Request,
    rows: list[dict[str, Any]],
    limit: int,
    *,
    filters: object,
    key: bytes,
    position_of: Callable[[dict[str, Any]], Position],
) -> tuple[list[dict[str, Any]], str | None]:
    """Cut the extra row off a ``limit + 1`` fetch; the next page's link when there is one."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    token = cursor.encode(position_of(rows[-1]), filters_fingerprint=cursor.fingerprint(filters), key=key)
    query = {name: value for name, value in req.params.items() if name != "cursor"}
    query["cursor"] = token
    return rows, f"{req.root_path}{req.path}?{urlencode(query, quote_via=quote)}"


class DeadLettersResource:
    """``GET /api/admin/dead-letters``: filtered, newest first, keyset-paginated."""

    def __init__(self, store: ConsoleStore) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params.reject_unknown(req, selection.LETTER_PARAMS)
        filters = selection.letter_filters(req)
        limit = params.limit(req)
        start = params.after(req, filters, self.store.cursor_key)
        rows = self.store.list_letters(req.context.principal, filters, after=start, limit=limit + 1)
        rows, next_link = page(
            req, rows, limit, filters=filters, key=self.store.cursor_key(), position_of=dead_letters.position_of
        )
        resp.media = {"data": [letter(r) for r in rows], "links": {"next": next_link}}


class DeadLetterResource:
    """``GET /api/admin/dead-letters/{letterId}``: one letter of the mirror."""

    #: Identical bytes whether the letter is missing or outside the caller's scope (no oracle).
    NOT_FOUND_DETAIL = "Dead letter not found."

    def __init__(self, store: ConsoleStore) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response, letterId: str) -> None:
        params.reject_unknown(req, ())
        if not _ID.fullmatch(letterId):
            raise Problem(400, "Path parameter 'letterId' must be an integer.", parameter="letterId")
        row = self.store.get_letter(req.context.principal, int(letterId))
        if row is None:
            raise Problem(404, self.NOT_FOUND_DETAIL)  # APPSEC: same answer for missing and not yours
        resp.media = letter(row)


class DeadLetterGroupsResource:
    """``GET /api/admin/dead-letters/groups``: counts by queue, actor and exception type."""

    def __init__(self, store: ConsoleStore) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params.reject_unknown(req, selection.GROUP_PARAMS)
        filters = selection.letter_filters(req)
        limit = params.limit(req)
        resp.media = {"data": self.store.letter_groups(req.context.principal, filters, limit=limit)}


class DeadLetterPreviewResource:
    """``POST /api/admin/dead-letters/preview``: what a selection matches, before acting on it."""

    def __init__(self, store: ConsoleStore) -> None:
        self.store = store

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        params.reject_unknown(req, ())
        chosen = selection.selection(req)
        matched, rows = self.store.preview(req.context.principal, chosen)
        resp.media = {"matched": matched, "data": [letter(r) for r in rows]}


def action_body(row: dict[str, Any]) -> dict[str, Any]:
    """An ``OperatorAction`` as the API serves it."""
    return {
        "id": row["id"],
        "kind": row["kind"],
        "status": row["status"],
        "requested_by": {"token_id": row["token_id"], "token_name": row["token_name"]},
        "tenant_ids": None if row["tenant_ids"] is None else list(row["tenant_ids"]),
        "selection": row["selection"],
        "counts": {"matched": row["matched"], "done": row["done"], "skipped": row["skipped"]},
        "requested_at": row["requested_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "error": row["error"],
    }


class DeadLetterActionResource:
    """``POST /api/admin/dead-letters/requeue`` and ``/purge``: an operator asks, the bridge acts."""

    def __init__(self, store: ConsoleStore, kind: str) -> None:
        assert kind in actions.KINDS
        self.store = store
        self.kind = kind

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_operator(req)
        params.reject_unknown(req, ())
        key = selection.idempotency_key(req)
        chosen = selection.selection(req)
        try:
            action, created = self.store.request_action(
                req.context.principal, kind=self.kind, selection=chosen, idempotency_key=key
            )
        except IdempotencyConflict:
            raise Problem(409, "This Idempotency-Key was already used with a different request.") from None
        except SelectionTooLarge as exc:
            raise Problem(400, f"{str(exc).capitalize()}; narrow the selection or act in parts.") from None
        resp.status = falcon.HTTP_202 if created else falcon.HTTP_200
        resp.location = f"{req.root_path}/api/admin/actions/{action['id']}"
        resp.media = action_body(action)
