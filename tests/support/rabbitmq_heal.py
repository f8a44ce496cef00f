"""Healer tests on RabbitMQ: runs seeded on a queue of their own, a consumer that holds messages unacked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text

from tests.support.ledger import seed
from tests.support.waiting import wait_for


def seed_on(engine: Any, queue: str, status: str = "queued", **kwargs: Any) -> int:
    """``ledger.seed`` with the run on ``queue`` and no Redis message id (RabbitMQ gives none)."""
    run_id = seed(engine, status, **kwargs)
    with engine.begin() as conn:
        conn.execute(text("UPDATE operation_runs SET queue_name = :q WHERE id = :i"), {"q": queue, "i": run_id})
    return run_id


@contextmanager
def holding_consumer(url: str, queue: str, *, expect: int, prefetch: int = 10) -> Iterator[Any]:
    """A consumer that takes ``expect`` messages of ``queue`` and never acks them; when it closes
    (as a dead worker's connection does), RabbitMQ puts them back in the queue, redelivered."""
    from runwatch.bridge import amqp

    connection = amqp.connect(url)
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    received: list[Any] = []
    channel.basic_consume(queue, lambda _ch, method, _props, _body: received.append(method), auto_ack=False)

    def held() -> bool:
        connection.process_data_events(time_limit=0.05)
        return len(received) >= expect

    wait_for(held)
    try:
        yield received
    finally:
        connection.close()
