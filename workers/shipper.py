"""Ship run events from a process to the broker (``EventWriter``), in batches, off the hot path.

Hooks only append to a list. Whatever has accumulated is written as one entry (one round trip,
whatever the batch size). A hook that must not return before its event is safe (an outcome,
before the ack) ships it itself, as the leader of a group commit: threads finishing while it
writes wait for its next round, so eight threads finishing at once cost one or two round trips.
A background thread ships the rest (queued, started, progress) every ``flush_interval_ms``, and
retries with backoff while the broker is unreachable. PERF: the leader writes on its own thread;
a hand-off to the background thread cost two thread switches and a notify per message (~100 us).

Durability (README "Recording and durability"): once ``emit(..., durable=True)`` returns, an
event is as durable as the job messages in the same broker; non-urgent events may sit in memory
for up to ``flush_interval_ms`` and die with a SIGKILLed process. While the broker is
unreachable, events stay buffered (bounded) and the waiting hook gives up after
``durable_wait_ms``: a job never fails or hangs because of Runwatch (a leader's one write is
bounded too; after a failure only the background thread writes until it got through again).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

import redis

from runwatch import counters, wire
from runwatch import events as ev
from runwatch.burstlog import BurstLogger
from runwatch.settings import MAX_EVENTS_PER_ENTRY

from .event_writer import EventWriter
from .stream_writer import StreamWriter

logger = logging.getLogger("runwatch.shipper")
#: Kept when the buffer overflows: outcomes, and failed attempts (a retry's schedule and Redis id).
_OUTCOME_KINDS = frozenset({ev.COMPLETED, ev.DEAD_LETTERED, ev.ATTEMPT_FAILED})
#: What ``emit`` buffers: an event, a function that builds it, or ``(builder name, *args)``.
Pending = dict[str, Any] | Callable[[], dict[str, Any]] | tuple[Any, ...]


class EventShipper:
    def __init__(
        self,
        client: redis.Redis | None,
        stream: str,
        *,
        flush_interval_ms: int,
        durable_wait_ms: int,
        buffer_max_events: int,
        writer: EventWriter | None = None,
    ) -> None:
        self.client = client  # NOTE: None when events travel through RabbitMQ (``writer``)
        self._stream = stream
        self._interval = flush_interval_ms / 1000
        self._durable_wait = durable_wait_ms / 1000
        self._max = buffer_max_events
        self._cond = threading.Condition()
        self._buffer: list[Pending] = []
        self._deferred: dict[Hashable, tuple[float, Any]] = {}
        #: name -> function: an emitted tuple ``(name, *args)`` is built as ``builders[name](*args)``.
        self.builders: dict[str, Callable[..., dict[str, Any]]] = {}
        self._urgent = False
        self._waiters: list[threading.Lock] = []  # durable emitters waiting for the next flush
        self._leading = False  # a thread is shipping (an emitter, or the background thread)
        if writer is None:
            if client is None:
                raise ValueError("EventShipper needs a Redis client or a writer")
            writer = StreamWriter(client, stream, timeout_seconds=self._durable_wait)  # its own connection
        self._writer: EventWriter = writer
        self._backoff = 0.0  # seconds: the broker failed; only the background thread writes until it works
        self._closing = False
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._after_fork)
        self._errors = BurstLogger(logger, "could not ship run events to the broker")
        self._outcomes: set[int] = set()  # ids of buffered, not yet built, durable events
        self.dropped = 0
        self.dropped_outcomes = 0
        self._unreported_drops: dict[str, int] = {}  # kind -> drops not yet counted (/metrics)

    def emit(self, event: Pending, *, durable: bool = False) -> bool:
        """Queue ``event``; with ``durable``, wait until the broker has it. Never raises.

        ``event`` may be a callable that builds the event, or a tuple ``(builder name, *args)``: the
        shipper thread builds it while the caller's thread waits on its own I/O (PERF: keeps the
        dict building off the hot path).
        """
        with self._cond:
            self._ensure_thread()
            if len(self._buffer) >= self._max:
                self._make_room()
            self._buffer.append(event)
            if not durable:
                return True
            self._outcomes.add(id(event))
            shipped, lead = self._waiter()
        return self._wait(shipped, lead, self._durable_wait)

    def _make_room(self) -> None:
        """Drop one buffered event (caller holds _cond): bounded memory beats an OOM-killed worker.

        The oldest event that is not an outcome goes first: a lost progress or start is superseded
        by the run's outcome, a lost outcome leaves the run to the healer. Only a buffer holding
        nothing but outcomes loses one.
        """
        kind = "other"
        for i, item in enumerate(self._buffer):
            if not self._is_outcome(item):
                del self._buffer[i]
                break
        else:
            self._outcomes.discard(id(self._buffer.pop(0)))
            self.dropped_outcomes += 1
            kind = "outcome"
        self.dropped += 1
        self._unreported_drops[kind] = self._unreported_drops.get(kind, 0) + 1
        if self.dropped == 1 or self.dropped % 10_000 == 0:
            logger.warning(
                "run event buffer full (RUNWATCH_BUFFER_MAX_EVENTS=%d): %d event(s) dropped so far, %d outcomes",
                self._max,
                self.dropped,
                self.dropped_outcomes,
            )

    def _is_outcome(self, item: Any) -> bool:
        if isinstance(item, dict):  # built already (a failed flush put it back)
            return item.get("kind") in _OUTCOME_KINDS
        return id(item) in self._outcomes

    def defer(self, key: Hashable, event: dict[str, Any] | Callable[[], dict[str, Any]]) -> None:
        """Hold ``event`` for one flush interval; ``take_deferred(key)`` may still take it back."""
        with self._cond:
            self._ensure_thread()
            self._deferred[key] = (time.monotonic(), event)

    def take_deferred(self, key: Hashable) -> bool:
        """Take back a deferred event not shipped yet (the caller folds it into its next event)."""
        with self._cond:
            return self._deferred.pop(key, None) is not None

    def flush(self, timeout_seconds: float = 5.0) -> bool:
        """Wait until everything emitted (and deferred) so far is in the broker (or the timeout passes)."""
        with self._cond:
            self._buffer.extend(event for _, event in self._deferred.values())
            self._deferred.clear()
            if not self._buffer:
                return True
            self._ensure_thread()
            shipped, lead = self._waiter()
        return self._wait(shipped, lead, timeout_seconds)

    def _waiter(self) -> tuple[threading.Lock, bool]:
        """A lock released once the events buffered so far are in the broker, and whether the caller
        ships them itself (caller holds _cond).

        PERF: one lock per waiter, released one by one, instead of notify_all on a shared
        condition, which woke every waiting worker thread for every flush.
        """
        lock = threading.Lock()
        lock.acquire()
        self._waiters.append(lock)
        if self._leading:
            return lock, False  # the thread shipping now takes it in its next round
        if self._backoff:
            self._urgent = True  # the broker failed lately: the background thread retries, with backoff
            self._cond.notify()
            return lock, False
        self._leading = True
        return lock, True

    def _wait(self, shipped: threading.Lock, lead: bool, timeout_seconds: float) -> bool:
        if lead:
            self._ship_rounds(background=False)
        return shipped.acquire(timeout=timeout_seconds)

    def _ship_rounds(self, *, background: bool) -> None:
        """Ship while someone waits for a flush (the background thread: at least once). The
        caller set ``_leading``; it is cleared here, under the same lock that tests it."""
        first = background
        while True:
            with self._cond:
                if not self._waiters and not (first and self._buffer):
                    self._leading = False
                    return
                first = False
                batch, self._buffer = self._buffer, []
                self._outcomes.clear()  # NOTE: once built, an event's kind says whether it is an outcome
                waiters, self._waiters = self._waiters, []
            if not self._ship(batch, waiters):
                with self._cond:
                    self._leading = False
                return

    def close(self, timeout_seconds: float = 5.0) -> None:
        """Ship everything (deferred events too), stop the thread; a later emit starts a new one."""
        self.flush(timeout_seconds)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_seconds)
        with self._cond:
            if self._thread is thread and not (thread and thread.is_alive()):
                self._thread = None

    def _ensure_thread(self) -> None:
        # PERF: runs on every emit, so it only tests one attribute; forks reset it (_after_fork).
        if self._thread is None:
            self._closing = False
            self._thread = threading.Thread(target=self._run, name="runwatch-shipper", daemon=True)
            self._thread.start()

    def _materialize(self, batch: list[Any]) -> list[dict[str, Any]]:
        events = []
        for item in batch:
            if not isinstance(item, dict):
                try:
                    item = item() if callable(item) else self.builders[item[0]](*item[1:])
                except Exception:  # a bug building one event must not stop the others
                    logger.exception("could not build a run event; it is dropped")
                    continue
            events.append(item)
        return events

    def _release_deferred(self) -> None:
        """Move deferred events older than one interval into the buffer (caller holds the lock)."""
        if not self._deferred:
            return
        due = time.monotonic() - self._interval
        for event_id in [k for k, (t, _) in self._deferred.items() if t <= due or self._closing]:
            self._buffer.append(self._deferred.pop(event_id)[1])

    def _after_fork(self) -> None:
        # NOTE: a forked child inherits the object but not the thread, and maybe a held lock.
        self._cond = threading.Condition()
        self._thread = None
        self._buffer, self._urgent, self._deferred = [], False, {}
        self._outcomes = set()
        self._waiters = []
        self._leading, self._backoff = False, 0.0
        self._writer.reset()  # NOTE: never share the parent's socket

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._urgent or self._closing, self._interval + self._backoff)
                self._release_deferred()  # NOTE: before the exit test, so closing ships deferred events too
                if self._closing and not self._buffer and not self._leading:
                    if self._thread is threading.current_thread():
                        self._thread = None  # the next emit starts a new one, whenever this one ends
                    return
                self._urgent = False
                if self._leading or not (self._buffer or self._waiters):
                    continue
                self._leading = True
            self._ship_rounds(background=True)

    def _ship(self, batch: list[Any], waiters: list[threading.Lock]) -> bool:
        """Write ``batch`` to the stream and release ``waiters``; on failure keep both for a retry."""
        events = self._materialize(batch) if batch else []
        if events:
            try:
                # NOTE: entries are capped so a drainer's batch (and its memory) stays bounded.
                starts = range(0, len(events), MAX_EVENTS_PER_ENTRY)
                self._writer.write([wire.dumps(events[i : i + MAX_EVENTS_PER_ENTRY]) for i in starts])
            except Exception as exc:  # redis down, or anything else: keep the events, retry later
                self._errors.failure(exc, len(events))
                with self._cond:
                    self._backoff = min(max(self._backoff * 2, 0.1), 2.0)
                    self._buffer[:0] = events
                    while len(self._buffer) > self._max:  # the same policy as emit(): outcomes last
                        self._make_room()
                    self._waiters[:0] = waiters
                return False
            if self._backoff:
                with self._cond:
                    self._backoff = 0.0
            self._errors.success()
            if self._unreported_drops:
                self._report_drops()
        for waiter in waiters:
            waiter.release()
        return True

    def _report_drops(self) -> None:
        """Count the events dropped while the broker was away, now it answers (runwatch_shipper_dropped_events)."""
        with self._cond:
            drops, self._unreported_drops = self._unreported_drops, {}
        try:
            self._writer.count({counters.field(counters.DROPPED, k): n for k, n in drops.items()})
        except Exception:  # NOTE: keep them for the next successful flush
            with self._cond:
                for kind, n in drops.items():
                    self._unreported_drops[kind] = self._unreported_drops.get(kind, 0) + n
