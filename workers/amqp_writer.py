"""The shipper's writes on RabbitMQ: publish event batches to the durable run-event queue, confirmed.

Each payload becomes one persistent message, published with publisher confirms and
``mandatory`` (an unroutable message is an error, not a silent drop), so once ``write``
returns the events are as durable as the job messages themselves. A confirm waits for the
node's disk sync (~1 ms), and pika's blocking channel has one publish in flight, so the shipper
runs up to ``parallel`` rounds at once, each on a connection of its own from a small pool (a
pika ``BlockingConnection`` is used by one thread at a time, never concurrently).

Bounded like the Redis writer: a RabbitMQ that stops answering (a partition) must never hold a
job for longer than ``durable_wait_ms``. pika has no per-call timeout, so a timer on the
connection raises out of the blocking publish when the bound passes; the connection is then
dropped and the events go back to the buffer for the background thread to retry (the drainer
dedupes by id).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Mapping
from typing import Any

import pika
import pika.exceptions
from runwatch.bridge import amqp

from .amqp_source import COUNTERS_TYPE

#: The shortest bound on one write (``durable_wait_ms`` may be 0).
MIN_WRITE_SECONDS = 0.1
#: A connection unused this long is replaced before writing: without heartbeats while idle (the
#: shipper runs pika's I/O only when it writes), the server may have dropped it meanwhile.
IDLE_RECONNECT_SECONDS = 30.0
#: Heartbeats the server expects: an idle shipper misses them, hence the reconnect above.
HEARTBEAT_SECONDS = 60
#: Confirmed publishes in flight at once (connections in the pool): measured on a 2-core machine,
#: one in flight capped a worker at ~2,300 acks/s while draining a backlog (docs/benchmarks.md).
DEFAULT_PARALLEL = 4
_PERSISTENT = pika.BasicProperties(delivery_mode=2)


class WriteTimeout(pika.exceptions.AMQPError):
    """RabbitMQ did not confirm within the shipper's bound."""


class _Link:
    """One connection and its confirming channel, used by one shipping thread at a time."""

    def __init__(self, url: str, queue: str, bound: float) -> None:
        params = amqp.parameters(url, timeout_seconds=bound)
        params.heartbeat = HEARTBEAT_SECONDS
        self.conn = pika.BlockingConnection(params)
        try:
            self.channel = self.conn.channel()
            self.channel.confirm_delivery()
            amqp.declare_event_queue(self.channel, queue)
        except BaseException:
            self.close()
            raise
        self.used = time.monotonic()

    @property
    def fresh(self) -> bool:
        return self.channel.is_open and time.monotonic() - self.used < IDLE_RECONNECT_SECONDS

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def drop(self) -> None:
        with contextlib.suppress(Exception):
            self.conn._impl._adapter_disconnect()  # NOTE: no close handshake with a server that does not answer


class QueueWriter:
    """Publishes payloads to ``queue`` on the RabbitMQ at ``url`` (the shipper's ``EventWriter``)."""

    def __init__(self, url: str, queue: str, *, timeout_seconds: float, parallel: int = DEFAULT_PARALLEL) -> None:
        self.url = url
        self.queue = queue
        self.parallel = parallel
        self._bound = max(timeout_seconds, MIN_WRITE_SECONDS)
        self._idle: list[_Link] = []
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget the connections (a forked child must not share its parent's sockets)."""
        self._idle = []
        self._lock = threading.Lock()

    def write(self, payloads: list[bytes]) -> None:
        self._publish([(payload, _PERSISTENT) for payload in payloads])

    def count(self, increments: Mapping[str, float]) -> None:
        """Send counter increments (events dropped while RabbitMQ was away) to the drainers."""
        props = pika.BasicProperties(delivery_mode=2, type=COUNTERS_TYPE)
        self._publish([(json.dumps(dict(increments)).encode(), props)])

    def close(self) -> None:
        with self._lock:
            links, self._idle = self._idle, []
        for link in links:
            link.close()

    def _publish(self, messages: list[tuple[bytes, Any]]) -> None:
        link = self._take()
        timer = link.conn.call_later(self._bound, _time_out)
        try:
            for body, props in messages:
                link.channel.basic_publish("", self.queue, body, properties=props, mandatory=True)
            link.conn.remove_timeout(timer)
        except BaseException:
            link.drop()  # NOTE: a confirm may still be in flight; the next write connects afresh
            raise
        link.used = time.monotonic()
        with self._lock:
            self._idle.append(link)

    def _take(self) -> _Link:
        """An idle, fresh connection of the pool, or a new one (the shipper bounds how many are busy)."""
        while True:
            with self._lock:
                link = self._idle.pop() if self._idle else None
            if link is None:
                return _Link(self.url, self.queue, self._bound)
            if link.fresh:
                return link
            link.close()


def _time_out() -> None:
    raise WriteTimeout("RabbitMQ did not confirm the run events in time")
