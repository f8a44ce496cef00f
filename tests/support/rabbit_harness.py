"""A RabbitMQ broker with the recorder, its events in a RabbitMQ queue, and a drainer over that queue."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from runwatch.bridge import amqp
from runwatch.workers.drain_setup import drainer_and_collector
from runwatch.workers.drainer import Drainer
from runwatch.workers.transport import Transport
from sqlalchemy import text

from runwatch import workers
from runwatch.settings import Settings
from tests.support.rabbitmq import unique
from tests.support.waiting import wait_for


@dataclass
class RabbitHarness:
    broker: RabbitmqBroker
    recorder: workers.Recorder
    drainer: Drainer
    engine: Any
    settings: Settings
    queue: str

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until the queue is processed, then drain every event into PostgreSQL."""
        self.broker.join(self.queue, timeout=int(timeout * 1000))
        self.recorder.shipper.flush()
        self.drainer.drain_until_empty()

    def settle_runs(self, *message_ids: str, timeout: float = 30.0) -> None:
        """Drain until these runs are completed. NOTE: ``broker.join`` counts only ready messages, so
        it returns while a retry waits unacknowledged in a worker's delay-queue prefetch."""

        def completed() -> bool:
            self.recorder.shipper.flush()
            self.drainer.drain_until_empty()
            with self.engine.connect() as conn:
                done = conn.execute(
                    text("SELECT count(*) FROM operation_runs WHERE status = 'completed' AND message_id = ANY(:ids)"),
                    {"ids": list(message_ids)},
                ).scalar()
            return done == len(message_ids)

        wait_for(completed, timeout=timeout)

    def run_or_none(self, message_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(text("SELECT * FROM operation_runs WHERE message_id = :m"), {"m": message_id})
            found = row.mappings().first()
        return dict(found) if found is not None else None

    def run(self, message_id: str) -> dict[str, Any]:
        found = self.run_or_none(message_id)
        assert found is not None, f"no run for message {message_id}"
        return found

    def events(self, message_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT * FROM run_events WHERE message_id = :m ORDER BY at, id"), {"m": message_id}
            )
            return [dict(r) for r in rows.mappings()]

    def depth(self, queue: str) -> int | None:
        conn = amqp.connect(self.settings.require_rabbitmq_url())
        try:
            return amqp.queue_depth(conn, queue).messages
        finally:
            conn.close()


@contextmanager
def rabbit_harness(rabbitmq_url: str, database_url: str, engine: Any, **overrides: Any) -> Iterator[RabbitHarness]:
    """A recorded RabbitMQ broker (no Redis anywhere) whose actors use ``harness.queue``."""
    defaults: dict[str, Any] = {
        "flush_interval_ms": 10,
        "drain_mode": "external",
        "heal_interval_seconds": 0,
        "progress_interval_ms": 0,
    }
    settings = Settings(
        database_url=database_url,
        rabbitmq_url=rabbitmq_url,
        event_stream=unique("rw-events"),
        **{**defaults, **overrides},
    )
    broker = RabbitmqBroker(url=rabbitmq_url, confirm_delivery=True)
    recorder = workers.install(broker, settings=settings)
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    drainer, _ = drainer_and_collector(settings, Transport.from_settings(settings), engine)
    harness = RabbitHarness(broker, recorder, drainer, engine, settings, unique("rwq"))
    try:
        yield harness
    finally:
        recorder.shipper.close()
        drainer.source.close()
        channel = broker.channel
        for name in (
            *amqp.queue_family(harness.queue),
            settings.event_stream,
            amqp.rejected_queue(settings.event_stream),
        ):
            channel.queue_delete(name)
        broker.close()
