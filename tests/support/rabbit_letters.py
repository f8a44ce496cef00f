"""Real dead letters on RabbitMQ: runs waited for, lost callbacks, and ``<q>.XQ`` filled and emptied by hand."""

from __future__ import annotations

import time
from typing import Any

import dramatiq
import pika
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import xq_name
from runwatch.bridge import amqp
from sqlalchemy import text

from runwatch import events as ev
from runwatch.ledger import apply_events
from runwatch.settings import Settings
from runwatch.thresholds import ThresholdPolicy
from tests.support.rabbit_harness import RabbitHarness
from tests.support.waiting import wait_for


def wait_run(harness: RabbitHarness, message_id: str, **expected: Any) -> dict[str, Any]:
    """The run of ``message_id`` once its columns have the ``expected`` values (events drained as they come)."""

    def ready() -> dict[str, Any] | None:
        harness.recorder.shipper.flush()
        harness.drainer.drain_until_empty()
        with harness.engine.connect() as conn:
            row = conn.execute(text("SELECT * FROM operation_runs WHERE message_id = :m"), {"m": message_id})
            run = row.mappings().first()
        return dict(run) if run and all(run[k] == v for k, v in expected.items()) else None

    return wait_for(ready, timeout=30)


def started(engine: Any, settings: Settings, message: dramatiq.Message) -> None:
    """Record ``message``'s start, never its end: its failure callback was lost."""
    meta = {"queue": message.queue_name, "actor": message.actor_name, "type": message.actor_name}
    meta["created_at"] = message.message_timestamp / 1000
    with engine.begin() as conn:
        apply_events(
            conn,
            [ev.new_event(ev.STARTED, message.message_id, time.time(), meta, attempt=1)],
            ThresholdPolicy(settings),
        )


def depth(url: str, queue: str) -> int | None:
    connection = amqp.connect(url)
    try:
        return amqp.queue_depth(connection, queue).messages
    finally:
        connection.close()


def publish_dead_letters(url: str, queue: str, messages: list[dramatiq.Message]) -> None:
    """Put ``messages`` straight into ``<queue>.XQ`` (declared as Dramatiq declares it), in order."""
    broker = RabbitmqBroker(url=url)
    try:
        broker.declare_queue(queue, ensure=True)
        channel = broker.channel
        channel.confirm_delivery()
        for message in messages:
            channel.basic_publish("", xq_name(queue), message.encode(), pika.BasicProperties(delivery_mode=2))
    finally:
        broker.close()


def take_all(url: str, queue: str) -> list[tuple[str, bool]]:
    """Consume every message of ``queue`` for good: ``(message id or raw body, redelivered)``, in order."""
    connection = amqp.connect(url)
    try:
        channel = connection.channel()
        taken = []
        while True:
            method, _props, body = channel.basic_get(queue=queue, auto_ack=True)
            if method is None:
                return taken
            try:
                ident = dramatiq.Message.decode(body).message_id
            except Exception:  # noqa: BLE001 - an undecodable body is named by itself
                ident = body.decode(errors="replace")
            taken.append((ident, method.redelivered))
    finally:
        connection.close()
