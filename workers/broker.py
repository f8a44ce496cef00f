"""Attach Runwatch to a broker in one line, or build a Redis or RabbitMQ broker with it attached."""

from __future__ import annotations

from collections.abc import Callable

import dramatiq
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

from runwatch import redact as redaction
from runwatch.settings import Settings

from .middleware import Recorder
from .transport import Transport


def install(
    broker: dramatiq.Broker,
    *,
    settings: Settings | None = None,
    redis_client: redis.Redis | None = None,
    redact: Callable[[str], str] | None = None,
) -> Recorder:
    """Add the recorder to ``broker`` as its first middleware and return it.

    Call it before declaring actors (Dramatiq checks actor options against the middleware).
    Events travel through the broker itself (``workers.transport``): a ``RedisBroker``'s Redis
    stream, a ``RabbitmqBroker``'s durable queue; ``redis_client`` (or
    ``RUNWATCH_EVENT_TRANSPORT=redis`` with ``RUNWATCH_REDIS_URL``) sends them to a Redis instead.
    ``redact`` is a ``str -> str`` function for custom masking rules: it
    runs after the built-in rules and ``RUNWATCH_REDACT_HOOK`` on every text this process ships
    (exception messages, tracebacks, stored arguments, dead-letter evidence).
    """
    settings = settings or Settings.from_env()
    # NOTE: the process-wide redactor, so the recorder's hooks, the failure callback and the
    # maintenance thread's dead-letter scans all mask with the same rules. A bad hook fails here.
    redaction.set_default(redaction.from_settings(settings, hook=redact))
    transport = Transport.for_broker(broker, settings, redis_client)
    shipper = transport.shipper(settings)
    recorder = Recorder(shipper, settings, transport)
    # NOTE: first in the list, so our after_* hooks run last: after Retries decided (DESIGN §5).
    first = type(broker.middleware[0]) if broker.middleware else None
    broker.add_middleware(recorder, before=first) if first else broker.add_middleware(recorder)
    return recorder


def redis_broker(
    url: str | None = None,
    *,
    settings: Settings | None = None,
    redact: Callable[[str], str] | None = None,
    **kwargs,
) -> RedisBroker:
    """A ``RedisBroker`` on ``url`` (default ``RUNWATCH_REDIS_URL``) with Runwatch attached."""
    settings = settings or Settings.from_env()
    url = url or settings.redis_url
    broker = RedisBroker(url=url, **kwargs) if url else RedisBroker(**kwargs)
    install(broker, settings=settings, redact=redact)
    return broker


def rabbitmq_broker(
    url: str | None = None,
    *,
    settings: Settings | None = None,
    redact: Callable[[str], str] | None = None,
    **kwargs,
) -> RabbitmqBroker:
    """A ``RabbitmqBroker`` on ``url`` (default ``RUNWATCH_RABBITMQ_URL``) with Runwatch attached.

    Publisher confirms are on unless ``confirm_delivery=False`` is given: a job is only recorded
    as queued once RabbitMQ has its message.
    """
    settings = settings or Settings.from_env()
    url = url or settings.rabbitmq_url
    kwargs.setdefault("confirm_delivery", True)
    broker = RabbitmqBroker(url=url, **kwargs) if url else RabbitmqBroker(**kwargs)
    install(broker, settings=settings, redact=redact)
    return broker
