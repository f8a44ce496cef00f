"""A broker module for the drain-election tests: ``dramatiq tests.integration.election_app -p N``."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from runwatch import workers
from runwatch.settings import Settings

settings = Settings.from_env()
broker = RedisBroker(url=settings.redis_url, namespace=os.environ["ELECTION_NAMESPACE"])
workers.install(broker, settings=settings)
dramatiq.set_broker(broker)


@dramatiq.actor(broker=broker, queue_name="elect")
def job() -> None:
    """Nothing: the test counts runs in the ledger."""
