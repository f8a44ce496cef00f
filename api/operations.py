"""The contract's two resources: the run list and the run detail. Thin: validate, ask, shape."""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

import falcon

from runwatch.queries import position_of

from . import cursor, params, serialize
from .errors import Problem
from .store import Store

_RUN_ID = re.compile(r"-?[0-9]{1,4000}")


class OperationsResource:
    """``GET /api/admin/operations``: filtered, newest first, keyset-paginated."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params.reject_unknown(req, params.LIST_PARAMS)
        filters = params.list_filters(req)
        limit = params.limit(req)
        fingerprint = cursor.fingerprint(filters)
        after = params.after(req, filters, self.store.cursor_key)
        # One row more than asked tells whether a next page exists without a COUNT.
        rows = self.store.list_runs(req.context.principal, filters, after=after, limit=limit + 1)
        next_link = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = position_of(rows[-1])
            token = cursor.encode(last, filters_fingerprint=fingerprint, key=self.store.cursor_key())
            query = {name: value for name, value in req.params.items() if name != "cursor"}
            query["cursor"] = token
            next_link = f"{req.root_path}{req.path}?{urlencode(query, quote_via=quote)}"
        resp.media = {"data": [serialize.list_item(row) for row in rows], "links": {"next": next_link}}


class OperationResource:
    """``GET /api/admin/operations/{operationRun}``: one run, diagnostics on request."""

    #: Identical bytes whether the run is missing or belongs to another tenant (no oracle).
    NOT_FOUND_DETAIL = "Operation run not found."

    def __init__(self, store: Store) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response, operationRun: str) -> None:
        params.reject_unknown(req, params.DETAIL_PARAMS)
        diagnostics = params.include_diagnostics(req)
        if not _RUN_ID.fullmatch(operationRun):
            raise Problem(400, "Path parameter 'operationRun' must be an integer.", parameter="operationRun")
        view = self.store.get_run(req.context.principal, int(operationRun), diagnostics=diagnostics)
        if view is None:
            # APPSEC: same status, body and headers for "missing" and "not yours".
            raise Problem(404, self.NOT_FOUND_DETAIL)
        body = serialize.detail(view.row)
        if diagnostics:
            body["diagnostics"] = serialize.diagnostics(
                view.row, view.events, view.events_truncated, view.late_outcomes
            )
        resp.media = body
