"""The shipper's writes on RabbitMQ: publish event batches to the durable run-event queue, confirmed.

Each payload becomes one persistent message, published with publisher confirms and
``mandatory`` (an unroutable message is an error, not a silent drop), so once ``write``
returns the events are as durable as the job messages themselves. Only one thread ships at a
time (the shipper's ``_leading``), so one connection is enough; pika's ``BlockingConnection``
is used by one thread at a time, never concurrently.

Bounded like the Redis writer: a RabbitMQ that stops answering (a partition) must never hold a
job for longer than ``durable_wait_ms``. pika has no per-call timeout, so a timer on the
connection's I/O loop shuts its socket down when the bound passes; the blocking publish fails,
and the events go back to the buffer for the background thread to retry (the drainer dedupes
by id). ``tests/integration/test_amqp_writer.py`` holds it to that with a silent proxy.
"""

from __future__ import annotations

import contextlib
import json
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
_PERSISTENT = pika.BasicProperties(delivery_mode=2)


class QueueWriter:
    """Publishes payloads to ``queue`` on the RabbitMQ at ``url`` (the shipper's ``EventWriter``)."""

    def __init__(self, url: str, queue: str, *, timeout_seconds: float) -> None:
        self.url = url
        self.queue = queue
        self._bound = max(timeout_seconds, MIN_WRITE_SECONDS)
        self._conn: Any = None
        self._channel: Any = None
        self._used = 0.0

    def reset(self) -> None:
        """Forget the connection (a forked child must not share its parent's socket)."""
        self._conn = self._channel = None

    def write(self, payloads: list[bytes]) -> None:
        self._publish([(payload, _PERSISTENT) for payload in payloads])

    def count(self, increments: Mapping[str, float]) -> None:
        """Send counter increments (events dropped while RabbitMQ was away) to the drainers."""
        props = pika.BasicProperties(delivery_mode=2, type=COUNTERS_TYPE)
        self._publish([(json.dumps(dict(increments)).encode(), props)])

    def close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _publish(self, messages: list[tuple[bytes, Any]]) -> None:
        channel = self._connected()
        conn = self._conn
        # NOTE: on the connection's own I/O loop, which runs while a blocking publish waits for its
        # confirm (BlockingConnection.call_later callbacks would only run in process_data_events):
        # past the bound the socket is shut down, and the waiting publish fails at once.
        ioloop = conn._impl.ioloop
        timer = ioloop.call_later(self._bound, lambda: amqp.abort(conn))
        try:
            for body, props in messages:
                channel.basic_publish("", self.queue, body, properties=props, mandatory=True)
        except BaseException:
            self._drop()  # NOTE: a confirm may still be in flight; the next write reconnects
            raise
        finally:
            ioloop.remove_timeout(timer)
        self._used = time.monotonic()

    def _connected(self) -> Any:
        if self._channel is not None:
            if self._channel.is_open and time.monotonic() - self._used < IDLE_RECONNECT_SECONDS:
                return self._channel
            self.close()
        params = amqp.parameters(self.url, timeout_seconds=self._bound)
        params.heartbeat = HEARTBEAT_SECONDS
        conn = pika.BlockingConnection(params)
        try:
            channel = conn.channel()
            channel.confirm_delivery()
            amqp.declare_event_queue(channel, self.queue)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        self._conn, self._channel = conn, channel
        return channel

    def _drop(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            amqp.abort(conn, release=True)  # NOTE: no close handshake with a server that does not answer
