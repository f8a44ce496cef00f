"""A RabbitMQ that stops answering never holds a job longer than the durable wait, and the events
it did not confirm are shipped once it answers again (the RabbitMQ twin of test_shipper_hang)."""

from __future__ import annotations

import contextlib
import time
from urllib.parse import urlsplit, urlunsplit

from runwatch.bridge import amqp
from runwatch.workers.amqp_writer import QueueWriter
from runwatch.workers.shipper import EventShipper

from runwatch import events as ev
from runwatch import wire
from tests.support.proxy import CuttableProxy
from tests.support.rabbitmq import unique
from tests.support.waiting import wait_for

META = {"queue": "q", "actor": "a", "type": "t", "created_at": 1.0}


def _via(proxy: CuttableProxy, url: str) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _outcome(message_id: str) -> dict:
    return ev.new_event(ev.COMPLETED, message_id, 1.0, META, outcome="succeeded")


def test_a_silent_rabbitmq_is_waited_for_at_most_the_durable_wait_then_caught_up(rabbitmq_url):
    parts = urlsplit(rabbitmq_url)
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    queue = unique("events")
    writer = QueueWriter(_via(proxy, rabbitmq_url), queue, timeout_seconds=0.3)
    shipper = EventShipper(None, queue, flush_interval_ms=10, durable_wait_ms=300, buffer_max_events=1000,
                           writer=writer)  # fmt: skip
    try:
        assert shipper.emit(_outcome("before"), durable=True)  # connected and confirmed
        proxy.pause()  # the connection stays open; RabbitMQ's confirms never arrive
        started = time.monotonic()
        shipped = shipper.emit(_outcome("during"), durable=True)
        elapsed = time.monotonic() - started
        assert shipped is False and elapsed < 2.0, elapsed  # the job is acked anyway, not held
        proxy.resume()
        assert shipper.flush(timeout_seconds=30)  # the background thread reconnects and ships it
        with contextlib.closing(amqp.connect(rabbitmq_url)) as connection:
            channel = connection.channel()
            seen: list[str] = []

            def both_there() -> bool:
                method, _, body = channel.basic_get(queue, auto_ack=True)
                if method is not None:
                    seen.extend(e["message_id"] for e in wire.loads(body))
                return {"before", "during"} <= set(seen)

            wait_for(both_there, timeout=10)
            channel.queue_delete(queue)
            channel.queue_delete(amqp.rejected_queue(queue))
    finally:
        shipper.close(timeout_seconds=1)
        writer.close()
        proxy.close()
