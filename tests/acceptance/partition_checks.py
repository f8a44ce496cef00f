"""The partition scenario's own checks (test_partition.py): the cut hit running jobs, and had its effects.

Each ``Round`` is one partition: the host cut off, when, and the started jobs it held; the checks
judge every held job's journal lines and ledger rows after the scenario (see test_partition_checks.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .actors import EXPECTED
from .checker import Ledger, Verdict
from .world import World


@dataclass
class Round:
    isolated: str
    other: str
    cut_at: float
    held: list[str]  # started on the isolated host, not finished there, when it was cut off
    healed_at: float = 0.0
    pids: dict[str, set[int]] = field(default_factory=dict)


def _acks_given_up(lines: list[dict[str, Any]], rounds: list[Round]) -> int:
    """Held jobs the isolated host finished but never acked: Dramatiq gave the ack up (issue #894)."""
    acked = {(ln["m"], ln["p"]) for ln in lines if ln["k"] == "ack"}
    return sum(
        1
        for r in rounds
        for ln in lines
        if ln["k"] == "done" and ln["m"] in r.held and ln["p"] in r.pids[r.isolated] and (ln["m"], ln["p"]) not in acked
    )


def partition_checks(world: World, rounds: list[Round]):
    """The fault hit what it meant to hit, and had the effects it should have (per held job)."""

    def check(ledger: Ledger, v: Verdict) -> None:
        journal = world.history.journal
        world.figures["isolated_acks_given_up"] = _acks_given_up(journal, rounds)  # read once every process ended
        for run in ledger.runs.values():
            v.check(
                "no_run_failed_by_partition",
                run["reconciled_at"] is None
                and run["outcome"] == EXPECTED[world.history.sent[run["message_id"]]["mode"]],
                lambda r=run: f"run {r['id']}: {r['outcome']} ({r['reason_code']})",
            )
        for r in rounds:
            v.check("partition_held_jobs", bool(r.held), lambda r=r: f"{r.isolated} held no started job at the cut")
            for message_id in r.held:
                _check_held(v, r, message_id, ledger, [ln for ln in journal if ln["m"] == message_id])

    return check


def _check_held(v: Verdict, r: Round, message_id: str, ledger: Ledger, lines: list[dict[str, Any]]) -> None:
    run, events = ledger.runs[message_id], ledger.events[message_id]
    rid = f"run {run['id']} (held by {r.isolated})"
    mine = [ln for ln in lines if ln["p"] in r.pids[r.isolated]]
    theirs = [ln for ln in lines if ln["p"] in r.pids[r.other]]
    started = [ln["t"] for ln in mine if ln["k"] == "start"]
    done = [ln["t"] for ln in mine if ln["k"] == "done"]
    v.check(
        "partition_hit_a_running_job",
        any(t <= r.cut_at for t in started) and not any(t <= r.cut_at for t in done),
        lambda: f"{rid}: started {started}, done {done}, cut at {r.cut_at}",
    )
    v.check(
        "redelivered_on_the_other_host",
        any(ln["k"] == "start" and r.cut_at < ln["t"] for ln in theirs)
        and any(ln["k"] == "ack" and ln["ok"] and ln["t"] < r.healed_at for ln in theirs),
        lambda: f"{rid}: {r.other}'s lines {theirs}",
    )
    # NOTE: its ack may be missing (Dramatiq gives up an ack whose reply timed out); none is early.
    for t in [ln["t"] for ln in mine if ln["k"] == "ack"]:
        v.check("isolated_ack_after_heal", t >= r.healed_at, lambda t=t: f"{rid}: acked at {t}, healed {r.healed_at}")
    completions = [e for e in events if e["kind"] == "completed"]
    late = [e for e in completions if e["late"]]
    own_done = max(done, default=0.0)
    their_done = max((ln["t"] for ln in theirs if ln["k"] == "done"), default=0.0)
    v.check(
        "isolated_completion_is_late",
        len(completions) == 2 and len(late) == 1
        and abs(late[0]["at"].timestamp() - own_done) < abs(late[0]["at"].timestamp() - their_done)
        and late[0]["recorded_at"].timestamp() >= r.healed_at,
        lambda: f"{rid}: completions (late, at, recorded) "
        f"{[(e['late'], e['at'], e['recorded_at']) for e in completions]}; done {own_done} / {their_done}",
    )  # fmt: skip
    v.check(
        "redelivery_counted",
        run["deliveries"] == 2 and run["reconciled_at"] is None,
        lambda: f"{rid}: deliveries {run['deliveries']}, reconciled {run['reason_code']}",
    )
