"""RabbitMQ connections and queue facts, named in one place (the AMQP side of ``bridge.keys``).

Dramatiq's ``RabbitmqBroker`` declares, per queue ``q``: ``q`` and its delay queue ``q.DQ`` (both
dead-lettering into ``q.XQ`` through the default exchange), and ``q.XQ`` with a per-queue message
TTL (``dramatiq_dead_message_ttl``, 7 days). Messages are persistent (``delivery_mode=2``).
Runwatch adds one durable queue of its own for run events (``RUNWATCH_EVENT_STREAM``, the same
name as the Redis stream) and ``<that>:rejected`` for events the drainer could not apply.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pika
import pika.exceptions
from dramatiq.common import dq_name, xq_name

#: How long a Runwatch connection waits for RabbitMQ to answer (connect, a blocked publish).
DEFAULT_TIMEOUT_SECONDS = 5.0
#: Rejected run events kept for inspection (the oldest go first).
REJECTED_MAX_LENGTH = 10_000


def parameters(url: str, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> pika.URLParameters:
    """Connection parameters for ``url`` with Runwatch's bounded timeouts."""
    params = pika.URLParameters(url)
    params.socket_timeout = timeout_seconds
    params.blocked_connection_timeout = timeout_seconds
    params.stack_timeout = timeout_seconds
    return params


def url_of(params: pika.ConnectionParameters | list[pika.ConnectionParameters]) -> str:
    """An AMQP URL for ``params``: a child process reaches the same server."""
    first = params[0] if isinstance(params, list) else params
    creds: Any = first.credentials
    auth = f"{quote(creds.username, safe='')}:{quote(creds.password, safe='')}@" if hasattr(creds, "username") else ""
    scheme = "amqps" if first.ssl_options is not None else "amqp"
    return f"{scheme}://{auth}{first.host}:{first.port}/{quote(first.virtual_host, safe='')}"


def connect(url: str, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> pika.BlockingConnection:
    return pika.BlockingConnection(parameters(url, timeout_seconds=timeout_seconds))


def abort(connection: pika.BlockingConnection, *, release: bool = False) -> None:
    """Drop ``connection`` without the close handshake (its peer does not answer): shut its socket
    down, so that pika's I/O on it fails at once. ``release`` also closes the descriptor: only once
    pika no longer waits on it (from its own I/O loop, a closed descriptor would never wake it)."""
    sock = getattr(getattr(connection._impl, "_transport", None), "_sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        if release:
            sock.close()
    if release:  # NOTE: and the I/O loop's wake-up socket pair, which only its close() releases
        with contextlib.suppress(Exception):
            connection._impl.ioloop.close()


def declare_event_queue(channel: Any, name: str) -> None:
    """The run-event queue and its rejects: durable, so events survive a RabbitMQ restart."""
    channel.queue_declare(queue=name, durable=True)
    channel.queue_declare(queue=rejected_queue(name), durable=True, arguments={"x-max-length": REJECTED_MAX_LENGTH})


def rejected_queue(event_queue: str) -> str:
    return f"{event_queue}:rejected"


@dataclass(frozen=True)
class QueueDepth:
    """What a passive ``queue.declare`` says: ready messages and consumers (None: the queue does not exist)."""

    name: str
    messages: int | None
    consumers: int | None

    @property
    def exists(self) -> bool:
        return self.messages is not None


def queue_depth(connection: pika.BlockingConnection, name: str) -> QueueDepth:
    """Ready messages and consumers of ``name`` without creating it (a missing queue closes only a spare channel)."""
    channel = connection.channel()
    try:
        frame = channel.queue_declare(queue=name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return QueueDepth(name, None, None)
        raise
    with contextlib.suppress(pika.exceptions.AMQPError):
        channel.close()
    return QueueDepth(name, frame.method.message_count, frame.method.consumer_count)


def queue_family(queue: str) -> tuple[str, str, str]:
    """A Dramatiq queue's three RabbitMQ queues: itself, its delay queue, its dead letters."""
    return queue, dq_name(queue), xq_name(queue)


def queue_backlog(url: str, queue: str, *, timeout_seconds: float = 2.0) -> Callable[[], tuple[int, float | None]]:
    """For /metrics (``RunwatchCollector(backlog=...)``): messages waiting in ``queue``; their age is
    unknown (AMQP cannot tell), and those a consumer holds unacknowledged are not counted."""

    def backlog() -> tuple[int, float | None]:
        with contextlib.closing(connect(url, timeout_seconds=timeout_seconds)) as connection:
            return queue_depth(connection, queue).messages or 0, None

    return backlog
