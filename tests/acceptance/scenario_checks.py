"""The invariants particular to one scenario, beyond the checker's own (checker.py).

Each factory takes what the scenario knows (the ids it sent, exit codes, a time window) and
returns a check over the final ledger, ``check(ledger, verdict)``, as ``World.finish`` takes them:
plain functions, so that test_scenario_checks.py can break each of them without servers.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping

from .history import History, Ledger, Verdict

Check = Callable[[Ledger, Verdict], None]


def no_healer_reconciliation(why: str) -> Check:
    """PostgreSQL outage: the healer reconciled nothing (every run was healthy, only unrecorded)."""

    def check(ledger: Ledger, v: Verdict) -> None:
        for run in ledger.runs.values():
            v.check(
                "no_healthy_run_reconciled",
                run["reconciliation_source"] != "scheduled_reconciler",
                lambda r=run: f"run {r['id']} healed ({r['reason_code']}) {why}: {r['reconciliation_evidence']}",
            )

    return check


def vanished_healed_with_evidence(vanished: Collection[str]) -> Check:
    """Redis restarted empty: the vanished messages' runs are stale_queued with the keys looked in; the rest ran."""

    def check(ledger: Ledger, v: Verdict) -> None:
        for message_id, run in ledger.runs.items():
            if message_id in vanished:
                e = run["reconciliation_evidence"] or {}
                v.check(
                    "vanished_message_reconciled",
                    run["reason_code"] == "run.stale_queued" and "message_found_in" in e
                    and e["message_found_in"] is None and bool(e.get("looked_for_message_in"))
                    and e.get("broker_checked") is True,
                    lambda r=run: f"run {r['id']}: {r['reason_code']} with {r['reconciliation_evidence']}",
                )  # fmt: skip
            else:
                v.check(
                    "nothing_else_touched",
                    run["reconciled_at"] is None and run["outcome"] == "succeeded",
                    lambda r=run: f"run {r['id']} ended {r['outcome']} ({r['reason_code']})",
                )

    return check


def deliveries_equal(ids: Iterable[str], expected: int, invariant: str) -> Check:
    """Each of ``ids`` was delivered exactly ``expected`` times, by the ledger's count."""
    ids = list(ids)

    def check(ledger: Ledger, v: Verdict) -> None:
        for message_id in ids:
            run = ledger.runs[message_id]
            says = lambda r=run: f"run {r['id']}: {r['deliveries']} deliveries, expected {expected}"  # noqa: E731
            v.check(invariant, run["deliveries"] == expected, says)

    return check


def duplicates_counted_once(twice: Iterable[str]) -> Check:
    """A message enqueued twice: two deliveries, two completions, exactly one of them late."""
    twice = list(twice)

    def check(ledger: Ledger, v: Verdict) -> None:
        for message_id in twice:
            run, events = ledger.runs[message_id], ledger.events[message_id]
            completions = [e for e in events if e["kind"] == "completed"]
            v.check(
                "duplicate_counted_once",
                run["deliveries"] == 2 and len(completions) == 2 and sum(e["late"] for e in completions) == 1,
                lambda r=run, c=completions: f"run {r['id']}: deliveries {r['deliveries']}, "
                f"completions (late?) {[e['late'] for e in c]}",
            )

    return check


def every_pass_finished(codes: Mapping[str, int | None]) -> Check:
    """Concurrent healers and scans: every process exited 0 (no deadlock), every run reconciled."""

    def check(ledger: Ledger, v: Verdict) -> None:
        for name, code in codes.items():
            v.check("no_deadlock", code == 0, lambda n=name, c=code: f"{n} exited {c} (None: still running)")
        for run in ledger.runs.values():
            v.check("reconciled", run["reconciled_at"] is not None, lambda r=run: f"run {r['id']} not reconciled")

    return check


def reconciliation_stands(ids: Iterable[str]) -> Check:
    """A frozen worker's late success: the failure callback's reconciliation stands, the success is a late event."""
    ids = list(ids)

    def check(ledger: Ledger, v: Verdict) -> None:
        for message_id in ids:
            run = ledger.runs[message_id]
            late = [e for e in ledger.events[message_id] if e["late"] and e["kind"] == "completed"]
            v.check(
                "late_success_is_an_event",
                run["reconciliation_source"] == "failed_callback" and run["outcome"] == "failed"
                and [e["details"].get("outcome") for e in late] == ["succeeded"],
                lambda r=run, e=late: f"run {r['id']}: {r['outcome']} by {r['reconciliation_source']}, late {e}",
            )  # fmt: skip

    return check


def all_succeeded(invariant: str) -> Check:
    """SIGTERM: no run failed, neither the ones that finished in the grace nor the ones redelivered."""

    def check(ledger: Ledger, v: Verdict) -> None:
        for run in ledger.runs.values():
            v.check(invariant, run["outcome"] == "succeeded", lambda r=run: f"run {r['id']}: {r['outcome']}")

    return check


def acked_during(history: History, since: float, until: float, what: str) -> Check:
    """The load went on while ``what`` happened: workers acked jobs in [since, until), per their journal."""

    def check(ledger: Ledger, v: Verdict) -> None:
        acks = sum(1 for ln in history.journal if ln["k"] == "ack" and since <= ln["t"] < until)
        v.check("fault_hit", acks > 0, lambda: f"no job acked while {what} ({since:.1f}..{until:.1f})")

    return check


def api_results(results: Iterable[tuple[str, bool, str]]) -> Check:
    """The API clients' results (api_probe.py), each one API request check, counted apart."""
    results = list(results)

    def check(ledger: Ledger, v: Verdict) -> None:
        for invariant, ok, detail in results:
            v.api_check(invariant, ok, lambda d=detail: d)

    return check



def survived_broker_restart(ids: Iterable[str]) -> Check:
    """RabbitMQ restarted: durable queues and persistent messages survive, so nothing is lost or healed.

    Every run succeeded without a reconciliation. A job the worker held when the connection closed
    (running, or prefetched and not started) is back in the queue and delivered again, while
    Dramatiq still runs the copy it held: at most two deliveries, the second one's outcome late.
    (Not exactly two: Dramatiq acks the first delivery with its stale tag on the new channel,
    where that tag may be the redelivery's.) A job ready in the queue or delayed ran once.
    """
    ids = list(ids)

    def check(ledger: Ledger, v: Verdict) -> None:
        for message_id in ids:
            run = ledger.runs[message_id]
            v.check(
                "nothing_lost_or_healed",
                run["outcome"] == "succeeded" and run["reconciled_at"] is None,
                lambda r=run: f"run {r['id']} ended {r['outcome']} ({r['reason_code']})",
            )
            late = [e["late"] for e in ledger.events[message_id] if e["kind"] == "completed"]
            v.check(
                "redelivery_is_late",
                run["deliveries"] in (1, 2) and sorted(late) == [False, True][: run["deliveries"]],
                lambda r=run, c=late: f"run {r['id']}: deliveries {r['deliveries']}, completions (late?) {c}",
            )

    return check
