"""Might a run's message still be in RabbitMQ? The healer's broker evidence, from queue counts.

RabbitMQ cannot look a message up by id without consuming it, and needs no help to recover a
dead consumer's messages: it puts them back in their queue, marked redelivered. So the evidence
is per queue, not per message: the ready messages and consumers of ``<q>`` and ``<q>.DQ`` (a
passive ``queue.declare``), plus, with the management API, the unacked messages consumers hold.
``runwatch.verdicts.decide`` reads it as ``Observation(counted_only=True)``.

One short-lived connection per call: a pika ``BlockingConnection`` is not thread-safe, and an
idle one is dropped after missed heartbeats between passes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from dramatiq.common import dq_name

from runwatch.verdicts import Observation

from . import amqp, management

#: What a pass raises when RabbitMQ does not answer: the maintenance loop records a broker
#: outage for these (as for ``redis.RedisError``), so the outage grace applies afterwards.
BROKER_ERRORS: tuple[type[BaseException], ...] = (pika.exceptions.AMQPError,)
#: Looks at the run-event queue before a pass: if it is empty in any, nothing waits to be drained.
DEFAULT_EVENT_SAMPLES = 5
DEFAULT_EVENT_SAMPLE_INTERVAL_SECONDS = 0.1
TIME_ALONE = "without the management API, time alone decides (the threshold, then the hard ceiling)"


@dataclass(frozen=True)
class QueueFacts:
    """One RabbitMQ queue as the healer saw it."""

    name: str
    ready: int | None  # None: the queue does not exist
    consumers: int | None
    unacked: int | None  # None: unknown (no management API, or no statistics yet)

    @property
    def exists(self) -> bool:
        return self.ready is not None

    def as_evidence(self) -> dict[str, Any]:
        if not self.exists:
            return {"exists": False}
        return {"ready": self.ready, "consumers": self.consumers, "unacked": self.unacked_shown}

    @property
    def unacked_shown(self) -> int | str:
        return "unknown" if self.unacked is None else self.unacked


def observation(main: QueueFacts, delayed: QueueFacts, *, unacked_unknown: str | None) -> Observation:
    """What a run's queue and delay queue say about its message (pure: unit-tested without a server).

    ``unacked_unknown`` says why unacked counts are missing (None: the management API gave them).
    """
    both = (main, delayed)
    names = f"{main.name} or {delayed.name}"
    common: dict[str, Any] = {
        "checked": True,
        "counted_only": True,
        "looked_in": (main.name, delayed.name),
        "queue_counts": {f.name: f.as_evidence() for f in both},
    }
    suffix = f"; {unacked_unknown}" if unacked_unknown else ""
    if not any(f.exists for f in both):
        detail = f"queue {main.name} does not exist (deleted or never declared): its messages are gone"
        return Observation(**common, may_be_held=False, detail=detail)
    if any(f.ready for f in both):
        found_in = "queue" if main.ready else "delay_queue"
        detail = (
            f"ready messages: {main.ready or 0} in {main.name}, {delayed.ready or 0} in {delayed.name}; RabbitMQ "
            f"cannot tell whether one is this run's without consuming it{suffix}"
        )
        return Observation(**common, found_in=found_in, detail=detail)
    consumers = sum(f.consumers or 0 for f in both)
    unknown = any(f.exists and f.unacked is None for f in both)
    unacked = None if unknown else sum(f.unacked or 0 for f in both)
    seen = f"no ready message in {names}; {consumers} consumer{'' if consumers == 1 else 's'}"
    if consumers == 0 or unacked == 0:
        why = "" if consumers == 0 else ", 0 unacked messages (management API)"
        return Observation(**common, may_be_held=False, detail=f"{seen}{why}: nobody can hold the message{suffix}")
    if unacked is None:
        detail = f"{seen}, unacked messages unknown: could not tell whether one holds the message{suffix}"
        return Observation(**common, may_be_held=None, detail=detail)
    detail = f"{seen} holding {unacked} unacked message(s) (management API), perhaps this run's"
    return Observation(**common, may_be_held=True, detail=detail)


class RabbitmqLocator:
    """Answers ``runwatch.healer.Locator`` with one passive declare per queue per pass, not per run."""

    def __init__(
        self,
        url: str,
        *,
        event_queue: str,
        management_url: str | None = None,
        event_samples: int = DEFAULT_EVENT_SAMPLES,
        event_sample_interval_seconds: float = DEFAULT_EVENT_SAMPLE_INTERVAL_SECONDS,
        timeout_seconds: float = amqp.DEFAULT_TIMEOUT_SECONDS,
        unapplied: Callable[[], set[str] | None] | None = None,
    ) -> None:
        """``unapplied``: where run events travel through Redis instead (``RUNWATCH_EVENT_TRANSPORT=redis``),
        the stream's own answer (``RedisLocator.unapplied_message_ids``)."""
        self._unapplied = unapplied
        self._url = url
        self._event_queue = event_queue
        self._management_url = management_url
        self._samples = max(1, event_samples)
        self._interval = event_sample_interval_seconds
        self._timeout = timeout_seconds
        self._closed = threading.Event()

    def close(self) -> None:
        """Ends a sampling wait at once (a stopping worker does not wait out a pass)."""
        self._closed.set()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[pika.BlockingConnection]:
        connection = amqp.connect(self._url, timeout_seconds=self._timeout)
        try:
            yield connection
        finally:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()

    def requeue_in_flight(self, queue: str, worker_id: str, redis_message_id: str) -> bool:
        """RabbitMQ requeues a dead consumer's unacked messages itself; ``decide`` never asks on RabbitMQ."""
        return False

    def dead_letter_if_queued(self, queue: str, redis_message_id: str) -> str | None:
        """A message cannot be taken out of a RabbitMQ queue by id: poison pills are refused worker-side
        (``runwatch.workers.poison_gate``) on their next redelivery instead."""
        return None

    def unapplied_message_ids(self) -> set[str] | None:
        """``set()`` once the run-event queue is seen empty; None (the pass waits) if it never is.

        Its content cannot be read without consuming it, so "which runs have events in flight" is
        answered for the whole queue: empty in any of a few quick samples means every event
        shipped before that moment has been handed to a drainer. A missing queue holds nothing.
        """
        if self._unapplied is not None:
            return self._unapplied()
        with self._connection() as connection:
            for sample in range(self._samples):
                depth = amqp.queue_depth(connection, self._event_queue)
                if not depth.exists or depth.messages == 0:
                    return set()
                if sample + 1 < self._samples and self._closed.wait(self._interval):
                    break
        return None

    def observe(self, runs: Sequence[dict[str, Any]]) -> dict[int, Observation]:
        queues = sorted({run["queue_name"] for run in runs})
        with self._connection() as connection:
            depths = [amqp.queue_depth(connection, name) for q in queues for name in (q, dq_name(q))]
        unacked, unknown = self._unacked([d.name for d in depths if d.exists])
        facts = {d.name: QueueFacts(d.name, d.messages, d.consumers, unacked.get(d.name)) for d in depths}
        by_queue = {q: observation(facts[q], facts[dq_name(q)], unacked_unknown=unknown) for q in queues}
        return {run["id"]: by_queue[run["queue_name"]] for run in runs}

    def _unacked(self, queues: list[str]) -> tuple[dict[str, int | None], str | None]:
        """Unacked counts from the management API, and why they are missing (None: they are not)."""
        if not self._management_url:
            return {}, TIME_ALONE
        if not queues:
            return {}, None
        params = pika.URLParameters(self._url)
        creds: Any = params.credentials
        try:
            counts = management.unacked_counts(
                self._management_url,
                params.virtual_host,
                queues,
                credentials=(creds.username, creds.password) if hasattr(creds, "username") else None,
            )
        except management.ManagementUnavailable as exc:
            return {}, f"the management API did not answer ({exc}): time alone decides"
        return counts, None
