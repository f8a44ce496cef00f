"""The drainer's RabbitMQ source keeps the next batch coming while one is written.

With a prefetch of exactly one batch, RabbitMQ sent nothing more until the batch was acknowledged,
after its transaction: every batch began with a round trip of waiting, and a read that caught only
the first deliveries of the next one looked like a quiet queue (the drainer then lingers). Draining
a backlog, the ledger fell 0.65-0.91 s behind the last ack (docs/benchmarks.md, "Recorder cost on
RabbitMQ").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pika
import pytest
from runwatch.bridge import amqp
from runwatch.workers.amqp_source import AmqpEventSource

from tests.support.rabbitmq import unique
from tests.support.waiting import wait_for

BATCH = 5
TOTAL = 40


@pytest.fixture
def queue(rabbitmq_url: str) -> Iterator[str]:
    name = unique("events")
    with contextlib.closing(amqp.connect(rabbitmq_url)) as connection:
        channel = connection.channel()
        amqp.declare_event_queue(channel, name)
        persistent = pika.BasicProperties(delivery_mode=2)
        for i in range(TOTAL):
            channel.basic_publish("", name, f'[{{"n": {i}}}]'.encode(), properties=persistent)
    yield name
    with contextlib.closing(amqp.connect(rabbitmq_url)) as connection:
        channel = connection.channel()
        channel.queue_delete(name)
        channel.queue_delete(amqp.rejected_queue(name))


def _source(url: str, queue: str) -> AmqpEventSource:
    return AmqpEventSource(url, queue, batch_entries=BATCH, add_counters=lambda increments: None)


def _read_a_batch(source: AmqpEventSource) -> list[bytes]:
    """What the drainer takes in one transaction: one read's entries, once a read returns any."""
    return [entry_id for entry_id, _ in wait_for(lambda: source.read(block_ms=200), timeout=10)]


def _ready(url: str, queue: str) -> int:
    with contextlib.closing(amqp.connect(url)) as connection:
        return int(amqp.queue_depth(connection, queue).messages or 0)


def test_more_than_the_batch_in_hand_is_delivered_while_it_is_being_written(rabbitmq_url, queue):
    source = _source(rabbitmq_url, queue)
    try:
        taken = _read_a_batch(source)  # in hand, not settled: its transaction is running
        assert 0 < len(taken) <= BATCH
        # RabbitMQ handed out at least one more batch than the one in hand: the next is on its way.
        wait_for(lambda: _ready(rabbitmq_url, queue) <= TOTAL - 2 * BATCH, timeout=10)
        more: list[bytes] = []  # and taken with the first still unacknowledged
        wait_for(lambda: more.extend(_read_a_batch(source)) or len(more) >= BATCH, timeout=10)
    finally:
        source.close()


def test_settling_acknowledges_the_batch_taken_not_what_was_delivered_after_it(rabbitmq_url, queue):
    source = _source(rabbitmq_url, queue)
    try:
        taken = _read_a_batch(source)
        wait_for(lambda: _ready(rabbitmq_url, queue) < TOTAL - len(taken), timeout=10)  # more delivered
        source.settle(taken, {})
    finally:
        source.close()  # what it held and did not settle goes back to the queue
    wait_for(lambda: _ready(rabbitmq_url, queue) == TOTAL - len(taken), timeout=10)
