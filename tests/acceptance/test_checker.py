"""The checker can fail: each invariant, fed a history that breaks it, reports that invariant.

No servers: a ledger is built in memory. A clean history must pass with checks counted, so a
checker that checks nothing would fail here too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from .checker import History, Ledger, evaluate

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _run(run_id: int, message_id: str, **over: Any) -> dict[str, Any]:
    return {
        "id": run_id, "message_id": message_id, "tenant_id": 1, "status": "completed", "outcome": "succeeded",
        "created_at": T0, "started_at": T0 + timedelta(seconds=1), "last_progress_at": T0 + timedelta(seconds=2),
        "next_retry_at": None, "reconciled_at": None, "reconciliation_source": None, "reason_code": None,
        "reconciliation_evidence": None, "healer_note": None, "deliveries": 1, "attempts": 1,
        "queued_stale_seconds": 3, "running_stale_seconds": 2, **over,
    }  # fmt: skip


def _event(kind: str, at: float, late: bool = False, **details: Any) -> dict[str, Any]:
    return {"kind": kind, "late": late, "at": T0 + timedelta(seconds=at), "details": details}


def _line(kind: str, m: str, t: float, **extra: Any) -> dict[str, Any]:
    return {"k": kind, "m": m, "q": "acc", "t": (T0 + timedelta(seconds=t)).timestamp(), "p": 1, **extra}


def clean() -> tuple[Ledger, History]:
    """Two runs: one that succeeded, one the healer failed after its message was lost."""
    history = History()
    history.send("ok1", "ok", 1)
    history.send("lost", "ok", 1)
    evidence = {"status_seen": "queued", "looked_for_message_in": ["dramatiq:acc.msgs"], "message_found_in": None}
    ledger = Ledger(
        runs={
            "ok1": _run(1, "ok1"),
            "lost": _run(
                2, "lost", outcome="failed", started_at=None, last_progress_at=None, deliveries=0,
                reconciled_at=T0 + timedelta(seconds=4), reconciliation_source="scheduled_reconciler",
                reason_code="run.stale_queued", reconciliation_evidence=evidence,
            ),
        },  # fmt: skip
        events={
            "ok1": [_event("started", 1), _event("completed", 3, outcome="succeeded")],
            "lost": [_event("reconciled", 4, source="scheduled_reconciler")],
        },
    )
    history.journal = [_line("start", "ok1", 1), _line("done", "ok1", 3, ok=True), _line("ack", "ok1", 3.1, ok=True)]
    return ledger, history


def test_a_clean_history_passes_and_counts_its_checks() -> None:
    verdict = evaluate(*clean())
    assert verdict.violations == [] and verdict.total >= 15


def test_a_poison_pill_passes_with_its_proof_and_fails_without() -> None:
    ledger, history = clean()
    evidence = {"poison_pill": True, "max_crash_redeliveries": 3, "dead_letter_key": "dramatiq:acc.XQ",
                "deliveries_in_window": [{"attempt": 1}] * 4}  # fmt: skip
    code = "run.infrastructure_timeout_or_abandonment"
    ledger.runs["lost"].update(reason_code=code, reconciliation_evidence=evidence)
    assert evaluate(ledger, history).violations == []
    evidence["deliveries_in_window"] = [{"attempt": 1}] * 3  # not more than allowed: no proof of a crash loop
    assert [v for v in evaluate(ledger, history).violations if v.startswith("reconciliation_evidence:")]


def _set(message: str, **over: Any) -> Callable[[Ledger, History], None]:
    return lambda ledger, history: ledger.runs[message].update(over)


BREAKS: dict[str, Callable[[Ledger, History], None]] = {
    "one_run_per_message": lambda ledger, history: ledger.runs.pop("ok1"),
    "all_terminal": _set("ok1", status="running", outcome="pending"),
    "one_terminal_transition": lambda ledger, history: ledger.events["ok1"].append(
        _event("completed", 5, outcome="succeeded")
    ),
    "acked_outcome_recorded": lambda ledger, history: ledger.events["ok1"].pop(),
    "no_false_failure": lambda ledger, history: history.journal.append(_line("ack", "lost", 3, ok=True)),
    "no_fabricated_outcome": lambda ledger, history: history.journal.pop(1),
    "deliveries_counted": lambda ledger, history: history.journal.append(_line("start", "ok1", 2)),
    "reconciliation_evidence": lambda ledger, history: ledger.runs["lost"]["reconciliation_evidence"].update(
        message_found_in="queue"
    ),
    "healed_in_time": _set("lost", reconciled_at=T0 + timedelta(seconds=60)),
    "no_job_failed_by_runwatch": lambda ledger, history: history.journal.append(
        _line("done", "ok1", 2, ok=False, error="OperationalError")
    ),
    "run_fields": _set("ok1", tenant_id=2),
    "nacked_outcome_recorded": lambda ledger, history: history.journal.append(_line("nack", "lost", 3)),
}


@pytest.mark.parametrize("invariant", sorted(BREAKS))
def test_each_invariant_reports_its_violation(invariant: str) -> None:
    ledger, history = clean()
    BREAKS[invariant](ledger, history)
    violations = evaluate(ledger, history).violations
    assert any(v.startswith(f"{invariant}:") for v in violations), violations
