"""The healer's broker evidence for the configured broker (``Settings.broker_kind``)."""

from __future__ import annotations

from typing import Any

from runwatch.healer import Locator
from runwatch.settings import Settings

from .keys import DEFAULT_NAMESPACE, Keys


def locator_for(settings: Settings, *, redis_client: Any = None, keys: Keys | None = None) -> Locator:
    """A ``RedisLocator`` (on ``redis_client``, else one for ``RUNWATCH_REDIS_URL``) or a ``RabbitmqLocator``."""
    if settings.broker_kind == "rabbitmq":
        from .rabbitmq_locator import RabbitmqLocator

        return RabbitmqLocator(
            settings.require_rabbitmq_url(),
            event_queue=settings.event_stream,
            management_url=settings.rabbitmq_management_url,
        )
    import redis

    from .locator import RedisLocator

    client = redis_client if redis_client is not None else redis.Redis.from_url(settings.require_redis_url())
    return RedisLocator(
        client,
        keys or Keys(DEFAULT_NAMESPACE),
        event_stream=settings.event_stream,
        heartbeat_timeout_ms=settings.heartbeat_timeout_ms,
    )
