"""The broker module the acceptance suite starts with the real CLI: ``dramatiq tests.acceptance.app``."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage

from runwatch import workers
from runwatch.settings import Settings

from .actors import JOURNAL_ENV, Journal, declare

settings = Settings.from_env()
broker = RedisBroker(url=settings.redis_url, heartbeat_timeout=settings.heartbeat_timeout_ms)
workers.install(broker, settings=settings)
broker.add_middleware(CurrentMessage())
broker.add_middleware(Journal(os.environ[JOURNAL_ENV]))
dramatiq.set_broker(broker)
work = declare(broker, os.environ[JOURNAL_ENV])
