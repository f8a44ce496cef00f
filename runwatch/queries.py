"""The read side of the monitoring API: named SQL for the run list, the detail and diagnostics.

Every query is scoped to the caller's tenants inside SQL (``APPSEC`` lines), uses the database
clock (``now()``) for freshness, and is shaped so that PostgreSQL can answer it from an index:
the list is a keyset walk of ``(created_at DESC, id DESC)``, never an ``OFFSET``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, exc, text

from . import passes
from .errors import RunwatchError
from .report import FRESHNESS_SQL, OPERATOR_COLUMNS
from .run_filters import MAX_BIGINT, RunFilters, filter_clauses, scope_params
from .settings import DEFAULT_API_STATEMENT_TIMEOUT_MS, normalize_database_url

#: Events of one run returned in diagnostics (the newest ones); progress can log thousands.
MAX_EVENTS = 200
#: Late outcomes returned in diagnostics.
MAX_LATE_OUTCOMES = 50
#: Pooled connections per API process (and as many overflow); a sync gunicorn worker uses one.
API_POOL_SIZE = 4

_api_engines: dict[tuple[int, str, int], Engine] = {}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class DatabaseUnavailable(RunwatchError):
    """PostgreSQL could not be reached or did not answer in time."""


@dataclass(frozen=True)
class Position:
    """A keyset position: the last run of a page, in ``(created_at DESC, id DESC)`` order."""

    created_at: datetime
    id: int


def rfc3339(column: str) -> str:
    """SQL rendering ``column`` as RFC 3339 text in UTC, e.g. ``2026-01-31T12:00:00.000000Z``."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


# PERF: timestamps leave PostgreSQL as RFC 3339 text (C formatting beats building datetimes in
# Python only to format them again); created_us carries the exact keyset position for cursors.
_LIST_COLUMNS = f"""
id, type, type_label, status, outcome, {FRESHNESS_SQL} AS freshness_state, reconciled_at IS NOT NULL AS reconciled,
tenant_id, initiator_name, operator_message, {rfc3339("created_at")} AS created_at,
{rfc3339("started_at")} AS started_at, {rfc3339("completed_at")} AS completed_at,
(extract(epoch FROM created_at) * 1000000)::bigint AS created_us
"""

_DETAIL_COLUMNS = f"""
{_LIST_COLUMNS}, summary_counts, failure_summary, {rfc3339("reconciled_at")} AS reconciled_at,
reconciliation_source, reason_code, reason_message, reconciliation_evidence
"""
# PERF: diagnostics columns (jsonb last_error, timestamps) are read only when asked for.
_DIAGNOSTIC_COLUMNS = """
message_id, queue_name, actor_name, retry_of,
CASE WHEN status = 'queued' THEN queued_stale_seconds ELSE running_stale_seconds END AS threshold_seconds,
threshold_source, stale_at, attempts, deliveries, max_retries, time_limit_ms, last_error, next_retry_at,
worker_id, last_progress_at, progress_processed, progress_total, healer_checked_at, healer_note
"""
_BY_ID_IN_SCOPE = """
FROM operation_runs
WHERE id = :id
  AND (CAST(:all_tenants AS boolean) OR tenant_id = ANY(CAST(:tenants AS bigint[])))  -- APPSEC: caller's tenants
"""
_DETAIL = text(f"SELECT {_DETAIL_COLUMNS} {_BY_ID_IN_SCOPE}")
_DETAIL_WITH_DIAGNOSTICS = text(f"SELECT {_DETAIL_COLUMNS}, {_DIAGNOSTIC_COLUMNS} {_BY_ID_IN_SCOPE}")

_EVENTS = text("""
SELECT id, kind, at, recorded_at, late, details FROM run_events
WHERE message_id = :message_id ORDER BY at DESC, id DESC LIMIT :limit
""")

_LATE_OUTCOMES = text("""
SELECT id, kind, at, recorded_at, details FROM run_events
WHERE message_id = :message_id AND late ORDER BY at, id LIMIT :limit
""")

_PING = text("SELECT 1")


def api_engine(database_url: str, *, statement_timeout_ms: int = DEFAULT_API_STATEMENT_TIMEOUT_MS) -> Engine:
    """This process's read engine for the API, created on first use (so after fork), keyed by pid.

    Unlike ``db.engine_for`` it does not ping on every checkout: that round trip would cost
    more than most API queries. A connection the server dropped fails one request (503,
    ``DatabaseUnavailable``) and SQLAlchemy then invalidates the pool, so the next one reconnects.
    """
    key = (os.getpid(), database_url, statement_timeout_ms)
    engine = _api_engines.get(key)
    if engine is None:
        engine = _api_engines[key] = create_engine(
            normalize_database_url(database_url),
            pool_size=API_POOL_SIZE,
            max_overflow=API_POOL_SIZE,
            # PERF: reads need no transaction; autocommit saves the BEGIN and ROLLBACK round trips.
            isolation_level="AUTOCOMMIT",
            connect_args={
                "connect_timeout": 5,
                "application_name": "runwatch-api",
                # Applied at connect time: a runaway read is cancelled, timestamps come back in UTC.
                "options": f"-c statement_timeout={int(statement_timeout_ms)} -c TimeZone=UTC",
            },
        )
    return engine


def dispose_api_engines() -> None:
    """Close this process's API engines (tests, shutdown)."""
    for key in [k for k in _api_engines if k[0] == os.getpid()]:
        _api_engines.pop(key).dispose()


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for one request; connection trouble becomes ``DatabaseUnavailable``."""
    try:
        with engine.connect() as conn:
            yield conn
    except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError) as error:
        raise DatabaseUnavailable(type(error.orig if hasattr(error, "orig") else error).__name__) from error


def ping(conn: Connection) -> bool:
    return conn.execute(_PING).scalar() == 1


def list_runs(
    conn: Connection,
    *,
    tenant_ids: frozenset[int] | None,
    filters: RunFilters,
    after: Position | None = None,
    limit: int = 50,
    operator_columns: bool = False,
) -> list[dict[str, Any]]:
    """One page of runs, newest first, strictly after ``after``; ``tenant_ids`` None = all tenants."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if tenant_ids is not None:
        # APPSEC: a scoped token sees its tenants only, never runs without a tenant.
        scope = sorted(t for t in tenant_ids if 0 < t <= MAX_BIGINT)
        if not scope:
            return []
        if len(scope) == 1:
            # PERF: equality lets PostgreSQL walk operation_runs_tenant_created in order.
            where.append("tenant_id = :scope_tenant")  # APPSEC: the token's only tenant
            params["scope_tenant"] = scope[0]
        else:
            where.append("tenant_id = ANY(CAST(:scope_tenants AS bigint[]))")  # APPSEC: the token's tenants
            params["scope_tenants"] = scope
    if not filter_clauses(filters, where, params):
        return []
    if after is not None:
        # Keyset: rows inserted after the first page sort before the cursor and never shift it.
        where.append("(created_at, id) < (:after_created_at, :after_id)")
        params["after_created_at"], params["after_id"] = after.created_at, after.id
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    # NOTE: qualified: a bare "created_at" in ORDER BY would mean the text column of the same name.
    columns = f"{_LIST_COLUMNS}, {OPERATOR_COLUMNS}" if operator_columns else _LIST_COLUMNS
    sql = f"SELECT {columns} FROM operation_runs r {clause} ORDER BY r.created_at DESC, r.id DESC LIMIT :limit"
    result = conn.execute(text(sql), params)
    keys = tuple(result.keys())
    # PERF: one fetch, and zip over plain rows: several times cheaper than RowMapping -> dict.
    return [dict(zip(keys, row, strict=True)) for row in result.all()]


def position_at(microseconds: int, row_id: int) -> Position:
    """A keyset position from a row's epoch microseconds (the ``*_us`` column every list selects)."""
    return Position(_EPOCH + timedelta(microseconds=microseconds), row_id)


def position_of(row: dict[str, Any]) -> Position:
    """The keyset position of a row returned by ``list_runs``."""
    return position_at(row["created_us"], row["id"])


def get_run(
    conn: Connection, run_id: int, *, tenant_ids: frozenset[int] | None, diagnostics: bool = False
) -> dict[str, Any] | None:
    """One run with its detail (and diagnostics) columns, or ``None`` when missing *or* out of scope."""
    if not 0 < run_id <= MAX_BIGINT:
        return None
    params = {"id": run_id, **scope_params(tenant_ids)}
    result = conn.execute(_DETAIL_WITH_DIAGNOSTICS if diagnostics else _DETAIL, params)
    row = result.first()
    return dict(zip(result.keys(), row, strict=True)) if row else None


def run_events(conn: Connection, message_id: str, *, limit: int = MAX_EVENTS) -> tuple[list[dict[str, Any]], bool]:
    """The newest ``limit`` events of a run, oldest first, and whether older ones were left out."""
    rows = [dict(r) for r in conn.execute(_EVENTS, {"message_id": message_id, "limit": limit + 1}).mappings()]
    truncated = len(rows) > limit
    return list(reversed(rows[:limit])), truncated


def late_outcomes(conn: Connection, message_id: str, *, limit: int = MAX_LATE_OUTCOMES) -> list[dict[str, Any]]:
    """Outcomes that arrived after the run was already terminal (recorded, never applied)."""
    return [dict(r) for r in conn.execute(_LATE_OUTCOMES, {"message_id": message_id, "limit": limit}).mappings()]


# PERF: every count is an index-only scan: live runs from the small live index, reconciled ones
# from the reconciled index, completed ones from the retention index (status = 'completed');
# terminal_normal is completed minus reconciled (CHECK: only completed runs are reconciled).
# The completed count still visits one index entry per completed run (~50 ms per million).
_RUNS_BY_STATE = text("""
WITH live AS (
    SELECT status, CASE WHEN stale_at <= now() THEN 'likely_stale' ELSE 'fresh_active' END AS freshness,
           count(*) AS n
    FROM operation_runs WHERE status IN ('queued', 'running') GROUP BY 1, 2
), reconciled AS (
    SELECT count(*) AS n FROM operation_runs WHERE reconciled_at IS NOT NULL
), completed AS (
    SELECT count(*) AS n FROM operation_runs WHERE status = 'completed'
)
SELECT status, freshness, n FROM live
UNION ALL SELECT 'completed', 'reconciled_failed', n FROM reconciled
UNION ALL SELECT 'completed', 'terminal_normal', completed.n - reconciled.n FROM completed, reconciled
""")

_RECONCILIATIONS = text("""
SELECT reconciliation_source AS source, reason_code, count(*) AS n
FROM operation_runs WHERE reconciled_at IS NOT NULL GROUP BY 1, 2
""")


def runs_by_state(conn: Connection) -> list[tuple[str, str, int]]:
    """(status, freshness, count) for every combination that has runs."""
    return [(r.status, r.freshness, r.n) for r in conn.execute(_RUNS_BY_STATE) if r.n]


def reconciliations(conn: Connection) -> list[tuple[str, str, int]]:
    """(source, reason_code, count) of reconciled runs."""
    return [(r.source, r.reason_code, r.n) for r in conn.execute(_RECONCILIATIONS)]


def maintenance_passes(conn: Connection) -> list[dict[str, Any]]:
    """The last pass of each periodic job (healer, bridge scan, ...), as recorded by the job."""
    return passes.every(conn)
