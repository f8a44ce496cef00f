"""Drain run events into the PostgreSQL ledger, from a Redis stream or a RabbitMQ queue.

The source (``EventSource``: ``redis_source`` or ``amqp_source``) makes this at-least-once and
shareable: any number of drainers split the events, an entry is acknowledged only after its
transaction committed, and what a dead drainer held goes to the others. The ledger dedupes by
event id, so a redelivered entry changes nothing.

PostgreSQL down: entries stay in the broker (it is the buffer), the drainer retries with
jittered backoff (``backoff_seconds``) and logs once per burst. A malformed entry or event is
moved aside (``<stream>:rejected``) with its reason instead of blocking the others.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError

from runwatch import counters, wire
from runwatch import events as ev
from runwatch import statements as sql
from runwatch.burstlog import BurstLogger
from runwatch.errors import ValidationError
from runwatch.ledger import apply_events
from runwatch.passes import DEFAULT_IDLE_TIMEOUT_SECONDS as DEFAULT_PASS_IDLE_TIMEOUT_SECONDS
from runwatch.settings import DEFAULT_DRAIN_CLAIM_IDLE_MS, Settings
from runwatch.thresholds import ThresholdPolicy

from .redis_source import DEFAULT_FORGET_IDLE_MS, GROUP, RedisEventSource

__all__ = ["GROUP", "DrainResult", "Drainer", "EventSource", "backoff_seconds"]

logger = logging.getLogger("runwatch.drainer")

#: Errors that mean "this data", not "this database": the batch is bisected and the culprit
#: rejected. Anything else (connection lost, ...) is retried as it is, so nothing is dropped.
_BAD_DATA = (IntegrityError, DataError, ValueError, OverflowError, TypeError, KeyError)
#: A drainer stalled this long inside a transaction (its process frozen) loses its session, and the
#: row locks with it: otherwise the healer skips those runs and every other drainer waits on them.
DEFAULT_IDLE_TIMEOUT_SECONDS = DEFAULT_PASS_IDLE_TIMEOUT_SECONDS
#: Retry waits after a failure: the ceiling doubles from the base up to the cap (see backoff_seconds).
BACKOFF_BASE_SECONDS = 0.2
BACKOFF_CAP_SECONDS = 5.0
# NOTE: past this many doublings the ceiling is the cap anyway; 2.0**n would overflow a float for
# a drainer that has been failing for an hour (~1,400 failures).
_MAX_DOUBLINGS = 32


def backoff_seconds(
    failures: int,
    rng: random.Random,
    *,
    base_seconds: float = BACKOFF_BASE_SECONDS,
    cap_seconds: float = BACKOFF_CAP_SECONDS,
) -> float:
    """How long to wait after the ``failures``-th failure in a row: uniform in [0, ceiling].

    "Full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter"): the ceiling is the capped
    exponential ``min(cap, base * 2**(failures - 1))``, the wait anywhere below it. Every worker
    process runs a drainer and a PostgreSQL outage fails them all at the same moment; without
    jitter they retried in lockstep (every 5 s at the cap, all together) and all reconnected in
    the same instant when the database came back. Full rather than decorrelated jitter: it is a
    function of the failure count alone (the bounds are exact and testable, no state to carry
    between retries), and in the blog's comparison it does the least work for about the same
    completion time. At the cap the mean wait is cap / 2: a recovered database is found sooner,
    by reconnects spread over up to ``cap_seconds``, for twice the refused connection attempts
    while it is down (0.4 per second per drainer, each a refused connect).
    """
    if failures < 1:
        raise ValueError(f"failures must be >= 1, got {failures}")
    ceiling = min(cap_seconds, base_seconds * 2.0 ** min(failures - 1, _MAX_DOUBLINGS))
    return rng.uniform(0.0, ceiling)


#: After a batch that was not full, wait this long before reading again (adds up to this much
#: ledger lag; in exchange a steady stream is applied in few, large transactions).
DEFAULT_LINGER_MS = 100


@dataclass
class DrainResult:
    entries: int = 0
    events: int = 0
    rejected: int = 0
    late: int = 0


class EventSource(Protocol):
    """Where the drainer reads run events: a Redis stream (``RedisEventSource``) or a RabbitMQ queue
    (``AmqpEventSource``). Entries are ``(id, payload)``; a payload is one ``wire`` batch of events."""

    #: Exceptions that mean "the transport", logged as such and retried.
    errors: tuple[type[BaseException], ...]
    name: str

    def read(self, block_ms: int | None) -> list[tuple[bytes, bytes | None]]: ...

    def settle(self, ids: list[bytes], increments: Mapping[str, float]) -> None:
        """Acknowledge applied entries (after their commit) and add the run counters."""

    def reject(self, entry_id: bytes, payload: bytes | str, reason: str) -> None: ...

    def reset(self) -> None:
        """After a failed database write: have what this drainer read delivered again."""

    def close(self) -> None: ...


class Drainer:
    def __init__(
        self,
        source: redis.Redis | EventSource,
        engine: Engine,
        policy: ThresholdPolicy,
        *,
        stream: str,
        batch_entries: int,
        consumer: str | None = None,
        claim_idle_ms: int = DEFAULT_DRAIN_CLAIM_IDLE_MS,
        forget_idle_ms: int = DEFAULT_FORGET_IDLE_MS,
        idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS,
        linger_ms: int = DEFAULT_LINGER_MS,
    ) -> None:
        if isinstance(source, redis.Redis):
            source = RedisEventSource(source, stream, batch_entries=batch_entries, consumer=consumer,
                                      claim_idle_ms=claim_idle_ms, forget_idle_ms=forget_idle_ms)  # fmt: skip
        self.source: EventSource = source
        self._engine = engine
        self._policy = policy
        self._stream = stream
        self._batch = batch_entries
        self._idle_timeout_ms = str(int(idle_timeout_seconds * 1000))
        self._linger = linger_ms / 1000
        self._db_errors = BurstLogger(logger, "could not write run events to PostgreSQL")
        self._source_errors = BurstLogger(
            logger, f"could not read the run events from {getattr(source, 'name', 'the broker')}"
        )
        self._rng = random.Random()  # NOTE: seeded from os.urandom: drainers must not share a sequence

    @classmethod
    def from_settings(cls, settings: Settings, source: redis.Redis | EventSource, engine: Engine) -> Drainer:
        """The drainer ``settings`` describe (stream, batch, claim idle, thresholds) over ``source`` and ``engine``."""
        return cls(source, engine, ThresholdPolicy(settings), stream=settings.event_stream,
                   batch_entries=settings.drain_batch, claim_idle_ms=settings.drain_claim_idle_ms)  # fmt: skip

    def drain_once(self, *, block_ms: int | None = None) -> DrainResult:
        """Apply one batch of what the source holds for this drainer."""
        entries = self.source.read(block_ms)
        if not entries:
            return DrainResult()
        return self._apply(entries)

    def drain_until_empty(self, *, max_seconds: float = 60.0) -> DrainResult:
        total, deadline = DrainResult(), time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            result = self.drain_once()
            if not result.entries:
                break
            for key in ("entries", "events", "rejected", "late"):
                setattr(total, key, getattr(total, key) + getattr(result, key))
        return total

    def run(self, stop: threading.Event, *, block_ms: int = 1000) -> None:
        """Drain until ``stop`` is set; errors are retried with jittered backoff, never raised."""
        failures = 0
        while not stop.is_set():
            try:
                applied = self.drain_once(block_ms=block_ms).entries
                failures = 0
                if 0 < applied < self._batch and self._linger:
                    # PERF: a batch that was not full means the stream is nearly empty: let events
                    # accumulate a little, so one transaction (one commit, one fold) carries many.
                    stop.wait(self._linger)
            except self.source.errors as exc:
                self._source_errors.failure(exc)
                failures += 1
            except Exception as exc:  # the database, or a bug: keep the entries, try again later
                self._db_errors.failure(exc)
                failures += 1
                self._reset_source()  # re-read what we hold once the database is back
            else:
                self._source_errors.success()
            if failures:
                stop.wait(backoff_seconds(failures, self._rng))
        self.source.close()

    def _reset_source(self) -> None:
        try:
            self.source.reset()
        except Exception as exc:  # NOTE: the transport is down too; the next read reconnects
            self._source_errors.failure(exc)

    def _apply(self, entries: list[tuple[bytes, bytes | None]]) -> DrainResult:
        result = DrainResult(entries=len(entries))
        good: list[dict[str, Any]] = []
        for entry_id, payload in entries:
            try:
                if payload is None:
                    raise KeyError("e")
                batch = wire.loads(payload)
            except (KeyError, ValueError) as exc:
                self._reject(entry_id, payload or b"", f"undecodable entry: {exc}")
                result.rejected += 1
                continue
            for event in batch:
                try:
                    good.append(ev.validate(event))
                except ValidationError as exc:
                    self._reject(entry_id, json.dumps(event), str(exc))
                    result.rejected += 1
        finished: list[dict[str, Any]] = []
        result.late = self._write(good, result, finished)
        self.source.settle([entry_id for entry_id, _ in entries], counters.increments(finished))
        self._db_errors.success()
        result.events = len(good)
        return result

    def _write(self, events: list[dict[str, Any]], result: DrainResult, finished: list[dict[str, Any]]) -> int:
        """Apply ``events`` (bisecting bad data out); ``finished`` gets the runs that ended, once committed."""
        try:
            with self._engine.begin() as conn:
                conn.execute(sql.PASS_IDLE_TIMEOUT, {"ms": self._idle_timeout_ms})
                applied = apply_events(conn, events, self._policy)
            finished.extend(applied.finished)
            return len(applied.late_events)
        except _BAD_DATA as exc:
            groups: dict[str, list[dict[str, Any]]] = {}
            for event in events:
                groups.setdefault(event["message_id"], []).append(event)
            if len(groups) == 1:
                # NOTE: one message's events are rejected together, never split: applied apart,
                # an outcome could land before its start.
                for event in events:
                    self._reject(b"-", json.dumps(event, default=str), f"rejected: {type(exc).__name__}")
                result.rejected += len(events)
                return 0
            # NOTE: bisect by message so one poisoned run cannot hold up the batch around it.
            runs = list(groups.values())
            middle = len(runs) // 2
            first = [e for run in runs[:middle] for e in run]
            second = [e for run in runs[middle:] for e in run]
            return self._write(first, result, finished) + self._write(second, result, finished)

    def _reject(self, entry_id: bytes, payload: bytes | str, reason: str) -> None:
        logger.error("rejected run event from entry %s: %s", entry_id.decode(), reason)
        self.source.reject(entry_id, payload, reason)
