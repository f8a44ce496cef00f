"""A small world of runs covering every lifecycle state for several tenants, inserted with SQL.

Each run's expected freshness and reconciliation are known here, so tests compute expected
results in Python and compare them with what the API answers.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

_INSERT = text("""
INSERT INTO operation_runs (
    message_id, type, type_label, queue_name, actor_name, status, outcome, tenant_id, initiator_name,
    operator_message, summary_counts, failure_summary, attempts, deliveries, max_retries, last_error,
    worker_id, queued_stale_seconds, running_stale_seconds, threshold_source, created_at, started_at,
    last_progress_at, completed_at, reconciled_at, reconciliation_source, reason_code, reason_message,
    reconciliation_evidence)
VALUES (
    :message_id, :type, :type_label, 'default', :type, :status, :outcome, :tenant_id, :initiator,
    :message, CAST(:summary AS jsonb), CAST(:failures AS jsonb), :attempts, :attempts, 3, CAST(:last_error AS jsonb),
    :worker_id, 3600, 900, 'default',
    now() - make_interval(secs => :age),
    CASE WHEN CAST(:status AS text) <> 'queued' THEN now() - make_interval(secs => :age) END,
    CASE WHEN CAST(:status AS text) = 'running' THEN now() - make_interval(secs => :progress_age) END,
    CASE WHEN CAST(:status AS text) = 'completed' THEN now() - make_interval(secs => :age / 2) END,
    CASE WHEN CAST(:source AS text) IS NOT NULL THEN now() - make_interval(secs => :age / 2) END,
    :source, :reason_code, :reason_message, CAST(:evidence AS jsonb))
RETURNING id
""")

_REASONS = {
    "failed_callback": ("run.queue_failure_bridge", "Queue failure was reconciled"),
    "scheduled_reconciler": ("run.stale_running", "Run stopped reporting progress"),
    "adapter_reconciler": ("run.adapter_out_of_sync", "Lifecycle was reconciled from related records"),
}

#: (status, outcome, source, freshness, age seconds, progress age seconds) of each state seeded per tenant.
STATES: list[tuple[str, str, str | None, str, int, int]] = [
    ("queued", "pending", None, "fresh_active", 60, 0),
    ("queued", "pending", None, "likely_stale", 7200, 0),
    ("running", "pending", None, "fresh_active", 120, 10),
    ("running", "pending", None, "likely_stale", 7200, 3600),
    ("completed", "succeeded", None, "terminal_normal", 300, 0),
    ("completed", "partially_succeeded", None, "terminal_normal", 400, 0),
    ("completed", "blocked", None, "terminal_normal", 500, 0),
    ("completed", "failed", None, "terminal_normal", 600, 0),
    ("completed", "failed", "failed_callback", "reconciled_failed", 700, 0),
    ("completed", "failed", "scheduled_reconciler", "reconciled_failed", 800, 0),
    ("completed", "failed", "adapter_reconciler", "reconciled_failed", 900, 0),
]
TENANTS: list[int | None] = [1, 2, None, 3]
TYPES = ("invoices.sync", "reports.render")


@dataclass
class Run:
    id: int
    status: str
    outcome: str
    source: str | None
    freshness: str
    tenant_id: int | None
    type: str
    age: float
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def reconciled(self) -> bool:
        return self.source is not None


def insert_run(
    conn: Connection,
    *,
    status: str = "completed",
    outcome: str = "succeeded",
    source: str | None = None,
    tenant_id: int | None = 1,
    type_: str = TYPES[0],
    age: float = 60,
    progress_age: float = 0,
    message: str | None = "done",
) -> int:
    reason_code, reason_message = _REASONS[source] if source else (None, None)
    params = {
        "message_id": uuid.uuid4().hex, "type": type_, "type_label": None if type_ == TYPES[1] else "Sync invoices",
        "status": status, "outcome": outcome, "tenant_id": tenant_id, "initiator": "alice" if tenant_id else None,
        "message": message, "summary": json.dumps({"processed": 3, "total": 4} if status == "completed" else {}),
        "failures": json.dumps([{"code": "billing.declined", "message": "Card declined"}] * (outcome == "failed")),
        "attempts": 2, "last_error": json.dumps({"type": "ValueError", "message": "boom"}),
        "worker_id": "host-1:123", "age": age, "progress_age": progress_age, "source": source,
        "reason_code": reason_code, "reason_message": reason_message,
        "evidence": json.dumps({"threshold_seconds": 900, "worker_alive": False}) if source else None,
    }  # fmt: skip
    return conn.execute(_INSERT, params).scalar_one()


def seed_world(conn: Connection) -> list[Run]:
    """Every state for every tenant (and no tenant), alternating two types; distinct ages."""
    runs = []
    for t_index, tenant in enumerate(TENANTS):
        for s_index, (status, outcome, source, freshness, age, progress_age) in enumerate(STATES):
            type_ = TYPES[(t_index + s_index) % 2]
            age_s = age + t_index * 7 + s_index * 0.5
            run_id = insert_run(
                conn, status=status, outcome=outcome, source=source, tenant_id=tenant, type_=type_,
                age=age_s, progress_age=progress_age,
            )  # fmt: skip
            runs.append(Run(run_id, status, outcome, source, freshness, tenant, type_, age_s))
    return runs


def newest_first(runs: list[Run]) -> list[int]:
    return [r.id for r in sorted(runs, key=lambda r: (r.age, -r.id))]
