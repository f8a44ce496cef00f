"""The checker's inputs and its tally: what a scenario did, what the workers journaled, the ledger.

``History`` is the client side (messages sent, faults injected and the deliveries each fault was
meant to catch in flight), ``Ledger`` the final database state, ``Verdict`` the count of checks
(history invariants and API request results apart) and the violations, each named with its run.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text


@dataclass(frozen=True)
class Hit:
    """A fault injected at ``at`` (epoch seconds) and the deliveries it was meant to catch in flight.

    ``held``: messages a delivery of which had started and not finished at ``at`` (per the journal),
    in the worker process group ``group`` when the fault hit one worker; ``done_by``: when set, each
    of those deliveries also finished after the fault and before this time (a short job in a
    shutdown's grace, a job acked while PostgreSQL was down).
    """

    fault: str
    at: float
    held: tuple[str, ...]
    group: int | None = None
    done_by: float | None = None


@dataclass
class History:
    """What a scenario did, in its own words: the client side of the history."""

    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # message id -> {"mode", "tenant"}
    journal: list[dict[str, Any]] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    hits: list[Hit] = field(default_factory=list)
    dead_lettered_by_test: set[str] = field(default_factory=set)  # nacked by the scenario, not a worker
    lossless: bool = True  # no process died: every start a worker made reached the ledger
    heal_interval_seconds: float = 1.0
    slack_seconds: float = 5.0  # beyond threshold + heal interval: heartbeat timeout, outages

    def send(self, message_id: str, mode: str, tenant: int | None) -> None:
        self.sent[message_id] = {"mode": mode, "tenant": tenant}

    def hit(self, fault: str, at: float, held: Iterable[str], **kw: Any) -> None:
        self.hits.append(Hit(fault, at, tuple(held), **kw))


@dataclass
class Verdict:
    checks: Counter[str] = field(default_factory=Counter)  # history invariants, by invariant
    api_checks: Counter[str] = field(default_factory=Counter)  # API request results, by invariant
    violations: list[str] = field(default_factory=list)

    def check(self, invariant: str, ok: bool, detail: Callable[[], str]) -> bool:
        """One comparison of the history with the ledger; call it only when something was compared."""
        self.checks[invariant] += 1
        return self._judge(invariant, ok, detail)

    def api_check(self, invariant: str, ok: bool, detail: Callable[[], str]) -> bool:
        """One API request's result (or one page walk's), counted apart from the history checks."""
        self.api_checks[invariant] += 1
        return self._judge(invariant, ok, detail)

    def _judge(self, invariant: str, ok: bool, detail: Callable[[], str]) -> bool:
        if not ok:
            self.violations.append(f"{invariant}: {detail()}")
        return ok

    @property
    def history_total(self) -> int:
        return sum(self.checks.values())

    @property
    def api_total(self) -> int:
        return sum(self.api_checks.values())

    @property
    def total(self) -> int:
        return self.history_total + self.api_total


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


# -- the journal ---------------------------------------------------------------------------------


def by_message(journal: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in journal:
        out[line["m"]].append(line)
    return out


def _thread(line: dict[str, Any]) -> tuple[Any, Any]:
    """A delivery runs in one worker thread: its start and done lines share process and thread."""
    return line["p"], line.get("th")


def in_flight(lines: list[dict[str, Any]], at: float, group: int | None = None) -> dict[str, Any] | None:
    """The start line of a delivery (of ``group`` when given) that had started and not finished at ``at``."""
    for start in sorted((ln for ln in lines if ln["k"] == "start"), key=lambda ln: ln["t"], reverse=True):
        if start["t"] >= at or (group is not None and start.get("g") != group):
            continue
        finished = any(
            ln["k"] == "done" and _thread(ln) == _thread(start) and start["t"] <= ln["t"] < at for ln in lines
        )
        if not finished:
            return start
    return None


def finished_between(lines: list[dict[str, Any]], start: dict[str, Any], after: float, before: float) -> bool:
    """Whether the delivery that ``start`` began returned (or raised) after ``after`` and before ``before``."""
    return any(ln["k"] == "done" and _thread(ln) == _thread(start) and after <= ln["t"] < before for ln in lines)
