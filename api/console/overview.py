"""The Overview page (what the ledger looks like now and over the last day) and the Healer page."""

from __future__ import annotations

import falcon

from runwatch import console_queries, queries

from ..store import Store
from . import views, web

#: Seconds between the overview's own refreshes (a meta refresh: no script needed).
REFRESH_SECONDS = 30
#: Result keys of a maintenance pass shown first, in this order; the rest follow.
PASS_KEYS = ("candidates", "reconciled", "skipped", "poison_pills", "paused", "locked_out", "dry_run")


def _passes(conn, principal) -> list[dict]:
    """Each periodic job's last pass; counts span every tenant, so only all-tenant tokens see them."""
    out = []
    for p in queries.maintenance_passes(conn):
        result = p["result"] or {}
        first = {k: result[k] for k in PASS_KEYS if k in result}
        shown = first | {k: v for k, v in result.items() if k not in PASS_KEYS}
        if not principal.all_tenants:
            # APPSEC: a pass's counts cover every tenant; a scoped token sees when and whether, not how many.
            shown = {k: v for k, v in shown.items() if k in ("paused", "locked_out", "dry_run")}
        out.append({**p, "result": shown})
    return out


class OverviewPage:
    """``GET /console/``: runs by freshness and type, finished runs and failures per hour, healer."""

    auth_required = False
    console_page = True

    def __init__(self, store: Store) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = req.context.principal
        hours = console_queries.WINDOW_HOURS
        with queries.reading(self.store.engine) as conn:
            # APPSEC: every count below is scoped to the session's tenants in SQL.
            data = console_queries.overview(conn, principal.tenant_ids, hours=hours)
            passes = _passes(conn, principal)
        req.context.nav = "overview"
        web.render(
            req, resp, "overview.html", states=views.state_table(data["by_state"]),
            charts=views.hourly_chart(data["per_hour"], data["now"], hours), hours=hours,
            reconciliations=data["reconciliations"], passes=passes, refresh_seconds=REFRESH_SECONDS,
            chart_width=views.CHART_WIDTH, chart_height=views.CHART_HEIGHT,
        )  # fmt: skip


class HealerPage:
    """``GET /console/healer``: each periodic job's last pass and the live runs nearest their deadline."""

    auth_required = False
    console_page = True

    def __init__(self, store: Store) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = req.context.principal
        with queries.reading(self.store.engine) as conn:
            passes = _passes(conn, principal)
            nearest = console_queries.nearest_deadline(conn, principal.tenant_ids)  # APPSEC: scoped in SQL
        req.context.nav = "healer"
        web.render(req, resp, "healer.html", passes=passes, nearest=nearest)
