"""The exporter's backlog from a real RabbitMQ event queue, through the ``backlog`` callable (no Redis)."""

from __future__ import annotations

import contextlib

from runwatch.bridge import amqp

from runwatch.exposition import RunwatchCollector
from tests.support.exposition import samples, scrape
from tests.support.net import free_port
from tests.support.rabbitmq import unique


def test_the_event_queues_depth_is_the_backlog_and_a_dead_broker_reads_as_down(rabbitmq_url, engine):
    queue = unique("events")
    with contextlib.closing(amqp.connect(rabbitmq_url)) as connection:
        channel = connection.channel()
        amqp.declare_event_queue(channel, queue)
        values = samples(
            scrape(RunwatchCollector(stream=queue, engine=engine, backlog=amqp.queue_backlog(rabbitmq_url, queue)))
        )
        assert values[("runwatch_broker_up", ())] == 1
        assert values[("runwatch_event_stream_backlog", ())] == 0 and values[("runwatch_drainer_lag_seconds", ())] == 0
        channel.confirm_delivery()
        for _ in range(3):
            channel.basic_publish("", queue, b"[]")
        values = samples(
            scrape(RunwatchCollector(stream=queue, engine=engine, backlog=amqp.queue_backlog(rabbitmq_url, queue)))
        )
        assert values[("runwatch_event_stream_backlog", ())] == 3
        assert ("runwatch_drainer_lag_seconds", ()) not in values  # NOTE: waiting events of unknown age
        channel.queue_delete(queue)
        channel.queue_delete(amqp.rejected_queue(queue))
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    values = samples(scrape(RunwatchCollector(stream=queue, engine=engine, backlog=amqp.queue_backlog(dead, queue))))
    assert values[("runwatch_broker_up", ())] == 0 and values[("runwatch_ledger_up", ())] == 1
