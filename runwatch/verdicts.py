"""The healer's rules for one stale run: pure, no database, no broker (``decide``).

``decide(run, observation, options)`` returns a ``Verdict``: reconcile (with its reason),
skip (with why: backlog, worker alive, ...) or requeue (a dead worker's message handed back),
plus the evidence the ledger keeps either way. ``healer.heal_once`` gathers the inputs and
writes the verdicts; this module only judges.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from .reasons import ADAPTER_OUT_OF_SYNC, STALE_QUEUED, STALE_RUNNING, Reason

#: A dead letter younger than this may still have its failure callback's event on the way.
DEAD_LETTER_GRACE_SECONDS = 10.0
#: Used as the ceiling when an actor has no time limit.
DEFAULT_TIME_LIMIT_MS = 600_000


class Options(Protocol):
    """The part of ``healer.HealOptions`` the rules read (read-only: the options are frozen)."""

    @property
    def ceiling_margin_seconds(self) -> float: ...


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
    #: RabbitMQ counts a queue's messages but cannot find one by id without consuming it: then
    #: ``found_in`` says the run's queue holds ready messages (perhaps its own), and ``may_be_held``
    #: whether a consumer may hold it unacked (None: cannot tell, as without the management API).
    counted_only: bool = False
    may_be_held: bool | None = None
    queue_counts: Mapping[str, Any] | None = None  # per queue looked in: ready, consumers, unacked


class Action(StrEnum):
    RECONCILE = "reconcile"
    SKIP = "skip"
    REQUEUE = "requeue"


@dataclass(frozen=True)
class Verdict:
    """The healer's verdict on one stale run."""

    action: Action
    evidence: dict[str, Any] = field(default_factory=dict)
    why: str | None = None  # skip or requeue: counted in ``HealResult.skipped``
    note: str | None = None  # for the operator: the verdict in one sentence
    reason: Reason | None = None  # reconcile: reason code, message and source (kept when a pause skips it)

    def skipped(self, why: str, note: str) -> Verdict:
        """The same verdict turned into a skip (a paused pass, events in flight); the reason stays as evidence."""
        return dataclasses.replace(self, action=Action.SKIP, why=why, note=note)

    def as_dict(self) -> dict[str, Any]:
        """The verdict as the pass reports it (``HealResult.decisions``, ``runwatch heal --explain``)."""
        out: dict[str, Any] = {"action": self.action.value}
        if self.reason is not None:
            out.update(
                reason_code=self.reason.code, reason_message=self.reason.message, source=self.reason.source.value
            )
        if self.why is not None:
            out["why"] = self.why
        if self.note is not None:
            out["note"] = self.note
        return {**out, **self.evidence}

    def note_evidence(self) -> dict[str, Any]:
        """What the ledger keeps (healer_note, reconciliation evidence): all but the verdict's own fields."""
        return {
            k: v for k, v in self.as_dict().items() if k not in ("action", "reason_code", "reason_message", "source")
        }


def decide(run: dict[str, Any], obs: Observation, options: Options) -> Verdict:
    """The healer's verdict on one stale run (a row of ``HEAL_CANDIDATES``) given what the broker said."""
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
    if obs.queue_counts is not None:
        evidence["broker_queue_counts"] = dict(obs.queue_counts)
    if obs.found_in in ("queue", "delay_queue"):
        if queued:
            return Verdict(Action.SKIP, evidence, "backlog", "backlog: the broker still holds the message")
        if obs.counted_only:
            return _counted_in_queue(run, since, evidence, options)
        return Verdict(Action.SKIP, evidence, "requeued", "message back in the broker, awaiting redelivery")
    if obs.found_in == "dead_letters":
        evidence["dead_letter_key"] = obs.dead_letter_key
        evidence["dead_letter_age_seconds"] = obs.dead_letter_age_seconds
        if (obs.dead_letter_age_seconds or 0) < DEAD_LETTER_GRACE_SECONDS:
            # NOTE: the failure callback's event may be on its way (the nack came first); it has
            # the better evidence (the exception), so give it the time to arrive.
            note: str | None = "dead-lettered moments ago: the failure callback's event may still be on its way"
            return Verdict(Action.SKIP, evidence, "dead_letter_fresh", note)
        # NOTE: the failure callback's event never reached the ledger (its worker died right after
        # the nack): the broker's own record of the failure is better evidence than staleness.
        evidence["redis_message_id"] = run["redis_message_id"]
        note = "the broker dead-lettered the message; its failure never reached the ledger"
        return Verdict(Action.RECONCILE, evidence, note=note, reason=ADAPTER_OUT_OF_SYNC)
    if obs.found_in == "in_flight" and not obs.worker_alive:
        # NOTE: the message is not lost: Dramatiq would redeliver it after the heartbeat timeout
        # anyway. Failing the run now would contradict the redelivery's outcome, so hand it back.
        note = "held by a dead worker: handed back to its queue for redelivery"
        return Verdict(Action.REQUEUE, evidence, "requeued_from_dead_worker", note)
    if not queued and obs.worker_alive and run["next_retry_at"] is not None and obs.found_in == "in_flight":
        # NOTE: a retry not started yet (a start clears next_retry_at): prefetched by a live worker
        # whose threads are busy. Backlog, like a message in the queue; its time limit has not begun.
        note = "retry waiting in a live worker's prefetch: not started, so not past any time limit"
        return Verdict(Action.SKIP, evidence, "retry_waiting", note)
    note = None
    if not queued and obs.worker_alive:
        if now < _hard_ceiling(run, since, evidence, options):
            return Verdict(Action.SKIP, evidence, "worker_alive", "slow, not dead: its worker heartbeats")
        note = "worker heartbeats but the run is past its time limit plus margin"
    if obs.counted_only and obs.may_be_held is not False:
        # NOTE: RabbitMQ cannot say which messages a consumer holds unacked; a live consumer
        # holding this run is what a heartbeat says on Redis: slow, not dead, until the ceiling.
        # A queued run's message too: prefetched by a worker whose threads are busy, it is backlog
        # (on Redis the healer finds it in the live worker's in-flight set), not a lost message.
        # A delayed one's wait starts at its eta (``next_retry_at``), as its queued deadline does.
        if now < _hard_ceiling(run, max(since, run["next_retry_at"] or since), evidence, options):
            held = (
                "a consumer holds unacked messages of its queue, perhaps this run's"
                if obs.may_be_held
                else "could not tell whether a consumer holds it (unacked messages unknown)"
            )
            waits = "prefetched, not lost" if queued else "slow, not dead"
            return Verdict(Action.SKIP, evidence, "may_be_held", f"{held}: {waits}, until the hard ceiling")
        note = "a consumer may hold it, but the run is past its time limit plus margin"
    elif obs.counted_only and not obs.found_in:
        note = "no message waits in its queues" + ("" if queued else " and no consumer can hold it")
    return Verdict(Action.RECONCILE, evidence, note=note, reason=STALE_QUEUED if queued else STALE_RUNNING)


def _hard_ceiling(run: dict[str, Any], since: datetime, evidence: dict[str, Any], options: Options) -> datetime:
    """When a running run that may still be alive is failed anyway: its time limit plus the margin."""
    limit_ms = run["time_limit_ms"] or DEFAULT_TIME_LIMIT_MS
    ceiling = since + timedelta(milliseconds=limit_ms, seconds=options.ceiling_margin_seconds)
    evidence["hard_ceiling_at"] = ceiling.isoformat()
    return ceiling


def _counted_in_queue(run: dict[str, Any], since: datetime, evidence: dict[str, Any], options: Options) -> Verdict:
    """A running run whose queue holds ready messages, on a broker that only counts them (RabbitMQ).

    One may be this run's, handed back by RabbitMQ when its consumer died, so failing it now
    could contradict the redelivery's outcome; but ready messages may as well be other runs'
    backlog for ever, so the wait ends at the hard ceiling. A retry not started yet (a start
    clears ``next_retry_at``) is a queued message: backlog, its time limit not begun.
    """
    if run["next_retry_at"] is not None:
        # NOTE: the acceptance suite's PostgreSQL outage on RabbitMQ (large scale) left a backlog
        # that retries waited behind for longer than the time limit: failing them was false.
        note = "a retry not started yet while messages wait in its queue: backlog, its time limit not begun"
        return Verdict(Action.SKIP, evidence, "retry_waiting", note)
    if run["db_now"] < _hard_ceiling(run, since, evidence, options):
        note = "messages wait in its queue, perhaps this run's redelivery: awaiting it until the hard ceiling"
        return Verdict(Action.SKIP, evidence, "requeued", note)
    note = "messages wait in its queue, but the run is past its time limit plus margin"
    return Verdict(Action.RECONCILE, evidence, note=note, reason=STALE_RUNNING)
