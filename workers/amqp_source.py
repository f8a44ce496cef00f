"""The drainer's RabbitMQ side: the durable run-event queue (``Drainer``'s ``EventSource``).

Each queue message is one batch of run events (``wire`` JSON), published persistent with
confirms by the workers' shippers (``amqp_writer``). A drainer consumes with manual
acknowledgement and a prefetch of ``PREFETCH_BATCHES`` drain batches; it acknowledges a batch
(``multiple``, up to its last delivery) only after the batch's transaction committed. A drainer
that dies, or loses its connection, holds nothing: RabbitMQ gives its unacknowledged messages to
the other drainers (or to it, when it reconnects), and the ledger dedupes by event id, so a
redelivery changes nothing. After a failed database write the source drops its connection for the
same reason (``reset``).

Shipper drop counts travel as messages of type ``COUNTERS_TYPE`` (JSON increments): they are
added to the run counters on settle, with the batch's own.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import pika
import pika.exceptions
from runwatch.bridge import amqp

logger = logging.getLogger("runwatch.drainer")

#: ``BasicProperties.type`` of a message that carries counter increments, not events.
COUNTERS_TYPE = "runwatch.counters"
#: Heartbeats keep an idle drainer's connection known alive both ways (it reads every second).
#: NOTE: they are also how a frozen drainer (SIGSTOP, a paused VM) gives back what it holds: RabbitMQ
#: keeps its prefetched batches, other workers' events too, until it misses two or three heartbeats,
#: so ``Transport.source`` derives them from ``drain_claim_idle_ms``, the same bound as on Redis.
HEARTBEAT_SECONDS = 30
#: Drain batches RabbitMQ may hand a drainer before it acknowledges any: one in its transaction,
#: the next arriving meanwhile. PERF: with one, each batch began with a round trip of waiting, and
#: a read that caught only its first deliveries looked like a quiet queue, so the drainer lingered:
#: draining a backlog, the ledger fell 0.65-0.91 s behind the last ack, not 0.1 (docs/benchmarks.md).
PREFETCH_BATCHES = 2
_EMPTY_BATCH = b"[]"
Entry = tuple[bytes, bytes | None]


class AmqpEventSource:
    """Messages of the ``queue`` on the RabbitMQ at ``url``, ``batch_entries`` at a time."""

    errors: tuple[type[BaseException], ...] = (pika.exceptions.AMQPError, OSError)
    name = "RabbitMQ"

    def __init__(
        self,
        url: str,
        queue: str,
        *,
        batch_entries: int,
        add_counters: Callable[[Mapping[str, float]], None],
        heartbeat_seconds: int = HEARTBEAT_SECONDS,
    ) -> None:
        self.url = url
        self._heartbeat = heartbeat_seconds
        self.queue = queue
        self._batch = batch_entries
        self._add_counters = add_counters
        self._conn: Any = None
        self._channel: Any = None
        self._delivered: list[tuple[int, bytes | None, Mapping[str, float] | None]] = []
        self._increments: dict[str, float] = {}

    def read(self, block_ms: int | None) -> list[Entry]:
        channel = self._connected()
        if not self._delivered:
            # NOTE: returns as soon as a delivery arrives (or the time is up).
            self._conn.process_data_events(time_limit=(block_ms or 0) / 1000)
        self._conn.process_data_events(time_limit=0)
        taken, self._delivered = self._delivered[: self._batch], self._delivered[self._batch :]
        del channel
        entries: list[Entry] = []
        for tag, body, increments in taken:
            if increments is not None:
                for name, amount in increments.items():
                    self._increments[name] = self._increments.get(name, 0.0) + amount
                body = _EMPTY_BATCH
            entries.append((str(tag).encode(), body))
        return entries

    def settle(self, ids: list[bytes], increments: Mapping[str, float]) -> None:
        """Count, then acknowledge every delivery up to the batch's last (one ``basic.ack``, ``multiple``)."""
        total = dict(self._increments)
        for name, amount in increments.items():
            total[name] = total.get(name, 0.0) + amount
        if total:
            self._add_counters(total)
        self._increments = {}
        self._channel.basic_ack(delivery_tag=max(int(i) for i in ids), multiple=True)

    def reject(self, entry_id: bytes, payload: bytes | str, reason: str) -> None:
        """Keep a bad event for inspection in ``<queue>:rejected`` (bounded; the oldest go first)."""
        body = payload.encode() if isinstance(payload, str) else payload
        props = pika.BasicProperties(delivery_mode=2, headers={"entry": entry_id.decode(), "reason": reason})
        self._connected().basic_publish("", amqp.rejected_queue(self.queue), body, properties=props)

    def reset(self) -> None:
        """Give back what this drainer holds (after a failed write): RabbitMQ redelivers it."""
        self.close()

    def close(self) -> None:
        conn, self._conn, self._channel, self._delivered = self._conn, None, None, []
        self._increments = {}
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def depth(self) -> int:
        """Event batches waiting in the queue (not those delivered to a drainer and unacknowledged)."""
        return int(amqp.queue_depth(self._connected_conn(), self.queue).messages or 0)

    def _connected_conn(self) -> Any:
        self._connected()
        return self._conn

    def _connected(self) -> Any:
        if self._channel is not None and self._channel.is_open and self._conn.is_open:
            return self._channel
        self.close()
        params = amqp.parameters(self.url)
        params.heartbeat = self._heartbeat
        self._conn = pika.BlockingConnection(params)
        channel = self._conn.channel()
        amqp.declare_event_queue(channel, self.queue)
        channel.basic_qos(prefetch_count=self._batch * PREFETCH_BATCHES)
        channel.basic_consume(self.queue, self._on_message)
        self._channel = channel
        return channel

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        increments = None
        if properties.type == COUNTERS_TYPE:
            try:
                increments = {str(k): float(v) for k, v in json.loads(body).items()}
            except (ValueError, TypeError, AttributeError):
                increments = {}
        self._delivered.append((method.delivery_tag, body, increments))
