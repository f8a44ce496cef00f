"""The healer's broker evidence for the broker in use (``Settings.broker_kind``, or the worker's own)."""

from __future__ import annotations

from typing import Any

import redis

from runwatch.healer import Locator
from runwatch.settings import Settings

from .keys import DEFAULT_NAMESPACE, Keys
from .locator import RedisLocator
from .rabbitmq_locator import BROKER_ERRORS as RABBITMQ_ERRORS
from .rabbitmq_locator import RabbitmqLocator

#: What a maintenance pass treats as "the broker did not answer" (``healer.record_broker_outage``).
BROKER_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, *RABBITMQ_ERRORS)


def locator_for(
    settings: Settings,
    *,
    kind: str | None = None,
    redis_client: Any = None,
    keys: Keys | None = None,
    rabbitmq_url: str | None = None,
) -> Locator:
    """A ``RedisLocator`` or a ``RabbitmqLocator``, by ``kind`` (default ``settings.broker_kind``).

    Redis: on ``redis_client`` (else one for ``RUNWATCH_REDIS_URL``) under ``keys``. RabbitMQ: on
    ``rabbitmq_url`` (a worker passes its broker's, ``amqp.url_of(broker.parameters)``; else
    ``RUNWATCH_RABBITMQ_URL``), with the management API when ``RUNWATCH_RABBITMQ_MANAGEMENT_URL`` is set.
    """
    kind = kind or settings.broker_kind

    def on_redis() -> RedisLocator:
        client = redis_client if redis_client is not None else redis.Redis.from_url(settings.require_redis_url())
        return RedisLocator(
            client,
            keys or Keys(DEFAULT_NAMESPACE),
            event_stream=settings.event_stream,
            heartbeat_timeout_ms=settings.heartbeat_timeout_ms,
        )

    if kind != "rabbitmq":
        return on_redis()
    # NOTE: run events may travel through Redis beside a RabbitMQ broker: then the stream says
    # which runs have events in flight, not the (absent) event queue.
    events_in_redis = settings.transport_for(kind) == "redis"
    return RabbitmqLocator(
        rabbitmq_url or settings.require_rabbitmq_url(),
        event_queue=settings.event_stream,
        management_url=settings.rabbitmq_management_url,
        unapplied=on_redis().unapplied_message_ids if events_in_redis else None,
    )
