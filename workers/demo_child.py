"""A worker process the demo SIGKILLs mid-run: ``python -m runwatch.workers.demo_child (NAMESPACE | --rabbitmq)``."""

from __future__ import annotations

import os
import sys
import threading

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

from runwatch.settings import Settings

from .broker import install
from .run import current_run

KILLED_QUEUE = "demo-killed"


def declare(broker: dramatiq.Broker) -> dramatiq.Actor:
    @dramatiq.actor(
        broker=broker,
        queue_name=KILLED_QUEUE,
        runwatch_type="ledger.rebuild",
        runwatch_label="Rebuild ledger",
        runwatch_running_stale_seconds=2,
        max_retries=0,
    )
    def rebuild_ledger() -> None:
        current_run().progress(processed=1, total=100, message="rebuilding")
        if os.environ.get("RW_DEMO_CHILD_DOOMED"):
            threading.Event().wait()  # this process is the one the demo SIGKILLs mid-run
        current_run().progress(processed=100, total=100, message="Rebuilt after a redelivery")

    return rebuild_ledger


def main() -> None:
    settings = Settings.from_env()
    broker: dramatiq.Broker
    if sys.argv[1] == "--rabbitmq":
        broker = RabbitmqBroker(url=settings.require_rabbitmq_url(), confirm_delivery=True)
    else:
        broker = RedisBroker(url=settings.redis_url, namespace=sys.argv[1])
    install(broker, settings=settings)
    broker.emit_after("process_boot")
    declare(broker)
    dramatiq.Worker(broker, queues={KILLED_QUEUE}, worker_threads=1, worker_timeout=100).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
