"""The run list's filters and the SQL clauses they become (shared by the JSON API and the console).

Every filter is optional and they combine with AND. ``status``, ``outcome`` and ``type`` take
one value or several (any of them matches). Values are validated at the edge before they get
here; each clause is written so that an index can serve it (see ``queries.list_runs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: Largest value a bigint column holds; ids and tenant ids beyond it cannot match any row.
MAX_BIGINT = 2**63 - 1

# Freshness filters: FRESHNESS_SQL restated as the single clause the database guarantees to be
# equivalent, so that the planner estimates it from one column's statistics (a redundant
# second clause would be multiplied in as if independent, and the estimate would be 50x low)
# and so that it implies the partial index that serves it (migration 0003):
#   - the trigger gives every live run a stale_at and clears it on completion (locked by
#     tests/api/test_list.py), so a deadline comparison alone means "live and fresh/stale";
#   - CHECK runwatch_state/runwatch_reconciliation_complete make "reconciled" mean
#     "completed and failed", so reconciled_at alone splits the completed runs.
FRESHNESS_WHERE = {
    "fresh_active": "stale_at > now()",
    "likely_stale": "stale_at <= now()",
    "reconciled_failed": "reconciled_at IS NOT NULL",
    "terminal_normal": "status = 'completed' AND reconciled_at IS NULL",
}

Values = tuple[str, ...]


def scope_params(tenant_ids: frozenset[int] | None) -> dict[str, Any]:
    """Bind parameters of a tenant-scope clause (``:all_tenants OR ... :tenants``); ``None``: every tenant."""
    return {
        "all_tenants": tenant_ids is None,  # APPSEC: only an all-tenant token skips the tenant check
        "tenants": sorted(t for t in (tenant_ids or ()) if 0 < t <= MAX_BIGINT),
    }


#: A message's run and every run linked to it by ``retry_of``, either way (requeues of requeues).
#: Dramatiq's own retries keep the message id: they are that run's attempts.
FAMILY_OF_MESSAGE = """r.id IN (
    WITH RECURSIVE up AS (
        SELECT id, retry_of FROM operation_runs WHERE message_id = :message_family
        UNION SELECT p.id, p.retry_of FROM operation_runs p JOIN up ON p.id = up.retry_of
    ), down AS (
        SELECT id FROM up
        UNION SELECT c.id FROM operation_runs c JOIN down ON c.retry_of = down.id
    ) SELECT id FROM down)"""


def _values(value: str | Values | None) -> Values | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(dict.fromkeys(value))


@dataclass(frozen=True, kw_only=True)
class RunFilters:
    """List filters, all optional and combined with AND; values are already validated.

    ``status``, ``outcome`` and ``type`` accept one value or a tuple of values (any matches).
    """

    status: str | Values | None = None
    outcome: str | Values | None = None
    type: str | Values | None = None
    tenant_id: int | None = None
    freshness_state: str | None = None
    reconciled: bool | None = None
    reconciliation_source: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    queue_name: str | None = None
    actor_name: str | None = None
    reason_code: str | None = None
    message_id: str | None = None
    #: The CLI's lookup of a message id from a worker log: its run and that run's requeues, both ways.
    message_family: str | None = None

    def __post_init__(self) -> None:
        # NOTE: normalised so that equal filters have equal reprs (cursor fingerprints).
        for name in ("status", "outcome", "type"):
            object.__setattr__(self, name, _values(getattr(self, name)))


def _one_or_any(column: str, key: str, values: str | Values, where: list[str], params: dict[str, Any]) -> None:
    if isinstance(values, str):  # NOTE: RunFilters normalises its fields to tuples; typed as they are declared
        values = (values,)
    if len(values) == 1:
        where.append(f"{column} = :{key}")
        params[key] = values[0]
    else:
        where.append(f"{column} = ANY(CAST(:{key} AS text[]))")
        params[key] = list(values)


def filter_clauses(filters: RunFilters, where: list[str], params: dict[str, Any]) -> bool:
    """Append the WHERE clauses of ``filters``; ``False`` when no run can match (skip the query)."""
    if filters.tenant_id is not None:
        if not 0 < filters.tenant_id <= MAX_BIGINT:
            return False  # no run can have this tenant id (tenant_id > 0, bigint)
        where.append("tenant_id = :tenant_id")  # APPSEC: narrows within the caller's scope, never widens it
        params["tenant_id"] = filters.tenant_id
    if filters.status:
        _one_or_any("status", "status", filters.status, where, params)
    if filters.outcome == ("pending",):
        # PERF: pending is exactly "live" (CHECK runwatch_state); said that way, the live index serves it.
        where.append("status IN ('queued', 'running')")
    elif filters.outcome:
        _one_or_any("outcome", "outcome", filters.outcome, where, params)
    if filters.type:
        _one_or_any("type", "type", filters.type, where, params)
    if filters.freshness_state is not None:
        where.append(FRESHNESS_WHERE[filters.freshness_state])
    if filters.reconciled is not None:
        where.append("reconciled_at IS NOT NULL" if filters.reconciled else "reconciled_at IS NULL")
    if filters.reconciliation_source is not None:
        # PERF: a source implies reconciled (CHECK); saying so lets the reconciled index serve it.
        # (Here the redundant clause costs no estimate: reconciliation_source is NULL exactly when it is.)
        where.append("reconciled_at IS NOT NULL AND reconciliation_source = :source")
        params["source"] = filters.reconciliation_source
    if filters.reason_code is not None:
        where.append("reconciled_at IS NOT NULL AND reason_code = :reason_code")
        params["reason_code"] = filters.reason_code
    for column in ("queue_name", "actor_name", "message_id"):
        value = getattr(filters, column)
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    if filters.message_family is not None:
        where.append(FAMILY_OF_MESSAGE)
        params["message_family"] = filters.message_family
    if filters.created_after is not None:
        where.append("created_at >= :created_after")
        params["created_after"] = filters.created_after
    if filters.created_before is not None:
        where.append("created_at < :created_before")
        params["created_before"] = filters.created_before
    return True
