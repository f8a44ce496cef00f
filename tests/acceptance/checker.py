"""The history checker: every invariant, evaluated over the final database state after a scenario.

Inputs are what the scenario did (messages sent, faults injected and what each was meant to hit),
what the workers did (their journals: tests/acceptance/actors.py) and the ledger as PostgreSQL
holds it at the end. Nothing is read from logs. A check is counted only when it compared
something; every violation is named with its run, so that "N checks, 0 violations" means it.
The scenario-specific invariants live in scenario_checks.py; test_checker.py breaks every branch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from runwatch.reasons import CATALOGUE

from .actors import EXPECTED, QUEUE, RAISES
from .history import History, Hit, Ledger, Verdict, by_message, finished_between, in_flight

__all__ = ["History", "Hit", "Ledger", "Verdict", "check", "evaluate"]

TERMINAL_EVENT_KINDS = ("completed", "dead_lettered", "reconciled")
Extra = Callable[[Ledger, Verdict], None]


def check(engine: Engine, history: History, extra: Iterable[Extra] = ()) -> Verdict:
    return evaluate(Ledger.read(engine), history, extra)


def evaluate(ledger: Ledger, history: History, extra: Iterable[Extra] = ()) -> Verdict:
    verdict = Verdict()
    journal = by_message(history.journal)
    for message_id, sent in history.sent.items():
        run = ledger.runs.get(message_id)
        if not verdict.check("one_run_per_message", run is not None, lambda m=message_id: f"no run for {m}"):
            continue
        _check_run(verdict, history, run, sent, ledger.events.get(message_id, []), journal.get(message_id, []))
    for message_id in ledger.runs.keys() - history.sent.keys():
        verdict.check("one_run_per_message", False, lambda m=message_id: f"a run for {m}, which was never sent")
    for hit in history.hits:
        _check_hit(verdict, hit, journal)
    for more in extra:
        more(ledger, verdict)
    return verdict


def _check_run(
    v: Verdict,
    history: History,
    run: dict[str, Any],
    sent: dict[str, Any],
    events: list[dict[str, Any]],
    lines: list[dict[str, Any]],
) -> None:
    rid, mode = f"run {run['id']} ({sent['mode']})", sent["mode"]
    v.check("run_fields", run["tenant_id"] == sent["tenant"], lambda: f"{rid}: tenant {run['tenant_id']}")
    stuck = lambda: f"{rid} is still {run['status']}; healer: {run['healer_note']}"  # noqa: E731
    if not v.check("all_terminal", run["status"] == "completed", stuck):
        return

    # One terminal transition, and the row agrees with it.
    terminal = [e for e in events if e["kind"] in TERMINAL_EVENT_KINDS and not e["late"]]
    if v.check("one_terminal_transition", len(terminal) == 1, lambda: f"{rid}: {len(terminal)} terminal events"):
        first = terminal[0]
        agrees = (
            first["details"].get("outcome") == run["outcome"] and run["reconciled_at"] is None
            if first["kind"] == "completed"
            else run["reconciled_at"] is not None and run["outcome"] == "failed"
        )
        v.check("one_terminal_transition", agrees, lambda: f"{rid}: row disagrees with its {first['kind']} event")

    starts = [ln for ln in lines if ln["k"] == "start"]
    done_ok = [ln for ln in lines if ln["k"] == "done" and ln["ok"]]
    acks_ok = [ln for ln in lines if ln["k"] == "ack" and ln["ok"] and ln["q"] == QUEUE]
    nacks = [ln for ln in lines if ln["k"] == "nack"]

    # No delivery failed for any reason but its job's own (not the recorder, not an outage).
    for ln in lines:
        if ln["k"] == "done" and not ln["ok"]:
            v.check(
                "no_job_failed_by_runwatch",
                ln.get("error") in RAISES.get(mode, ()),
                lambda ln=ln: f"{rid}: a delivery failed with {ln.get('error')}",
            )

    # Every acked delivery's outcome is in the ledger (late or not); a nack's dead letter too.
    completed = [e for e in events if e["kind"] == "completed"]
    if acks_ok:
        v.check(
            "acked_outcome_recorded",
            len(completed) >= len(acks_ok) and all(e["details"].get("outcome") == EXPECTED[mode] for e in completed),
            lambda: f"{rid}: {len(acks_ok)} acks, completed events {[e['details'].get('outcome') for e in completed]}",
        )
    if nacks:
        dead = [e for e in events if e["kind"] == "dead_lettered"]
        v.check(
            "nacked_outcome_recorded",
            bool(dead) or run["reconciliation_source"] == "adapter_reconciler",
            lambda: f"{rid}: nacked, yet {run['outcome']} by {run['reconciliation_source']} ({run['reason_code']})",
        )

    if run["reconciled_at"] is not None:
        # No false failure: nothing had finished and been acked when the run was reconciled.
        early = [ln for ln in acks_ok if ln["t"] < run["reconciled_at"].timestamp()]
        v.check("no_false_failure", not early, lambda: f"{rid}: acked at {early[0]['t']} before reconciled")
        if run["reconciliation_source"] == "scheduled_reconciler":
            # The healer only reconciles a message that is gone: no delivery of it may succeed later.
            v.check("no_false_failure", not acks_ok, lambda: f"{rid}: healed, then a delivery of it acked")
        if run["reconciliation_source"] == "failed_callback":
            v.check(
                "no_false_failure",
                bool(nacks) or run["message_id"] in history.dead_lettered_by_test,
                lambda: f"{rid}: failed_callback reconciliation without a nack",
            )
        _check_evidence(v, rid, run, lines)
        _check_in_time(v, rid, run, history)
    else:
        # No fabricated outcome: a normal terminal state is one the job itself reached.
        v.check("no_fabricated_outcome", bool(done_ok), lambda: f"{rid}: {run['outcome']} but the job never returned")
        v.check(
            "no_fabricated_outcome",
            run["outcome"] == EXPECTED[mode],
            lambda: f"{rid}: outcome {run['outcome']}, expected {EXPECTED[mode]}",
        )
    _check_counts(v, rid, history, run, starts, acks_ok)


def _check_counts(
    v: Verdict,
    rid: str,
    history: History,
    run: dict[str, Any],
    starts: list[dict[str, Any]],
    acks_ok: list[dict[str, Any]],
) -> None:
    """Deliveries and attempts agree with the journal: exactly when no process died, bounded when one did."""
    if run["reconciled_at"] is None:
        # The job ran and its outcome was recorded: the delivery that reached it was counted
        # (the bug the suite once found: deliveries = 0 on a completed run).
        v.check("deliveries_counted", run["deliveries"] >= 1, lambda: f"{rid}: completed with 0 deliveries")
    if starts or run["deliveries"]:
        exact = history.lossless
        ok = run["deliveries"] == len(starts) if exact else run["deliveries"] <= len(starts)
        says = "!=" if exact else ">"
        v.check("deliveries_counted", ok, lambda: f"{rid}: deliveries {run['deliveries']} {says} journal starts "
                f"{len(starts)}")  # fmt: skip
    if not starts:
        return
    journaled = max(ln.get("attempt", 1) for ln in starts)
    if history.lossless:
        v.check("attempts_counted", run["attempts"] == journaled,
                lambda: f"{rid}: attempts {run['attempts']}, journal {journaled}")  # fmt: skip
        return
    # A killed delivery's start may be lost, never invented; the acked delivery's start shipped with its outcome.
    acked = max((_attempt_of(ack, starts) for ack in acks_ok), default=1)
    v.check("attempts_counted", acked <= run["attempts"] <= journaled,
            lambda: f"{rid}: attempts {run['attempts']}, journal {acked}..{journaled}")  # fmt: skip


def _attempt_of(line: dict[str, Any], starts: list[dict[str, Any]]) -> int:
    """The attempt of the delivery a later line (an ack) of the same process belongs to."""
    own = [s for s in starts if s["p"] == line["p"] and s["t"] <= line["t"]]
    return max(own, key=lambda s: s["t"]).get("attempt", 1) if own else 1


def _check_evidence(v: Verdict, rid: str, run: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    e, code, source = run["reconciliation_evidence"] or {}, run["reason_code"], run["reconciliation_source"]
    if e.get("poison_pill"):
        _check_poison_pill(v, rid, run, e, lines)
        return
    v.check(
        "reconciliation_evidence",
        bool(e) and code in CATALOGUE and CATALOGUE[code].source.value == source,
        lambda: f"{rid}: {source} / {code} with evidence {e}",
    )
    if code == "run.stale_queued":
        ok = bool(e.get("looked_for_message_in")) and "message_found_in" in e and e["message_found_in"] is None
    elif code == "run.stale_running":
        ok = e.get("worker_alive") is False or (e.get("worker_alive") is True and _past_ceiling(e, run))
    elif code == "run.adapter_out_of_sync":
        ok = bool(e.get("dead_letter_key"))
    else:  # the failure callback: what failed, and where the dead letter is
        ok = bool(e.get("exception_type")) and bool(e.get("dead_letter_key"))
    v.check("reconciliation_evidence", ok, lambda: f"{rid}: {code} evidence lacks its proof: {e}")


def _past_ceiling(e: dict[str, Any], run: dict[str, Any]) -> bool:
    """A live worker's run is healed only once its hard ceiling had passed when it was reconciled."""
    try:
        ceiling = datetime.fromisoformat(e["hard_ceiling_at"])
    except (KeyError, TypeError, ValueError):
        return False
    return ceiling <= run["reconciled_at"]


def _check_poison_pill(
    v: Verdict, rid: str, run: dict[str, Any], e: dict[str, Any], lines: list[dict[str, Any]]
) -> None:
    """The healer's crash-loop stop (README: poison pills), proven by the workers' own journal.

    Infrastructure abandonment decided by the scheduled reconciler, with the dead letter, and the
    journal shows more deliveries than the limit allows, as many of them crashes (started, never
    returned) as the limit: the healer's counts are not taken on their own word.
    """
    limit = e.get("max_crash_redeliveries")
    starts = sorted((ln for ln in lines if ln["k"] == "start"), key=lambda ln: ln["t"])
    crashes = [s for s in starts if not finished_between(lines, s, s["t"], _next_start(s, starts))]
    seen = e.get("deliveries_in_window") or ()
    v.check(
        "reconciliation_evidence",
        run["reconciliation_source"] == "scheduled_reconciler"
        and run["reason_code"] == "run.infrastructure_timeout_or_abandonment"
        and bool(e.get("dead_letter_key")),
        lambda: f"{rid}: poison pill {run['reconciliation_source']} / {run['reason_code']}: {e}",
    )
    v.check(
        "reconciliation_evidence",
        isinstance(limit, int) and len(starts) > limit and len(crashes) >= limit and len(seen) <= len(starts),
        lambda: f"{rid}: poison pill (limit {limit}, {len(seen)} deliveries seen by the healer) but the journal has "
        f"{len(starts)} starts, {len(crashes)} of them crashes",
    )


def _next_start(start: dict[str, Any], starts: list[dict[str, Any]]) -> float:
    """When the same worker thread started this message again (a delivery ends before its next one)."""
    later = [s["t"] for s in starts if s["t"] > start["t"] and (s["p"], s.get("th")) == (start["p"], start.get("th"))]
    return min(later, default=float("inf"))


def _check_in_time(v: Verdict, rid: str, run: dict[str, Any], history: History) -> None:
    """A stale run is healed within its threshold + one healer interval (+ the scenario's slack)."""
    e = run["reconciliation_evidence"] or {}
    if run["reconciliation_source"] != "scheduled_reconciler" or e.get("poison_pill"):
        return
    queued = e.get("status_seen") == "queued"
    basis: datetime = (
        max(run["created_at"], run["next_retry_at"] or run["created_at"])  # a delayed send: from its eta
        if queued
        else max(t for t in (run["last_progress_at"], run["started_at"], run["created_at"], run["next_retry_at"]) if t)
    )
    threshold = run["queued_stale_seconds"] if queued else run["running_stale_seconds"]
    bound = basis + timedelta(seconds=threshold + history.heal_interval_seconds + history.slack_seconds)
    late = lambda: f"{rid}: reconciled {run['reconciled_at']} > {bound}"  # noqa: E731
    v.check("healed_in_time", run["reconciled_at"] <= bound, late)


def _check_hit(v: Verdict, hit: Hit, journal: dict[str, list[dict[str, Any]]]) -> None:
    """The fault hit what it meant to hit: each delivery it was to catch was in flight when it struck."""
    where = f" in group {hit.group}" if hit.group is not None else ""
    if not v.check("fault_hit", bool(hit.held), lambda: f"{hit.fault} at {hit.at}: meant to catch no delivery"):
        return
    for message_id in hit.held:
        lines = journal.get(message_id, [])
        start = in_flight(lines, hit.at, hit.group)
        v.check("fault_hit", start is not None,
                lambda m=message_id: f"{hit.fault} at {hit.at}: no delivery of {m} in flight{where}")  # fmt: skip
        if start is not None and hit.done_by is not None:
            v.check(
                "fault_hit",
                finished_between(lines, start, hit.at, hit.done_by),
                lambda m=message_id: f"{hit.fault} at {hit.at}: {m} did not finish before {hit.done_by}",
            )
