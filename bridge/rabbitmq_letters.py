"""The RabbitMQ ``LetterStore``: Dramatiq's ``<q>.XQ`` queues, read by browsing.

Dramatiq's ``RabbitmqBroker`` dead-letters a nacked message of ``q`` (or ``q.DQ``) into the
classic durable queue ``q.XQ`` through the default exchange, body unchanged, with an ``x-death``
header; ``q.XQ`` drops letters older than its ``x-message-ttl`` (7 days). AMQP has no "peek", so
reading a dead-letter queue is *browsing*, and this is exactly what it does to ``q.XQ``:

1. Lock: declare the exclusive, auto-deleted queue ``q.XQ.runwatch-browse`` (no messages ever go
   to it). Only one connection can hold it, so one Runwatch browser at a time reads ``q.XQ``,
   whichever process or host; others wait up to ``lock_wait_seconds``. RabbitMQ deletes it
   when the browse ends or the browsing connection dies.
2. On a channel of its own, a passive declare gives the number of ready letters; ``basic_get``
   with manual ack takes that many from the head (at most ``browse_cap``), never more.
3. The channel is closed without acking them. RabbitMQ puts every unacked message back at its
   original position, so the queue's contents and order are as before. Each letter it returns has
   ``redelivered`` set; its TTL is unchanged (expiry counts from when it entered ``q.XQ``). While a
   browse holds them (one ``basic_get`` round trip per letter: about 0.2 ms each on a local
   server, so 1 s for 5,000 letters) other consumers of ``q.XQ`` do not see those letters and
   its ready count drops.
   Letters that arrive meanwhile go behind them and are not read.

Removing one letter (purge, or a requeue taking it) browses up to that letter, acks it alone and
gives the rest back. A requeue first publishes the fresh message to ``q`` (persistent, publisher
confirms, mandatory: it fails if ``q`` does not exist) and acks the letter only once RabbitMQ has
confirmed it: at least once. A crash between the confirm and the ack leaves both the queued
message and the letter; a repeat finds the requeued message's run in the ledger and only removes
the letter, or (its worker has not recorded it yet) publishes the same message id again, which
the ledger records as one run (a duplicate delivery, as RabbitMQ itself may make).

AMQP cannot list queues: the queues looked at are the ones ``queues()`` names (the ledger's and
the mirror's queue names, the worker's declared queues), kept where ``q.XQ`` exists. A letter is
identified by its Dramatiq message id (RabbitMQ has none outside the body), and its age comes from
``x-death``'s ``time`` (whole seconds).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import dramatiq
import pika
import pika.exceptions
from dramatiq.common import q_name, xq_name

from runwatch.errors import RunwatchError

from . import amqp
from .letter_store import RABBITMQ, DeadLetter, UnknownQueue

#: Letters read from one ``q.XQ`` per browse; the rest (the newest) are not seen until older ones go.
DEFAULT_BROWSE_CAP = 10_000
#: How long a browse waits for another Runwatch browser of the same queue to finish.
DEFAULT_LOCK_WAIT_SECONDS = 30.0
_LOCK_SUFFIX = ".runwatch-browse"
_LOCK_RETRY_SECONDS = 0.05


class RabbitmqUnreachable(RunwatchError):
    """RabbitMQ did not answer (refused, timed out, or the connection dropped)."""


class BrowseBusy(RunwatchError):
    """Another Runwatch browser held a dead-letter queue for longer than the lock wait."""


class QueueMissing(RunwatchError):
    """A requeue's target queue does not exist in RabbitMQ (no worker or sender declared it)."""


@dataclass(frozen=True)
class _Held:
    """One browsed delivery: its tag on the browsing channel, and the letter it holds."""

    tag: int
    letter: DeadLetter


class RabbitmqLetters:
    """Dead letters in the RabbitMQ at ``url``; one connection, opened on first use, closed by ``close()``."""

    broker = RABBITMQ
    transient_errors: tuple[type[BaseException], ...] = (
        RabbitmqUnreachable,
        BrowseBusy,
        pika.exceptions.AMQPConnectionError,
    )

    def __init__(
        self,
        url: str,
        *,
        queues: Callable[[], Iterable[str]] = tuple,
        browse_cap: int = DEFAULT_BROWSE_CAP,
        lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
    ) -> None:
        self.url = url
        self._queue_names = queues
        self.browse_cap = browse_cap
        self.lock_wait_seconds = lock_wait_seconds
        self._connection: pika.BlockingConnection | None = None

    # -- the LetterStore interface ------------------------------------------------------------

    def queues(self) -> list[str]:
        self._connect()  # NOTE: a broker that does not answer says so, even when no queue is known yet
        names = {q_name(q) for q in self._queue_names() if not q.endswith(".XQ")}
        return sorted(q for q in names if self._depth(xq_name(q)).exists)

    def check_queue(self, queue: str) -> None:
        if not (self._depth(xq_name(queue)).exists or self._depth(queue).exists):
            raise UnknownQueue(f"unknown queue {queue!r}: RabbitMQ has neither {queue!r} nor {xq_name(queue)!r}")

    def scan(self, *, queue: str | None = None, actor: str | None = None) -> Iterator[DeadLetter]:
        for name in [queue] if queue else self.queues():
            # NOTE: browsed whole and given back before the first yield: however slowly the caller
            # reads, the letters are out of sight of other consumers only for the browse itself.
            letters = self._letters(name)
            yield from (d for d in letters if actor is None or d.actor_name == actor)

    def entries(self, queue: str) -> list[tuple[str, float]]:
        return [(d.letter_id, d.dead_at) for d in self._letters(queue)]

    def fetch(self, queue: str, entries: list[tuple[str, float]]) -> list[DeadLetter]:
        # PERF: a second browse; AMQP cannot fetch a message by id.
        wanted = {letter_id for letter_id, _ in entries}
        return [d for d in self._letters(queue) if d.letter_id in wanted] if wanted else []

    def get(self, queue: str, letter_id: str) -> DeadLetter | None:
        # PERF: the browse stops at the letter: the cost is its distance from the head.
        with self._browse(queue, until=letter_id) as (_channel, held):
            return held[-1].letter if held and held[-1].letter.letter_id == letter_id else None

    def find_by_message_id(self, queue: str, message_id: str) -> DeadLetter | None:
        return self.get(queue, message_id)

    def remove(self, letter: DeadLetter) -> bool:
        with self._browse(letter.queue, until=letter.letter_id) as (channel, held):
            if not held or held[-1].letter.letter_id != letter.letter_id:
                return False
            channel.basic_ack(held[-1].tag)
            return True

    def move_to_queue(self, letter: DeadLetter, fresh: dramatiq.Message) -> bool:
        with self._browse(letter.queue, until=letter.letter_id) as (channel, held):
            if not held or held[-1].letter.letter_id != letter.letter_id:
                return False
            # NOTE: the letter stays unacked (out of sight of any other browser) until the fresh
            # message is confirmed; an error here closes the channel and so gives it back.
            self._publish(letter.queue, fresh)
            channel.basic_ack(held[-1].tag)
            return True

    def fresh_options(self) -> dict[str, Any]:
        return {}

    def dead_letter_name(self, queue: str) -> str:
        return xq_name(queue)

    def evidence(self, letter: DeadLetter) -> dict[str, Any]:
        return {"dead_letter_key": xq_name(letter.queue), "message_id": letter.message_id, "broker": RABBITMQ}

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()

    def __enter__(self) -> RabbitmqLetters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- browsing -------------------------------------------------------------------------------

    @property
    def connection(self) -> pika.BlockingConnection:
        return self._connect()

    def _connect(self) -> pika.BlockingConnection:
        """This store's connection, opened now if it is not open (raises ``RabbitmqUnreachable``)."""
        if self._connection is None or not self._connection.is_open:
            try:
                self._connection = amqp.connect(self.url)
            except (pika.exceptions.AMQPError, OSError) as exc:
                where = self.url.rsplit("@", 1)[-1]
                raise RabbitmqUnreachable(f"RabbitMQ does not answer at {where}: {type(exc).__name__} {exc}") from exc
        return self._connection

    def _depth(self, name: str) -> amqp.QueueDepth:
        return amqp.queue_depth(self.connection, name)

    def _letters(self, queue: str) -> list[DeadLetter]:
        with self._browse(queue) as (_channel, held):
            return [h.letter for h in held]

    @contextlib.contextmanager
    def _browse(self, queue: str, *, until: str | None = None) -> Iterator[tuple[Any, list[_Held]]]:
        """Hold ``queue``'s dead letters from the head (up to the one ``until`` names); give back all unacked."""
        xq = xq_name(queue)
        lock = self._lock(xq)
        channel = self.connection.channel()
        try:
            try:
                ready = channel.queue_declare(queue=xq, passive=True).method.message_count
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != 404:
                    raise
                yield channel, []
                return
            held: list[_Held] = []
            while len(held) < min(ready, self.browse_cap):
                method, properties, body = channel.basic_get(queue=xq, auto_ack=False)
                if method is None:  # fewer than counted: expired, or taken meanwhile
                    break
                held.append(_Held(method.delivery_tag, _letter(queue, properties, body)))
                if until is not None and held[-1].letter.letter_id == until:
                    break
            yield channel, held
        finally:
            # NOTE: closing the channel is what gives every unacked letter back to its place.
            with contextlib.suppress(pika.exceptions.AMQPError):
                if channel.is_open:
                    channel.close()
            with contextlib.suppress(pika.exceptions.AMQPError):
                if lock.is_open:
                    lock.queue_delete(queue=xq + _LOCK_SUFFIX)
                    lock.close()

    def _lock(self, xq: str) -> Any:
        """A channel that declared ``xq``'s exclusive lock queue, waiting for another holder to let go."""
        deadline = time.monotonic() + self.lock_wait_seconds
        while True:
            channel = self.connection.channel()
            try:
                channel.queue_declare(queue=xq + _LOCK_SUFFIX, exclusive=True, auto_delete=True)
                return channel
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != 405:  # RESOURCE_LOCKED: another connection holds it
                    raise
            if time.monotonic() >= deadline:
                raise BrowseBusy(f"another Runwatch browser held {xq} for more than {self.lock_wait_seconds:.0f} s")
            self.connection.sleep(_LOCK_RETRY_SECONDS)

    def _publish(self, queue: str, message: dramatiq.Message) -> None:
        """Publish ``message`` to ``queue`` and return once RabbitMQ confirmed it (raises otherwise)."""
        channel = self.connection.channel()
        try:
            channel.confirm_delivery()
            channel.basic_publish(
                exchange="",
                routing_key=queue,
                body=message.encode(),
                properties=pika.BasicProperties(delivery_mode=2, priority=message.options.get("broker_priority")),
                mandatory=True,  # NOTE: a queue that does not exist is an error, not a message dropped
            )
        except pika.exceptions.UnroutableError as exc:
            raise QueueMissing(f"RabbitMQ has no queue {queue!r} to requeue into; the dead letter stays") from exc
        finally:
            with contextlib.suppress(pika.exceptions.AMQPError):
                if channel.is_open:
                    channel.close()


def _letter(queue: str, properties: Any, body: bytes) -> DeadLetter:
    try:
        message = dramatiq.Message.decode(body)
    except Exception as exc:  # DecodeError, or a payload of the wrong shape
        digest = hashlib.sha256(body).hexdigest()[:32]
        error = f"{type(exc).__name__}: {exc}"[:300]
        return DeadLetter(queue, f"body-sha256:{digest}", _dead_at(properties, None), None, error, RABBITMQ)
    return DeadLetter(queue, message.message_id, _dead_at(properties, message), message, None, RABBITMQ)


def _dead_at(properties: Any, message: dramatiq.Message | None) -> float:
    """When the letter was dead-lettered: the newest ``x-death`` time; else when it was sent (published by hand)."""
    deaths = (properties.headers or {}).get("x-death") or []
    times = [d["time"].timestamp() for d in deaths if isinstance(d, dict) and hasattr(d.get("time"), "timestamp")]
    if times:
        return max(times)
    if message is not None:
        return message.message_timestamp / 1000
    return properties.timestamp if isinstance(properties.timestamp, int | float) else time.time()
