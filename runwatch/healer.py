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
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, Engine

from . import statements as sql
from .lookups import last_pass, record_pass
from .reasons import ADAPTER_OUT_OF_SYNC, INFRASTRUCTURE_ENDED, STALE_QUEUED, STALE_RUNNING, Reason
from .settings import (
    DEFAULT_CEILING_MARGIN_SECONDS,
    DEFAULT_CRASH_WINDOW_SECONDS,
    DEFAULT_MAX_CRASH_REDELIVERIES,
    DEFAULT_OUTAGE_GRACE_SECONDS,
    Settings,
)
from .thresholds import ThresholdPolicy

#: Any constant; the same in every process.
HEAL_LOCK_KEY = 0x52574845  # "RWHE"
PASS_NAME = "healer"
#: Its own row, so that passes during the grace do not overwrite when the outage was seen.
OUTAGE_PASS_NAME = "healer_broker_outage"
DEFAULT_LIMIT = 10_000
#: A pass stalled this long between two statements loses its session, and the lock with it.
DEFAULT_PASS_IDLE_TIMEOUT_SECONDS = 30.0
#: A dead letter younger than this may still have its failure callback's event on the way.
DEAD_LETTER_GRACE_SECONDS = 10.0
#: Used as the ceiling when an actor has no time limit.
DEFAULT_TIME_LIMIT_MS = 600_000


@dataclass(frozen=True)
class Observation:
    """What the broker said about one run's message and worker."""

    checked: bool  # False: the broker could not be asked (no Redis id recorded)
    found_in: str | None = None  # "queue" or "delay_queue"
    looked_in: tuple[str, ...] = ()
    worker_alive: bool | None = None
    heartbeat_age_seconds: float | None = None
    detail: str | None = None
    holder: str | None = None  # the worker whose in-flight set holds the message, when found_in is "in_flight"
    dead_letter_key: str | None = None  # where it lies, when found_in is "dead_letters"
    holder_queue: str | None = None  # the queue of the holder's in-flight set (``<q>`` or ``<q>.DQ``)
    dead_letter_age_seconds: float | None = None  # since the nack, when found_in is "dead_letters"


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
    duration_ms: float = 0.0
    decisions: list[dict[str, Any]] = field(default_factory=list)

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


def decide(run: dict[str, Any], obs: Observation, options: HealOptions) -> dict[str, Any]:
    """The healer's verdict on one stale run: ``{"action": "reconcile"|"skip", ...evidence}``."""
    now: datetime = run["db_now"]
    queued = run["status"] == "queued"
    threshold = run["queued_stale_seconds"] if queued else run["running_stale_seconds"]
    since = (
        run["created_at"]
        if queued
        else max(t for t in (run["last_progress_at"], run["started_at"], run["created_at"], run["next_retry_at"]) if t)
    )
    evidence: dict[str, Any] = {
        "status_seen": run["status"],
        "threshold_seconds": threshold,
        "threshold_source": run["threshold_source"],
        "stale_at": run["stale_at"].isoformat(),
        "age_seconds": round((now - since).total_seconds(), 3),
        "last_progress_at": run["last_progress_at"].isoformat() if run["last_progress_at"] else None,
        "worker_id": obs.holder or run["worker_id"],
        "worker_alive": obs.worker_alive,
        "heartbeat_age_seconds": obs.heartbeat_age_seconds,
        "looked_for_message_in": list(obs.looked_in),
        "message_found_in": obs.found_in,
        "broker_checked": obs.checked,
        "checked_at": now.isoformat(),
    }
    if obs.detail:
        evidence["broker_detail"] = obs.detail
    if obs.found_in in ("queue", "delay_queue"):
        why = (
            "backlog: the broker still holds the message"
            if queued
            else "message back in the broker, awaiting redelivery"
        )
        return {"action": "skip", "why": "backlog" if queued else "requeued", "note": why, **evidence}
    if obs.found_in == "dead_letters":
        evidence["dead_letter_key"] = obs.dead_letter_key
        evidence["dead_letter_age_seconds"] = obs.dead_letter_age_seconds
        if (obs.dead_letter_age_seconds or 0) < DEAD_LETTER_GRACE_SECONDS:
            # NOTE: the failure callback's event may be on its way (the nack came first); it has
            # the better evidence (the exception), so give it the time to arrive.
            note = "dead-lettered moments ago: the failure callback's event may still be on its way"
            return {"action": "skip", "why": "dead_letter_fresh", "note": note, **evidence}
        # NOTE: the failure callback's event never reached the ledger (its worker died right after
        # the nack): the broker's own record of the failure is better evidence than staleness.
        evidence["redis_message_id"] = run["redis_message_id"]
        evidence["note"] = "the broker dead-lettered the message; its failure never reached the ledger"
        return _reconcile(ADAPTER_OUT_OF_SYNC, evidence)
    if obs.found_in == "in_flight" and not obs.worker_alive:
        # NOTE: the message is not lost: Dramatiq would redeliver it after the heartbeat timeout
        # anyway. Failing the run now would contradict the redelivery's outcome, so hand it back.
        note = "held by a dead worker: handed back to its queue for redelivery"
        return {"action": "requeue", "why": "requeued_from_dead_worker", "note": note, **evidence}
    if not queued and obs.worker_alive and run["next_retry_at"] is not None and obs.found_in == "in_flight":
        # NOTE: a retry not started yet (a start clears next_retry_at): prefetched by a live worker
        # whose threads are busy. Backlog, like a message in the queue; its time limit has not begun.
        note = "retry waiting in a live worker's prefetch: not started, so not past any time limit"
        return {"action": "skip", "why": "retry_waiting", "note": note, **evidence}
    if not queued and obs.worker_alive:
        limit_ms = run["time_limit_ms"] or DEFAULT_TIME_LIMIT_MS
        ceiling = since + timedelta(milliseconds=limit_ms, seconds=options.ceiling_margin_seconds)
        evidence["hard_ceiling_at"] = ceiling.isoformat()
        if now < ceiling:
            return {
                "action": "skip",
                "why": "worker_alive",
                "note": "slow, not dead: its worker heartbeats",
                **evidence,
            }
        evidence["note"] = "worker heartbeats but the run is past its time limit plus margin"
    return _reconcile(STALE_QUEUED if queued else STALE_RUNNING, evidence)


def _reconcile(reason: Reason, evidence: dict[str, Any]) -> dict[str, Any]:
    return {
        "action": "reconcile",
        "reason_code": reason.code,
        "reason_message": reason.message,
        "source": reason.source.value,
        **evidence,
    }


def heal_once(
    engine: Engine, locator: Locator, policy: ThresholdPolicy, options: HealOptions = HealOptions()
) -> HealResult:
    """One healing pass; single-flight across every process via a transaction-scoped advisory lock."""
    started = time.time()
    result = HealResult(dry_run=options.dry_run)
    with engine.begin() as conn:
        if not conn.execute(sql.TRY_XACT_LOCK, {"key": HEAL_LOCK_KEY}).scalar():
            result.locked_out = True
            return result
        conn.execute(sql.PASS_IDLE_TIMEOUT, {"ms": str(int(options.idle_timeout_seconds * 1000))})
        conn.execute(sql.HEALER_PLANNER_SETTINGS)
        in_flight = locator.unapplied_message_ids()
        result.paused = _pause_reason(conn, in_flight, options)
        if not result.paused:
            _stop_poison_pills(conn, locator, options, result)
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
            if result.paused and verdict["action"] != "skip":
                verdict = {**verdict, "action": "skip", "why": "paused", "note": result.paused}
            elif in_flight and run["message_id"] in in_flight and verdict["action"] != "skip":
                # NOTE: its own events (progress, an outcome) are on their way to the ledger.
                note = "events of this run are in the stream, not yet in the ledger"
                verdict = {**verdict, "action": "skip", "why": "events_in_flight", "note": note}
            result.decisions.append({"id": run["id"], **verdict})
            requeue = verdict["action"] == "requeue" and not options.dry_run
            holder, queue = obs.holder or run["worker_id"], obs.holder_queue or run["queue_name"]
            if requeue and not locator.requeue_in_flight(queue, holder, run["redis_message_id"]):
                verdict = {**verdict, "note": "the dead worker's message moved meanwhile; looked again next pass"}
            if verdict["action"] == "reconcile":
                reconcile.append(
                    {
                        "id": run["id"],
                        "status": run["status"],
                        "reason_code": verdict["reason_code"],
                        "reason_message": verdict["reason_message"],
                        "source": verdict["source"],
                        "evidence": _evidence(verdict),
                    }
                )
            else:
                result.skipped[verdict["why"]] += 1
                notes.append({"id": run["id"], "note": _evidence(verdict)})
        if not options.dry_run:
            result.reconciled = _write(conn, reconcile, notes)
        result.duration_ms = (time.time() - started) * 1000
        if not options.dry_run:
            record_pass(conn, PASS_NAME, started=started, duration_ms=result.duration_ms, result=result.as_dict())
    return result


def _stop_poison_pills(conn: Connection, locator: Locator, options: HealOptions, result: HealResult) -> None:
    """Dead-letter crash-looping messages waiting in their queue, and fail their runs with the deliveries."""
    params = {"window": options.crash_window_seconds, "max_crash": options.max_crash_redeliveries}
    for run in conn.execute(sql.POISON_CANDIDATES, {**params, "limit": options.limit}).mappings().all():
        evidence = {
            "poison_pill": True,
            "crash_redeliveries": run["deliveries"] - run["attempts"],
            "max_crash_redeliveries": options.max_crash_redeliveries,
            "window_seconds": options.crash_window_seconds,
            "attempts": run["attempts"],
            "deliveries": run["deliveries"],
            "deliveries_in_window": run["deliveries_seen"],
        }
        result.decisions.append({"id": run["id"], "action": "dead_letter", **evidence})
        if options.dry_run or not run["redis_message_id"]:
            continue
        key = locator.dead_letter_if_queued(run["queue_name"], run["redis_message_id"])
        if key is None:
            # NOTE: in flight right now (or gone): the next crash requeues it and the next pass catches it.
            result.skipped["poison_in_flight"] += 1
            continue
        evidence["dead_letter_key"] = key
        reason = INFRASTRUCTURE_ENDED
        update = {
            "id": run["id"],
            "reason_code": reason.code,
            "reason_message": reason.message,
            "evidence": json.dumps(evidence, default=str),
        }
        if conn.execute(sql.RECONCILE_POISON, update).rowcount:
            result.poison_pills += 1


def record_broker_outage(engine: Engine, exc: BaseException) -> None:
    """Called when a pass could not reach the broker: starts the outage grace for later passes."""
    with engine.begin() as conn:
        record_pass(
            conn,
            OUTAGE_PASS_NAME,
            started=time.time(),
            duration_ms=0,
            result={"error": f"broker unreachable: {type(exc).__name__}", "broker_outage": True},
        )


def _pause_reason(conn: Connection, in_flight: set[str] | None, options: HealOptions) -> str | None:
    if in_flight is None:
        return "ledger catching up: more run events in the stream than one pass can inspect"
    previous = last_pass(conn, OUTAGE_PASS_NAME)
    if previous:
        since = conn.exec_driver_sql(
            "SELECT extract(epoch FROM now() - %(t)s)", {"t": previous["finished_at"]}
        ).scalar()
        if since < options.outage_grace_seconds:
            return f"outage grace: the broker was unreachable {float(since):.0f} s ago"
    return None


def _write(conn: Connection, reconcile: list[dict[str, Any]], notes: list[dict[str, Any]]) -> int:
    if notes:
        conn.execute(sql.NOTE_SKIPPED, {"rows": json.dumps(notes)})
    if not reconcile:
        return 0
    return conn.execute(sql.RECONCILE_STALE, {"rows": json.dumps(reconcile)}).rowcount


def _evidence(verdict: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in verdict.items() if k not in ("action", "reason_code", "reason_message", "source")}
