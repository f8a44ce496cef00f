"""The Runs page (the JSON list's filters, as a form), the run detail page, and its live twin."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import falcon

from runwatch import console_queries, lookups, queries
from runwatch.queries import position_of

from .. import cursor, params, serialize
from ..console_store import pass_result_for
from ..errors import Problem
from ..operations import OperationResource
from ..store import Store
from . import views, web
from .session import ConsolePage

_RUN_ID = re.compile(r"[0-9]{1,19}")
# A browser's datetime-local value carries no zone: the form labels it UTC.
_LOCAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?")
_MULTI = ("status", "outcome")


def _normalise_query(req: falcon.Request) -> None:
    """A submitted form sends every field: blank means "any"; local times are UTC."""
    query = web.drop_blank_filters(req)
    for name in ("created_after", "created_before"):
        value = query.get(name)
        if isinstance(value, str) and _LOCAL_TIME.fullmatch(value):
            query[name] = value + (":00Z" if len(value) == 16 else "Z")


def _form(req: falcon.Request) -> dict[str, object]:
    values: dict[str, object] = {}
    for name in params.LIST_PARAMS:
        raw = req.params.get(name)
        values[name] = raw if name in _MULTI else (",".join(raw) if isinstance(raw, list) else raw or "")
        if name in _MULTI:
            items = raw if isinstance(raw, list) else [raw] if raw else []
            values[name] = {v for item in items for v in item.split(",")}
    for name in ("created_after", "created_before"):
        values[name] = str(values[name]).removesuffix("Z")
    return values


class RunsPage(ConsolePage[Store]):
    """``GET /console/runs``: every filter of the JSON list, newest first, keyset pages."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _normalise_query(req)
        params.reject_unknown(req, params.LIST_PARAMS)
        filters = params.list_filters(req, repeated=True)
        limit = params.limit(req)
        fingerprint = cursor.fingerprint(filters)
        after = params.after(req, filters, self.store.cursor_key, issuer="console")
        # APPSEC: list_runs scopes to the session's tenants in SQL, exactly as the JSON API does.
        rows = self.store.list_runs(req.context.principal, filters, after=after, limit=limit + 1)
        query = [(k, v) for k, vs in req.params.items() if k != "cursor" for v in ([vs] if isinstance(vs, str) else vs)]
        next_url = None
        if len(rows) > limit:
            rows = rows[:limit]
            token = cursor.encode(position_of(rows[-1]), filters_fingerprint=fingerprint, key=self.store.cursor_key())
            next_url = "/console/runs?" + urlencode([*query, ("cursor", token)])
        req.context.nav = "runs"
        web.render(
            req, resp, "runs.html", rows=rows, form=_form(req), next_url=next_url, paged=after is not None,
            first_url="/console/runs" + ("?" + urlencode(query) if query else ""),
            statuses=params.STATUSES, outcomes=params.OUTCOMES, freshness_states=params.FRESHNESS_STATES,
            sources=params.SOURCES, reason_codes=params.REASON_CODES,
        )  # fmt: skip


def _run_id(value: str) -> int:
    if not _RUN_ID.fullmatch(value):
        # APPSEC: a malformed id is as unknown as a missing one: the same 404.
        raise Problem(404, OperationResource.NOT_FOUND_DETAIL)
    return int(value)


class RunPage(ConsolePage[Store]):
    """``GET /console/runs/{run_id}``: the detail, timeline, lineage and diagnostics of one run."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        principal = req.context.principal
        view = self.store.get_run(principal, _run_id(run_id), diagnostics=True)
        if view is None:
            # APPSEC: another tenant's run and a missing run are the same 404.
            raise Problem(404, OperationResource.NOT_FOUND_DETAIL)
        run = view.row
        with queries.reading(self.store.engine) as conn:
            lineage = console_queries.lineage(conn, run, principal.tenant_ids)
            now = lookups.db_now(conn)
            passes = {p["name"]: {**p, "result": pass_result_for(principal, p["result"])}
                      for p in queries.maintenance_passes(conn)}  # fmt: skip
        req.context.nav = "runs"
        web.render(
            req, resp, "run.html", run=run, lineage=lineage, timeline=views.timeline(view.events),
            events_truncated=view.events_truncated, late=view.late_outcomes,
            evidence=serialize.default_evidence(run["reconciliation_evidence"]),
            explain=views.why_not_healed(run, now, passes.get("healer")),
        )  # fmt: skip


class RunLiveResource(ConsolePage[Store]):
    """``GET /console/runs/{run_id}/live``: the detail as JSON for the page's poller (cookie auth)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        view = self.store.get_run(req.context.principal, _run_id(run_id), diagnostics=True)
        if view is None:
            raise Problem(404, OperationResource.NOT_FOUND_DETAIL)
        row = view.row
        body = serialize.detail(row)
        body["progress"] = {"processed": row["progress_processed"], "total": row["progress_total"]}
        resp.media = body
        resp.set_header("Cache-Control", "no-store")
