"""The audit of operator actions, and the maintenance passes: read-only resources."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import falcon

from runwatch import actions

from . import params
from .console_store import ConsoleStore
from .deadletters import action_body, page
from .errors import Problem

ACTION_PARAMS = frozenset({"status", "kind", "limit", "cursor"})
_ACTION_ID = re.compile(r"-?[0-9]{1,4000}")


class ActionsResource:
    """``GET /api/admin/actions``: requeues and purges, newest first, keyset-paginated."""

    def __init__(self, store: ConsoleStore) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params.reject_unknown(req, ACTION_PARAMS)
        status = params.choice(req, "status", actions.STATUSES)
        kind = params.choice(req, "kind", actions.KINDS)
        limit = params.limit(req)
        filters = ("actions", status, kind)
        start = params.after(req, filters, self.store.cursor_key)
        rows = self.store.list_actions(req.context.principal, after=start, limit=limit + 1, status=status, kind=kind)
        rows, next_link = page(
            req, rows, limit, filters=filters, key=self.store.cursor_key(), position_of=actions.position_of
        )
        resp.media = {"data": [action_body(r) for r in rows], "links": {"next": next_link}}


class ActionResource:
    """``GET /api/admin/actions/{actionId}``: one action with the letters it selected."""

    #: Identical bytes whether the action is missing or outside the caller's scope (no oracle).
    NOT_FOUND_DETAIL = "Operator action not found."

    def __init__(self, store: ConsoleStore) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response, actionId: str) -> None:
        params.reject_unknown(req, ())
        if not _ACTION_ID.fullmatch(actionId):
            raise Problem(400, "Path parameter 'actionId' must be an integer.", parameter="actionId")
        view = self.store.get_action(req.context.principal, int(actionId))
        if view is None:
            raise Problem(404, self.NOT_FOUND_DETAIL)  # APPSEC: same answer for missing and not yours
        body = action_body(view.action)
        body["items"] = view.items
        body["items_truncated"] = view.items_truncated
        resp.media = body


def _numbers(result: Any) -> dict[str, float]:
    """The numeric members of a pass's result (lists of letters etc. stay in the ledger)."""
    if not isinstance(result, dict):
        return {}
    return {
        k: float(v)
        for k, v in result.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


class MaintenancePassesResource:
    """``GET /api/admin/maintenance/passes``: the last pass of each periodic job (healer, bridge, ...)."""

    def __init__(self, store: ConsoleStore) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params.reject_unknown(req, ())
        resp.media = {
            "data": [
                {
                    "name": row["name"],
                    "finished_at": datetime.fromtimestamp(row["finished_at"], UTC).isoformat().replace("+00:00", "Z"),
                    "age_seconds": row["age_seconds"],
                    "duration_ms": row["duration_ms"],
                    "result": _numbers(row["result"]),
                }
                for row in self.store.maintenance_passes(req.context.principal)
            ]
        }
