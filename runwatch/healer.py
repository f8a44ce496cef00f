"""The stale-run healer: resolve live runs past their deadline, on broker evidence, never on a guess.

``heal_once`` is the whole pass (STYLE.md §9); the Dramatiq actor, the in-worker schedule and
``runwatch heal`` only call it. Rules (docs/design.md §4):

- queued past its threshold: if the broker still holds the message (queue or delay queue) it is
  backlog and stays ``likely_stale`` with that note; otherwise ``run.stale_queued``.
- running with no progress past its threshold: if the message is back in the broker (a dead
  worker's message requeued) it waits for redelivery; if the worker that holds it still
  heartbeats it is slow, not dead, until the hard ceiling (time limit + margin); otherwise
  ``run.stale_running``.
- outage safety: no reconciliation while the event stream still holds events the ledger has not
  applied (a PostgreSQL outage), nor within ``outage_grace_seconds`` after a pass could not reach
  the broker (a Redis outage: workers' heartbeats and buffered progress need time to come back).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection, Engine

from . import lookups, passes
from . import statements as sql
from .passes import PassStatus
from .poison import stop_poison_pills
from .settings import (
    DEFAULT_CEILING_MARGIN_SECONDS,
    DEFAULT_CRASH_WINDOW_SECONDS,
    DEFAULT_MAX_CRASH_REDELIVERIES,
    DEFAULT_OUTAGE_GRACE_SECONDS,
    Settings,
)
from .thresholds import ThresholdPolicy
from .verdicts import Action, Observation, Verdict, decide

__all__ = ["HealOptions", "HealResult", "Locator", "Observation", "Verdict", "decide", "heal_once"]

PASS_NAME = passes.HEALER.name
#: Its own row, so that passes during the grace do not overwrite when the outage was seen.
OUTAGE_PASS_NAME = "healer_broker_outage"
DEFAULT_LIMIT = 10_000
DEFAULT_PASS_IDLE_TIMEOUT_SECONDS = passes.DEFAULT_IDLE_TIMEOUT_SECONDS


class Locator(Protocol):
    """The broker side of the evidence (``bridge.locator.RedisLocator``)."""

    def requeue_in_flight(self, queue: str, worker_id: str, redis_message_id: str) -> bool: ...

    def observe(self, runs: Sequence[dict[str, Any]]) -> dict[int, Observation]: ...

    def unapplied_message_ids(self) -> set[str] | None:
        """Messages with events shipped but not yet in the ledger; None if too many to tell."""
        ...

    def dead_letter_if_queued(self, queue: str, redis_message_id: str) -> str | None:
        """Move a message waiting in its queue to the dead letters; the dead-letter key, or None if not queued."""
        ...


@dataclass(frozen=True, kw_only=True)
class HealOptions:
    dry_run: bool = False
    limit: int = DEFAULT_LIMIT
    types: Sequence[str] | None = None
    tenants: Sequence[int] | None = None
    ceiling_margin_seconds: float = DEFAULT_CEILING_MARGIN_SECONDS
    outage_grace_seconds: float = DEFAULT_OUTAGE_GRACE_SECONDS
    max_crash_redeliveries: int = DEFAULT_MAX_CRASH_REDELIVERIES
    crash_window_seconds: float = DEFAULT_CRASH_WINDOW_SECONDS
    idle_timeout_seconds: float = DEFAULT_PASS_IDLE_TIMEOUT_SECONDS


def options_from(settings: Settings, **overrides: Any) -> HealOptions:
    """Healer options from ``RUNWATCH_*`` settings, with per-call overrides (CLI flags)."""
    return HealOptions(
        max_crash_redeliveries=settings.max_crash_redeliveries,
        crash_window_seconds=settings.crash_window_seconds,
        outage_grace_seconds=settings.outage_grace_seconds,
        ceiling_margin_seconds=settings.ceiling_margin_seconds,
        **overrides,
    )


@dataclass
class HealResult:
    candidates: int = 0
    reconciled: int = 0
    poison_pills: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    locked_out: bool = False  # another pass holds the lock: this one did nothing
    paused: str | None = None  # why the whole pass only observed
    dry_run: bool = False
    duration_seconds: float = 0.0
    decisions: list[dict[str, Any]] = field(default_factory=list)
    #: The runs this pass ended (``statements._FINISHED_COLUMNS``), for the run counters in /metrics.
    finished: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> PassStatus:
        return PassStatus.PAUSED if self.paused else PassStatus.OK

    @property
    def duration_ms(self) -> float:
        return self.duration_seconds * 1000

    def as_dict(self) -> dict[str, Any]:
        return {
            "candidates": self.candidates,
            "reconciled": self.reconciled,
            "poison_pills": self.poison_pills,
            "skipped": dict(self.skipped),
            "locked_out": self.locked_out,
            "paused": self.paused,
            "dry_run": self.dry_run,
            "duration_ms": round(self.duration_ms, 1),
        }


def heal_once(
    engine: Engine, locator: Locator, policy: ThresholdPolicy, options: HealOptions = HealOptions()
) -> HealResult:
    """One healing pass; single-flight across every process (``passes.run_once``)."""

    def body(conn: Connection, result: HealResult) -> None:
        _heal(conn, locator, policy, options, result)

    return passes.run_once(
        engine,
        passes.HEALER,
        body,
        HealResult(dry_run=options.dry_run),
        idle_timeout_seconds=options.idle_timeout_seconds,
    )


def _heal(
    conn: Connection, locator: Locator, policy: ThresholdPolicy, options: HealOptions, result: HealResult
) -> None:
    conn.execute(sql.HEALER_PLANNER_SETTINGS)
    in_flight = locator.unapplied_message_ids()
    result.paused = _pause_reason(conn, in_flight, options)
    if not result.paused:
        stop_poison_pills(conn, locator.dead_letter_if_queued, options, result)
    runs = [
        dict(r)
        for r in conn.execute(
            sql.HEAL_CANDIDATES,
            {
                "types": list(options.types) if options.types else None,
                "tenants": list(options.tenants) if options.tenants else None,
                "opted_out": policy.opted_out_types(),
                "limit": options.limit,
            },
        ).mappings()
    ]
    result.candidates = len(runs)
    observations = locator.observe(runs) if runs else {}
    reconcile, notes = [], []
    for run in runs:
        obs = observations[run["id"]]
        verdict = decide(run, obs, options)
        if result.paused and verdict.action is not Action.SKIP:
            verdict = verdict.skipped("paused", result.paused)
        elif in_flight and run["message_id"] in in_flight and verdict.action is not Action.SKIP:
            # NOTE: its own events (progress, an outcome) are on their way to the ledger.
            verdict = verdict.skipped("events_in_flight", "events of this run are in the stream, not yet in the ledger")
        result.decisions.append({"id": run["id"], **verdict.as_dict()})
        requeue = verdict.action is Action.REQUEUE and not options.dry_run
        holder, queue = obs.holder or run["worker_id"], obs.holder_queue or run["queue_name"]
        if requeue and not locator.requeue_in_flight(queue, holder, run["redis_message_id"]):
            moved = "the dead worker's message moved meanwhile; looked again next pass"
            verdict = Verdict(verdict.action, verdict.evidence, verdict.why, moved)
        if verdict.action is Action.RECONCILE:
            assert verdict.reason is not None
            reconcile.append(
                {
                    "id": run["id"],
                    "status": run["status"],
                    "reason_code": verdict.reason.code,
                    "reason_message": verdict.reason.message,
                    "source": verdict.reason.source.value,
                    "evidence": verdict.note_evidence(),
                }
            )
        else:
            assert verdict.why is not None
            result.skipped[verdict.why] += 1
            notes.append({"id": run["id"], "note": verdict.note_evidence()})
    if not options.dry_run:
        finished = _write(conn, reconcile, notes)
        result.reconciled = len(finished)
        result.finished.extend(finished)


def record_broker_outage(engine: Engine, exc: BaseException) -> None:
    """Called when a pass could not reach the broker: starts the outage grace for later passes."""
    with engine.begin() as conn:
        passes.record(
            conn,
            OUTAGE_PASS_NAME,
            started=time.time(),
            status=PassStatus.ERROR,
            result={"error": f"broker unreachable: {type(exc).__name__}", "broker_outage": True},
        )


def _pause_reason(conn: Connection, in_flight: set[str] | None, options: HealOptions) -> str | None:
    if in_flight is None:
        return "ledger catching up: more run events in the stream than one pass can inspect"
    previous = passes.last(conn, OUTAGE_PASS_NAME)
    if previous:
        since = lookups.seconds_since(conn, previous["finished_at"])
        if since < options.outage_grace_seconds:
            return f"outage grace: the broker was unreachable {float(since):.0f} s ago"
    return None


def _write(conn: Connection, reconcile: list[dict[str, Any]], notes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Note the skipped runs, reconcile the others; the runs actually reconciled (their guard held)."""
    if notes:
        conn.execute(sql.NOTE_SKIPPED, {"rows": json.dumps(notes)})
    if not reconcile:
        return []
    return [dict(r) for r in conn.execute(sql.RECONCILE_STALE, {"rows": json.dumps(reconcile)}).mappings()]
