"""The Overview page (what the ledger looks like now and over the last day) and the Healer page."""

from __future__ import annotations

import threading
import time
from typing import Any

import falcon

from runwatch import console_queries, queries

from ..console_store import pass_result_for
from ..store import Store
from . import views, web
from .session import ConsolePage

#: Seconds between the overview's own refreshes (a meta refresh: no script needed).
REFRESH_SECONDS = 30
#: How long one caller scope's overview figures are reused by this process (they cost a walk of
#: the last day's runs; the page itself refreshes every REFRESH_SECONDS).
CACHE_SECONDS = 15.0
#: Scopes cached at most (tokens are few; a flood of distinct scopes just empties the cache).
MAX_CACHED_SCOPES = 256
#: Result keys of a maintenance pass shown first, in this order; the rest follow.
PASS_KEYS = ("candidates", "reconciled", "skipped", "poison_pills", "paused", "locked_out", "dry_run")


def _passes(conn, principal) -> list[dict]:
    """Each periodic job's last pass; counts span every tenant, so only all-tenant tokens see them."""
    out = []
    for p in queries.maintenance_passes(conn):
        result = pass_result_for(principal, p["result"])
        first = {k: result[k] for k in PASS_KEYS if k in result}
        out.append({**p, "result": first | {k: v for k, v in result.items() if k not in PASS_KEYS}})
    return out


class OverviewPage(ConsolePage[Store]):
    """``GET /console/``: runs by freshness and type, finished runs and failures per hour, healer."""

    def __init__(self, store: Store, *, cache_seconds: float = CACHE_SECONDS) -> None:
        super().__init__(store)
        self.cache_seconds = cache_seconds
        self._cache: dict[frozenset[int] | None, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def _figures(self, conn, tenant_ids: frozenset[int] | None, hours: int) -> dict[str, Any]:
        # APPSEC: keyed by the exact tenant scope, so a cached view never crosses tenants.
        cached = self._cache.get(tenant_ids)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        data = console_queries.overview(conn, tenant_ids, hours=hours)
        with self._lock:
            if len(self._cache) >= MAX_CACHED_SCOPES:
                self._cache.clear()
            self._cache[tenant_ids] = (time.monotonic() + self.cache_seconds, data)
        return data

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = req.context.principal
        hours = console_queries.WINDOW_HOURS
        with queries.reading(self.store.engine) as conn:
            # APPSEC: every count below is scoped to the session's tenants in SQL.
            data = self._figures(conn, principal.tenant_ids, hours)
            passes = _passes(conn, principal)
        req.context.nav = "overview"
        web.render(
            req, resp, "overview.html", states=views.state_table(data["by_state"]),
            charts=views.hourly_chart(data["per_hour"], data["now"], hours), hours=hours,
            reconciliations=data["reconciliations"], passes=passes, refresh_seconds=REFRESH_SECONDS,
            chart_width=views.CHART_WIDTH, chart_height=views.CHART_HEIGHT, as_of=data["now"],
            cache_seconds=self.cache_seconds,
        )  # fmt: skip


class HealerPage(ConsolePage[Store]):
    """``GET /console/healer``: each periodic job's last pass and the live runs nearest their deadline."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = req.context.principal
        with queries.reading(self.store.engine) as conn:
            passes = _passes(conn, principal)
            nearest = console_queries.nearest_deadline(conn, principal.tenant_ids)  # APPSEC: scoped in SQL
        req.context.nav = "healer"
        web.render(req, resp, "healer.html", passes=passes, nearest=nearest)
