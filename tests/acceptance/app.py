"""The broker module the acceptance suite starts with the real CLI: ``dramatiq tests.acceptance.app``.

The broker is the one the World runs on (``RUNWATCH_BROKER``): a ``RedisBroker``, or a
``RabbitmqBroker`` with publisher confirms (as ``workers.rabbitmq_broker`` makes it), whose
connection heartbeat is ``RW_ACC_AMQP_HEARTBEAT`` seconds when set: a frozen worker's deliveries
go back to the queue once RabbitMQ has missed two of them.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage

from runwatch import workers
from runwatch.settings import Settings

from .actors import AMQP_HEARTBEAT_ENV, JOURNAL_ENV, Journal, declare

settings = Settings.from_env()
broker: dramatiq.Broker
if settings.broker_kind == "rabbitmq":
    url = settings.require_rabbitmq_url()
    if heartbeat := os.environ.get(AMQP_HEARTBEAT_ENV):
        url += ("&" if "?" in url else "?") + f"heartbeat={heartbeat}"
    broker = RabbitmqBroker(url=url, confirm_delivery=True)
else:
    broker = RedisBroker(url=settings.redis_url, heartbeat_timeout=settings.heartbeat_timeout_ms)
workers.install(broker, settings=settings)
broker.add_middleware(CurrentMessage())
broker.add_middleware(Journal(os.environ[JOURNAL_ENV]))
dramatiq.set_broker(broker)
work = declare(broker, os.environ[JOURNAL_ENV])
