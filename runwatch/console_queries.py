"""Named SQL for the console's pages beyond the run list: overview, timeline, lineage, healer.

Every query takes the caller's tenants and applies them in SQL (``APPSEC`` lines), so counts and
charts include only runs the caller may see. Each one is bounded by an index range: the last
24 hours of ``created_at`` or ``completed_at``, the small live index, or one run's events.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from .lookups import db_now
from .report import FRESHNESS_SQL
from .run_filters import scope_params

#: The overview's window, in hours.
WINDOW_HOURS = 24
#: Events shown on a run's timeline (the newest ones).
MAX_TIMELINE_EVENTS = 500
#: Runs listed as retries of one run, and live runs listed by their stale deadline.
MAX_RELATED = 50

# APPSEC: every console query ends its WHERE with this clause: the caller's tenants only.
_SCOPE = "(CAST(:all_tenants AS boolean) OR tenant_id = ANY(CAST(:tenants AS bigint[])))"

# Live runs are few (the partial live index); completed ones are counted over the window only.
_LIVE_BY_TYPE = text(f"""
SELECT type, CASE WHEN stale_at <= now() THEN 'likely_stale' ELSE 'fresh_active' END AS freshness, count(*) AS n
FROM operation_runs WHERE status IN ('queued', 'running') AND {_SCOPE} GROUP BY 1, 2
""")

# PERF: one walk of the window (the completed_at index) answers both the state table's terminal
# columns and the chart; grouped by type and hour only, so the planner hashes ~24 x types groups.
_FINISHED_PER_HOUR = text(f"""
SELECT type, extract(epoch FROM date_trunc('hour', completed_at))::bigint AS hour,
       count(*) AS finished, count(*) FILTER (WHERE outcome = 'failed') AS failed,
       count(*) FILTER (WHERE reconciled_at IS NOT NULL) AS reconciled
FROM operation_runs
WHERE status = 'completed' AND completed_at >= now() - make_interval(hours => :hours) AND {_SCOPE}
GROUP BY 1, 2
""")

# PERF: served by the reconciled index (migration 0003): reconciled runs are a small share.
_RECONCILIATIONS = text(f"""
SELECT reconciliation_source AS source, reason_code, count(*) AS n FROM operation_runs
WHERE reconciled_at IS NOT NULL AND created_at >= now() - make_interval(hours => :hours) AND {_SCOPE}
GROUP BY 1, 2 ORDER BY 3 DESC
""")

_NEAREST_DEADLINE = text(f"""
SELECT id, type, status, tenant_id, operator_message, stale_at,
       extract(epoch FROM stale_at - now())::float8 AS seconds_left, healer_checked_at, healer_note
FROM operation_runs
WHERE status IN ('queued', 'running') AND {_SCOPE}
ORDER BY stale_at LIMIT :limit
""")

_RETRIES_OF = text(f"""
SELECT id, status, outcome, {FRESHNESS_SQL} AS freshness_state, created_at FROM operation_runs
WHERE retry_of = :id AND {_SCOPE} ORDER BY created_at, id LIMIT :limit
""")

_RUN_BRIEF = text(f"""
SELECT id, status, outcome, {FRESHNESS_SQL} AS freshness_state, created_at FROM operation_runs
WHERE id = :id AND {_SCOPE}
""")



def _rows(conn: Connection, statement: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(statement, params).mappings()]


def overview(conn: Connection, tenant_ids: frozenset[int] | None, *, hours: int = WINDOW_HOURS) -> dict[str, Any]:
    """One caller's view: live runs by type and freshness, and over the window: finished runs by
    type and freshness, finished and failed runs per type and hour, reconciliations by source and reason."""
    params = {**scope_params(tenant_ids), "hours": hours}
    by_state = _rows(conn, _LIVE_BY_TYPE, params)
    per_hour = _rows(conn, _FINISHED_PER_HOUR, params)
    for row in per_hour:
        by_state.append({"type": row["type"], "freshness": "reconciled_failed", "n": row["reconciled"]})
        by_state.append({"type": row["type"], "freshness": "terminal_normal", "n": row["finished"] - row["reconciled"]})
    return {
        "by_state": by_state,
        "per_hour": per_hour,
        "reconciliations": _rows(conn, _RECONCILIATIONS, params),
        "now": db_now(conn),
    }


def nearest_deadline(conn: Connection, tenant_ids: frozenset[int] | None, *, limit: int = MAX_RELATED) -> list[dict]:
    """The live runs closest to (or furthest past) their stale deadline, soonest first."""
    return _rows(conn, _NEAREST_DEADLINE, {**scope_params(tenant_ids), "limit": limit})


def lineage(conn: Connection, run: dict[str, Any], tenant_ids: frozenset[int] | None) -> dict[str, Any]:
    """The run this one retries (if visible to the caller) and the runs that retried it."""
    params = scope_params(tenant_ids)
    original = None
    if run.get("retry_of"):
        found = _rows(conn, _RUN_BRIEF, {**params, "id": run["retry_of"]})
        original = found[0] if found else None
    retries = _rows(conn, _RETRIES_OF, {**params, "id": run["id"], "limit": MAX_RELATED})
    return {"retry_of": original, "retried_by": retries}

