"""Every list query must be able to walk an index in (created_at, id) order: never sort a table.

The test database is tiny, so the planner would happily sort; with sorting disabled, any plan
that still contains a Sort node has no index that yields the order (e.g. ORDER BY bound to a
text column of the same name, or a filter that implies no usable partial index).
"""

from __future__ import annotations

import pytest
from sqlalchemy import event

from runwatch.queries import Position, RunFilters, list_runs

FILTERS = [
    RunFilters(),
    RunFilters(status="queued"),
    RunFilters(outcome="pending"),
    RunFilters(freshness_state="likely_stale"),
    RunFilters(freshness_state="fresh_active"),
    RunFilters(freshness_state="reconciled_failed"),
    RunFilters(reconciled=True),
    RunFilters(reconciliation_source="failed_callback"),
    RunFilters(type="invoices.sync"),
    RunFilters(tenant_id=1),
]


@pytest.mark.parametrize("filters", FILTERS, ids=repr)
@pytest.mark.parametrize("tenants", [None, frozenset({1})], ids=["all", "one-tenant"])
def test_list_queries_walk_an_index(engine, world, filters, tenants):
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith("SELECT"):
            captured.append((statement, parameters))

    with engine.connect() as conn:
        conn.exec_driver_sql("SET enable_sort = off")
        after = Position(conn.exec_driver_sql("SELECT now()").scalar_one(), 10**6)  # a cursor page
        event.listen(conn, "before_cursor_execute", capture)
        list_runs(conn, tenant_ids=tenants, filters=filters, after=after, limit=51)
        event.remove(conn, "before_cursor_execute", capture)
        ((statement, parameters),) = captured
        plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + statement, parameters).scalars())
        conn.rollback()
    assert "Sort" not in plan, plan
