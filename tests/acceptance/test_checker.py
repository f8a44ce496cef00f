"""The checker can fail: every branch of every invariant, fed a history that breaks it, is reported.

No servers: a ledger is built in memory. The clean history has a run for every branch (a retried
run, each reconciliation source and reason, a poison pill, faults that hit what they meant to), so
that every invariant is evaluated on it and passes; each mutation then breaks one branch and the
test requires that branch's violation (its invariant and its wording), so a checker that checks
nothing, or checks the wrong thing, fails here. ``MUTATIONS`` and the scenario checks' own table
(test_scenario_checks.py) are the mutation count the README gives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .checker import History, Hit, Ledger, evaluate
from .clean_history import at, clean, event, line, run, ts

ALL_INVARIANTS = {
    "one_run_per_message", "all_terminal", "one_terminal_transition", "acked_outcome_recorded",
    "nacked_outcome_recorded", "no_false_failure", "no_fabricated_outcome", "no_job_failed_by_runwatch",
    "reconciliation_evidence", "healed_in_time", "deliveries_counted", "attempts_counted", "run_fields", "fault_hit",
}  # fmt: skip


def test_a_clean_history_passes_and_evaluates_every_invariant() -> None:
    verdict = evaluate(*clean())
    assert verdict.violations == []
    assert set(verdict.checks) == ALL_INVARIANTS and verdict.api_checks == {}
    assert verdict.checks["attempts_counted"] == 6  # every run with journaled starts, the retried one included


def test_a_check_is_counted_only_when_it_compared_something() -> None:
    """Only the two runs with acks count an acked-outcome check; only the nacked one a nacked-outcome check."""
    verdict = evaluate(*clean())
    assert (verdict.checks["acked_outcome_recorded"], verdict.checks["nacked_outcome_recorded"]) == (2, 1)


def _set(message: str, **over: Any) -> Callable[[Ledger, History], None]:
    return lambda ledger, history: ledger.runs[message].update(over)


def _evidence(message: str, **over: Any) -> Callable[[Ledger, History], None]:
    return lambda ledger, history: ledger.runs[message]["reconciliation_evidence"].update(over)


def _drop_evidence(message: str, key: str) -> Callable[[Ledger, History], None]:
    return lambda ledger, history: ledger.runs[message]["reconciliation_evidence"].pop(key)


def _journal(*lines: dict[str, Any]) -> Callable[[Ledger, History], None]:
    return lambda ledger, history: history.journal.extend(lines)


def _drop_line(kind: str, message: str) -> Callable[[Ledger, History], None]:
    def mutate(ledger: Ledger, history: History) -> None:
        history.journal.remove(next(ln for ln in history.journal if ln["k"] == kind and ln["m"] == message))

    return mutate


def _lossy(then: Callable[[Ledger, History], None]) -> Callable[[Ledger, History], None]:
    def mutate(ledger: Ledger, history: History) -> None:
        history.lossless = False
        then(ledger, history)

    return mutate


def _hit(index: int, **over: Any) -> Callable[[Ledger, History], None]:
    def mutate(ledger: Ledger, history: History) -> None:
        hit = history.hits[index]
        history.hits[index] = Hit(**{**hit.__dict__, **over})

    return mutate


def _both(*mutations: Callable[[Ledger, History], None]) -> Callable[[Ledger, History], None]:
    def mutate(ledger: Ledger, history: History) -> None:
        for m in mutations:
            m(ledger, history)

    return mutate


def _pop_event(message: str, kind: str) -> Callable[[Ledger, History], None]:
    def mutate(ledger: Ledger, history: History) -> None:
        ledger.events[message].remove(next(e for e in ledger.events[message] if e["kind"] == kind))

    return mutate


def _event_detail(message: str, kind: str, **details: Any) -> Callable[[Ledger, History], None]:
    return lambda ledger, history: next(e for e in ledger.events[message] if e["kind"] == kind)["details"].update(
        details
    )


#: (invariant, a fragment of the expected violation, the mutation): one per branch of the checker.
MUTATIONS: dict[str, tuple[str, str, Callable[[Ledger, History], None]]] = {
    "sent message without a run": ("one_run_per_message", "no run for ok1", lambda lg, h: lg.runs.pop("ok1")),
    "run of an unsent message": ("one_run_per_message", "never sent", lambda lg, h: lg.runs.update(ghost=run(9, "g"))),
    "run left running": ("all_terminal", "is still running", _set("ok1", status="running", outcome="pending")),
    "two terminal events": (
        "one_terminal_transition", "2 terminal events",
        lambda lg, h: lg.events["ok1"].append(event("completed", 5, outcome="succeeded")),
    ),
    "no terminal event": ("one_terminal_transition", "0 terminal events", _pop_event("lost", "reconciled")),
    "row outcome differs from its completed event": (
        "one_terminal_transition", "disagrees with its completed event",
        _event_detail("ok1", "completed", outcome="blocked"),
    ),
    "completed run carries a reconciliation": (
        "one_terminal_transition", "disagrees with its completed event", _set("ok1", reconciled_at=at(9)),
    ),
    "reconciled run with a non-failed outcome": (
        "one_terminal_transition", "disagrees with its reconciled event", _set("lost", outcome="succeeded"),
    ),
    "dead-lettered run without its reconciliation": (
        "one_terminal_transition", "disagrees with its dead_lettered event", _set("raise1", reconciled_at=None),
    ),
    "job failed by a database error": (
        "no_job_failed_by_runwatch", "sqlalchemy.exc.OperationalError",
        _journal(line("done", "ok1", 2, ok=False, error="sqlalchemy.exc.OperationalError")),
    ),
    "job failed by redis's ConnectionError, not its own": (
        "no_job_failed_by_runwatch", "redis.exceptions.ConnectionError",
        _journal(line("done", "flaky1", 3, ok=False, error="redis.exceptions.ConnectionError")),
    ),
    "acked delivery without its completed event": (
        "acked_outcome_recorded", "1 acks, completed events []", _pop_event("ok1", "completed"),
    ),
    "acked delivery recorded with another outcome": (
        "acked_outcome_recorded", "'succeeded', 'failed'",
        lambda lg, h: lg.events["ok1"].append(event("completed", 5, late=True, outcome="failed")),
    ),
    "nack without its dead letter event": (
        "nacked_outcome_recorded", "nacked, yet", _pop_event("raise1", "dead_lettered"),
    ),
    "acked before it was reconciled": (
        "no_false_failure", "before reconciled", _journal(line("ack", "raise1", 3, ok=True)),
    ),
    "healed, then acked": ("no_false_failure", "healed, then", _journal(line("ack", "lost", 10, ok=True))),
    "callback reconciliation without a nack": ("no_false_failure", "without a nack", _drop_line("nack", "raise1")),
    "outcome the job never reached": ("no_fabricated_outcome", "never returned", _drop_line("done", "ok1")),
    "outcome other than the mode's": (
        "no_fabricated_outcome", "outcome blocked, expected succeeded",
        _both(_set("ok1", outcome="blocked"), _event_detail("ok1", "completed", outcome="blocked")),
    ),
    "reconciled without evidence": (
        "reconciliation_evidence", "with evidence {}", _set("lost", reconciliation_evidence={}),
    ),
    "reason code outside the catalogue": (
        "reconciliation_evidence", "run.made_up", _set("lost", reason_code="run.made_up"),
    ),
    "reason code of another source": (
        "reconciliation_evidence", "adapter_reconciler / run.stale_queued",
        _set("lost", reconciliation_source="adapter_reconciler"),
    ),
    "stale_queued, message found": (
        "reconciliation_evidence", "lacks its proof", _evidence("lost", message_found_in="queue"),
    ),
    "stale_queued, looked nowhere": (
        "reconciliation_evidence", "lacks its proof", _drop_evidence("lost", "looked_for_message_in"),
    ),
    "stale_queued, where it was found not said": (
        "reconciliation_evidence", "lacks its proof", _drop_evidence("lost", "message_found_in"),
    ),
    "stale_running, worker_alive missing": (
        "reconciliation_evidence", "run.stale_running evidence", _drop_evidence("stuck", "worker_alive"),
    ),
    "stale_running, live worker without a ceiling": (
        "reconciliation_evidence", "run.stale_running evidence", _drop_evidence("slow", "hard_ceiling_at"),
    ),
    "stale_running, live worker before its ceiling": (
        "reconciliation_evidence", "run.stale_running evidence", _evidence("slow", hard_ceiling_at=at(60).isoformat()),
    ),
    "adapter_out_of_sync without its dead letter": (
        "reconciliation_evidence", "run.adapter_out_of_sync evidence", _drop_evidence("adapter", "dead_letter_key"),
    ),
    "failure callback without the exception": (
        "reconciliation_evidence", "run.queue_failure_bridge evidence", _drop_evidence("raise1", "exception_type"),
    ),
    "failure callback without its dead letter": (
        "reconciliation_evidence", "run.queue_failure_bridge evidence", _drop_evidence("raise1", "dead_letter_key"),
    ),
    "poison pill with another reason": (
        "reconciliation_evidence", "poison pill", _set("poison", reason_code="run.stale_running"),
    ),
    "poison pill without its dead letter": (
        "reconciliation_evidence", "poison pill", _drop_evidence("poison", "dead_letter_key"),
    ),
    "poison pill, journal starts within the limit": (
        "reconciliation_evidence", "journal has 3 starts",
        _both(_set("poison", deliveries=3), lambda lg, h: h.journal.remove(h.journal[-1])),
    ),
    "poison pill, journal deliveries returned": (
        "reconciliation_evidence", "2 of them crashes",
        _journal(line("done", "poison", 1.5, p=11, ok=True), line("done", "poison", 2.5, p=12, ok=True)),
    ),
    "poison pill, healer saw deliveries the journal has not": (
        "reconciliation_evidence", "6 deliveries seen", _evidence("poison", deliveries_in_window=[{"attempt": 1}] * 6),
    ),
    "stale queued run healed late": ("healed_in_time", "reconciled", _set("lost", reconciled_at=at(60))),
    "stale running run healed late": ("healed_in_time", "reconciled", _set("stuck", reconciled_at=at(60))),
    "more deliveries than started": (
        "deliveries_counted", "deliveries 2 != journal starts 1", _set("ok1", deliveries=2),
    ),
    "fewer deliveries than started": (
        "deliveries_counted", "deliveries 1 != journal starts 2", _journal(line("start", "ok1", 4, p=2)),
    ),
    "lossy: more deliveries than started": (
        "deliveries_counted", "deliveries 2 > journal starts 1", _lossy(_set("ok1", deliveries=2)),
    ),
    "lossy: completed run whose delivery is not counted": (
        "deliveries_counted", "completed with 0 deliveries", _lossy(_set("ok1", deliveries=0)),
    ),
    "retried run with its retry not counted": ("attempts_counted", "attempts 1, journal 2", _set("flaky1", attempts=1)),
    "lossy: acked retry not counted": (
        "attempts_counted", "attempts 1, journal 2..2", _lossy(_set("flaky1", attempts=1)),
    ),
    "lossy: more attempts than journaled": (
        "attempts_counted", "attempts 3, journal 1..1", _lossy(_set("ok1", attempts=3)),
    ),
    "tenant changed": ("run_fields", "tenant 2", _set("ok1", tenant_id=2)),
    "fault meant to catch nothing": ("fault_hit", "meant to catch no delivery", _hit(0, held=())),
    "fault caught a message never started": ("fault_hit", "no delivery of lost in flight", _hit(0, held=("lost",))),
    "fault struck before the delivery started": ("fault_hit", "no delivery of stuck", _hit(0, at=ts(0.5))),
    "fault struck after the delivery ended": ("fault_hit", "no delivery of ok1", _hit(1, at=ts(3.5), done_by=ts(9))),
    "fault hit another worker group": ("fault_hit", "in group 99", _hit(0, group=99)),
    "held delivery did not end in time": ("fault_hit", "did not finish before", _hit(1, done_by=ts(2.5))),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_branch_reports_its_violation(name: str) -> None:
    invariant, fragment, mutate = MUTATIONS[name]
    ledger, history = clean()
    mutate(ledger, history)
    violations = evaluate(ledger, history).violations
    assert any(v.startswith(f"{invariant}:") and fragment in v for v in violations), violations


def test_every_invariant_has_a_mutation() -> None:
    assert {invariant for invariant, _, _ in MUTATIONS.values()} == ALL_INVARIANTS
