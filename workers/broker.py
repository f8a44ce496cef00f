"""Attach Runwatch to a broker in one line, or build a Redis broker with it attached."""

from __future__ import annotations

from collections.abc import Callable

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from runwatch import redact as redaction
from runwatch.settings import Settings

from .middleware import Recorder
from .shipper import EventShipper


def install(
    broker: dramatiq.Broker,
    *,
    settings: Settings | None = None,
    redis_client: redis.Redis | None = None,
    redact: Callable[[str], str] | None = None,
) -> Recorder:
    """Add the recorder to ``broker`` as its first middleware and return it.

    Call it before declaring actors (Dramatiq checks actor options against the middleware).
    Events go to ``redis_client``, by default the broker's own Redis connection, else
    ``RUNWATCH_REDIS_URL``. ``redact`` is a ``str -> str`` function for custom masking rules: it
    runs after the built-in rules and ``RUNWATCH_REDACT_HOOK`` on every text this process ships
    (exception messages, tracebacks, stored arguments, dead-letter evidence).
    """
    settings = settings or Settings.from_env()
    # NOTE: the process-wide redactor, so the recorder's hooks, the failure callback and the
    # maintenance thread's dead-letter scans all mask with the same rules. A bad hook fails here.
    redaction.set_default(redaction.from_settings(settings, hook=redact))
    client = redis_client or getattr(broker, "client", None)
    if client is None:
        if not settings.redis_url:
            raise ValueError("install() needs a Redis for run events: pass redis_client or set RUNWATCH_REDIS_URL")
        client = redis.Redis.from_url(settings.redis_url)
    shipper = EventShipper(
        client,
        settings.event_stream,
        flush_interval_ms=settings.flush_interval_ms,
        durable_wait_ms=settings.durable_wait_ms,
        buffer_max_events=settings.buffer_max_events,
    )
    recorder = Recorder(shipper, settings)
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
