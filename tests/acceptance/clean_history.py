"""A history that keeps every invariant, with a run for every branch the checker has.

test_checker.py evaluates it clean (every invariant must be evaluated and pass) and then breaks
one branch at a time. Times are seconds after ``T0``; journal lines are those of actors.Journal.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from .history import History, Hit, Ledger

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
DLQ = "dramatiq:acc.XQ"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ts(seconds: float) -> float:
    return at(seconds).timestamp()


def run(run_id: int, message_id: str, **over: Any) -> dict[str, Any]:
    return {
        "id": run_id, "message_id": message_id, "tenant_id": 1, "status": "completed", "outcome": "succeeded",
        "created_at": T0, "started_at": at(1), "last_progress_at": at(2), "next_retry_at": None,
        "reconciled_at": None, "reconciliation_source": None, "reason_code": None, "reconciliation_evidence": None,
        "healer_note": None, "deliveries": 1, "attempts": 1, "queued_stale_seconds": 3, "running_stale_seconds": 2,
        **over,
    }  # fmt: skip


def healed(run_id: int, message_id: str, code: str, evidence: dict[str, Any], **over: Any) -> dict[str, Any]:
    source = {"run.queue_failure_bridge": "failed_callback", "run.adapter_out_of_sync": "adapter_reconciler"}
    return run(
        run_id, message_id, outcome="failed", reconciled_at=at(6), reason_code=code, reconciliation_evidence=evidence,
        reconciliation_source=source.get(code, "scheduled_reconciler"), **over,
    )  # fmt: skip


def event(kind: str, seconds: float, late: bool = False, **details: Any) -> dict[str, Any]:
    return {"kind": kind, "late": late, "at": at(seconds), "details": details}


def line(kind: str, m: str, seconds: float, p: int = 1, th: int = 1, **extra: Any) -> dict[str, Any]:
    return {"k": kind, "m": m, "q": "acc", "t": ts(seconds), "p": p, "g": p * 10, "th": th, **extra}


def delivery(m: str, start: float, end: float, *, p: int = 1, attempt: int = 1, error: str | None = None):
    """A delivery's journal: started, returned (or raised ``error``), acked."""
    ok = error is None
    return [
        line("start", m, start, p, attempt=attempt),
        line("done", m, end, p, ok=ok, error=error),
        line("ack", m, end + 0.1, p, ok=ok),
    ]


def clean() -> tuple[Ledger, History]:
    """A run for every branch, each as it should be."""
    history = History()
    for message_id, mode in (("ok1", "ok"), ("flaky1", "flaky"), ("lost", "ok"), ("stuck", "ok"), ("slow", "ok"),
                             ("raise1", "raise"), ("adapter", "ok"), ("poison", "ok")):  # fmt: skip
        history.send(message_id, mode, 1)
    history.dead_lettered_by_test.add("adapter")
    queued_gone = {"status_seen": "queued", "looked_for_message_in": ["dramatiq:acc.msgs"], "message_found_in": None}
    running = {"status_seen": "running", "looked_for_message_in": ["dramatiq:acc.msgs"], "message_found_in": None}
    poison = {"poison_pill": True, "max_crash_redeliveries": 3, "dead_letter_key": DLQ,
              "deliveries_in_window": [{"attempt": 1}] * 4}  # fmt: skip
    ledger = Ledger(
        runs={
            "ok1": run(1, "ok1"),
            "flaky1": run(2, "flaky1", deliveries=2, attempts=2),
            "lost": healed(3, "lost", "run.stale_queued", queued_gone, started_at=None, last_progress_at=None,
                           deliveries=0),  # fmt: skip
            "stuck": healed(4, "stuck", "run.stale_running", {**running, "worker_alive": False}),
            "slow": healed(5, "slow", "run.stale_running",
                           {**running, "worker_alive": True, "hard_ceiling_at": at(5).isoformat()}),  # fmt: skip
            "raise1": healed(6, "raise1", "run.queue_failure_bridge",
                             {"exception_type": "ValueError", "dead_letter_key": DLQ}, deliveries=2, attempts=2),
            "adapter": healed(7, "adapter", "run.adapter_out_of_sync", {"dead_letter_key": DLQ, "note": "dead letter"},
                              started_at=None, last_progress_at=None, deliveries=0),  # fmt: skip
            "poison": healed(8, "poison", "run.infrastructure_timeout_or_abandonment", poison, deliveries=4),
        },
        events={
            "ok1": [event("started", 1), event("completed", 3, outcome="succeeded")],
            "flaky1": [event("started", 1), event("attempt_failed", 2), event("started", 2.5),
                       event("completed", 3.5, outcome="succeeded")],  # fmt: skip
            "lost": [event("reconciled", 6, source="scheduled_reconciler")],
            "stuck": [event("started", 1), event("reconciled", 6, source="scheduled_reconciler")],
            "slow": [event("started", 1), event("reconciled", 6, source="scheduled_reconciler")],
            "raise1": [event("started", 1), event("started", 2), event("dead_lettered", 3)],
            "adapter": [event("reconciled", 6, source="adapter_reconciler")],
            "poison": [event("started", n) for n in (1, 2, 3, 4)] + [event("reconciled", 6)],
        },
    )
    history.journal = [
        *delivery("ok1", 1, 3),
        *delivery("flaky1", 1, 2, error="builtins.ConnectionError"),
        *delivery("flaky1", 2.5, 3.5, attempt=2),
        line("start", "stuck", 1, p=2),  # its worker (group 20) died holding it
        line("start", "slow", 1, p=3),  # its worker heartbeats, the job never ends
        line("start", "raise1", 1, attempt=1),
        line("done", "raise1", 1.5, ok=False, error="builtins.ValueError"),
        line("ack", "raise1", 1.6, ok=False),
        line("start", "raise1", 2, attempt=2),
        line("done", "raise1", 2.5, ok=False, error="builtins.ValueError"),
        line("nack", "raise1", 2.6),
        *[line("start", "poison", n, p=10 + n) for n in (1, 2, 3, 4)],  # four crashes of a crash loop
    ]
    history.hits = [
        Hit("worker_sigkill", ts(1.5), ("stuck",), group=20),
        Hit("worker_sigterm", ts(2), ("ok1",), group=10, done_by=ts(4)),  # ended in the shutdown's grace
    ]
    return ledger, history
