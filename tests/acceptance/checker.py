"""The history checker: every invariant, evaluated over the final database state after a scenario.

Inputs are what the scenario did (messages sent, faults injected), what the workers did (their
journals: tests/acceptance/actors.py) and the ledger as PostgreSQL holds it at the end. Nothing is
read from logs. Each invariant is checked once per run it concerns; every check is counted, every
violation is named with its run, so that the report can say "N checks, 0 violations" and mean it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from runwatch.reasons import CATALOGUE

from .actors import EXPECTED, QUEUE, RAISES

TERMINAL_EVENT_KINDS = ("completed", "dead_lettered", "reconciled")


@dataclass
class History:
    """What a scenario did, in its own words: the client side of the history."""

    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # message id -> {"mode", "tenant"}
    journal: list[dict[str, Any]] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    dead_lettered_by_test: set[str] = field(default_factory=set)  # nacked by the scenario, not a worker
    lossless: bool = True  # no process died: every start a worker made reached the ledger
    heal_interval_seconds: float = 1.0
    slack_seconds: float = 5.0  # beyond threshold + heal interval: heartbeat timeout, outages

    def send(self, message_id: str, mode: str, tenant: int | None) -> None:
        self.sent[message_id] = {"mode": mode, "tenant": tenant}


@dataclass
class Verdict:
    checks: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def check(self, invariant: str, ok: bool, detail: Callable[[], str]) -> bool:
        self.checks[invariant] += 1
        if not ok:
            self.violations.append(f"{invariant}: {detail()}")
        return ok

    @property
    def total(self) -> int:
        return sum(self.checks.values())


@dataclass
class Ledger:
    runs: dict[str, dict[str, Any]]
    events: dict[str, list[dict[str, Any]]]

    @classmethod
    def read(cls, engine: Engine) -> Ledger:
        with engine.connect() as conn:
            runs = {r["message_id"]: dict(r) for r in conn.execute(text("SELECT * FROM operation_runs")).mappings()}
            events: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for e in conn.execute(text("SELECT * FROM run_events ORDER BY at, id")).mappings():
                events[e["message_id"]].append(dict(e))
        return cls(runs, events)


def check(engine: Engine, history: History, extra: Iterable[Callable[[Ledger, Verdict], None]] = ()) -> Verdict:
    return evaluate(Ledger.read(engine), history, extra)


def evaluate(ledger: Ledger, history: History, extra: Iterable[Callable[[Ledger, Verdict], None]] = ()) -> Verdict:
    verdict = Verdict()
    journal = _by_message(history.journal)
    for message_id, sent in history.sent.items():
        run = ledger.runs.get(message_id)
        if not verdict.check("one_run_per_message", run is not None, lambda m=message_id: f"no run for {m}"):
            continue
        _check_run(verdict, history, run, sent, ledger.events.get(message_id, []), journal.get(message_id, []))
    for message_id in ledger.runs.keys() - history.sent.keys():
        verdict.check("one_run_per_message", False, lambda m=message_id: f"a run for {m}, which was never sent")
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

    # Every acked or dead-lettered delivery's outcome is in the ledger (late or not).
    completed = [e for e in events if e["kind"] == "completed"]
    v.check(
        "acked_outcome_recorded",
        len(completed) >= len(acks_ok) and all(e["details"].get("outcome") == EXPECTED[mode] for e in completed),
        lambda: f"{rid}: {len(acks_ok)} acks, completed events {[e['details'].get('outcome') for e in completed]}",
    )
    # A nack is a dead letter: its event (the callback's), or the run reconciled from the dead letter.
    dead = [e for e in events if e["kind"] == "dead_lettered"]
    if nacks:
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
        _check_evidence(v, rid, run)
        _check_in_time(v, rid, run, history)
    else:
        # No fabricated outcome: a normal terminal state is one the job itself reached.
        v.check("no_fabricated_outcome", bool(done_ok), lambda: f"{rid}: {run['outcome']} but the job never returned")
        v.check(
            "no_fabricated_outcome",
            run["outcome"] == EXPECTED[mode],
            lambda: f"{rid}: outcome {run['outcome']}, expected {EXPECTED[mode]}",
        )

    # Deliveries and attempts are counted.
    if run["started_at"] is not None or starts:
        v.check(
            "deliveries_counted",
            1 <= run["deliveries"] <= len(starts) if history.lossless else run["deliveries"] <= len(starts),
            lambda: f"{rid}: deliveries {run['deliveries']}, journal starts {len(starts)}",
        )
        if history.lossless:
            v.check(
                "deliveries_counted",
                run["deliveries"] == len(starts),
                lambda: f"{rid}: deliveries {run['deliveries']} != journal starts {len(starts)}",
            )
    if mode == "flaky" and run["reconciled_at"] is None:
        v.check("attempts_counted", run["attempts"] >= 2, lambda: f"{rid}: attempts {run['attempts']}")


def _check_evidence(v: Verdict, rid: str, run: dict[str, Any]) -> None:
    e, code = run["reconciliation_evidence"] or {}, run["reason_code"]
    if e.get("poison_pill"):
        # The healer's crash-loop stop (README: poison pills): infrastructure abandonment, decided by
        # the scheduled reconciler, proven by more crash redeliveries than allowed and the dead letter.
        v.check(
            "reconciliation_evidence",
            run["reconciliation_source"] == "scheduled_reconciler"
            and code == "run.infrastructure_timeout_or_abandonment"
            and len(e.get("deliveries_in_window") or ()) > e.get("max_crash_redeliveries", 1 << 30)
            and bool(e.get("dead_letter_key")),
            lambda: f"{rid}: poison pill {run['reconciliation_source']} / {code} without its proof: {e}",
        )
        return
    v.check(
        "reconciliation_evidence",
        bool(e) and code in CATALOGUE and CATALOGUE[code].source.value == run["reconciliation_source"],
        lambda: f"{rid}: {run['reconciliation_source']} / {code} with evidence {e}",
    )
    if code == "run.stale_queued":
        ok = bool(e.get("looked_for_message_in")) and e.get("message_found_in") is None
    elif code == "run.stale_running":
        ok = e.get("poison_pill") or e.get("worker_alive") is not True or "hard_ceiling_at" in e
    elif code == "run.adapter_out_of_sync":
        ok = bool(e.get("dead_letter_key"))
    else:  # the failure callback: what failed, and where the dead letter is
        ok = bool(e.get("exception_type")) and bool(e.get("dead_letter_key"))
    v.check("reconciliation_evidence", bool(ok), lambda: f"{rid}: {code} evidence lacks its proof: {e}")


def _check_in_time(v: Verdict, rid: str, run: dict[str, Any], history: History) -> None:
    """A stale run is healed within its threshold + one healer interval (+ the scenario's slack)."""
    e = run["reconciliation_evidence"] or {}
    if run["reconciliation_source"] != "scheduled_reconciler" or e.get("poison_pill"):
        return
    queued = e.get("status_seen") == "queued"
    basis: datetime = (
        run["created_at"]
        if queued
        else max(t for t in (run["last_progress_at"], run["started_at"], run["created_at"], run["next_retry_at"]) if t)
    )
    threshold = run["queued_stale_seconds"] if queued else run["running_stale_seconds"]
    bound = basis + timedelta(seconds=threshold + history.heal_interval_seconds + history.slack_seconds)
    late = lambda: f"{rid}: reconciled {run['reconciled_at']} > {bound}"  # noqa: E731
    v.check("healed_in_time", run["reconciled_at"] <= bound, late)


def _by_message(journal: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in journal:
        out[line["m"]].append(line)
    return out
