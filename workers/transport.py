"""Which way run events travel from the workers to the drainers: a Redis stream or a RabbitMQ queue.

The default follows the broker: a ``RedisBroker``'s events go through its Redis (a stream), a
``RabbitmqBroker``'s through its RabbitMQ (a durable queue), so a RabbitMQ shop runs no Redis
for Runwatch, and events are exactly as durable as the job messages whose outcome they carry.
``RUNWATCH_EVENT_TRANSPORT`` (or an explicit ``redis_client`` given to ``install``) overrides it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

import dramatiq
import redis
from runwatch.bridge import amqp

from runwatch.settings import Settings

from .amqp_source import AmqpEventSource
from .amqp_writer import QueueWriter
from .drainer import EventSource
from .redis_source import RedisEventSource
from .shipper import EventShipper

REDIS, RABBITMQ = "redis", "rabbitmq"


def redis_url_of(client: redis.Redis) -> str:
    """A URL for the connection ``client`` uses, so the child reaches the same Redis."""
    kw = client.connection_pool.connection_kwargs
    auth = ""
    if kw.get("password"):
        auth = f"{quote(kw.get('username') or '')}:{quote(kw['password'])}@"
    if kw.get("path"):
        return f"unix://{auth}{kw['path']}?db={kw.get('db', 0)}"
    scheme = "rediss" if kw.get("ssl") else "redis"
    return f"{scheme}://{auth}{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"


def broker_kind(broker: dramatiq.Broker) -> str:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    return RABBITMQ if isinstance(broker, RabbitmqBroker) else REDIS


@dataclass(frozen=True)
class Transport:
    """The event transport: its kind and how to reach it."""

    kind: str
    redis_client: redis.Redis | None = None
    amqp_url: str | None = None

    @classmethod
    def for_broker(
        cls, broker: dramatiq.Broker, settings: Settings, redis_client: redis.Redis | None = None
    ) -> Transport:
        """The transport of a worker process whose broker is ``broker``."""
        kind = settings.event_transport or (REDIS if redis_client is not None else broker_kind(broker))
        if kind == RABBITMQ:
            params = getattr(broker, "parameters", None)
            url = settings.rabbitmq_url or (amqp.url_of(params) if params is not None else None)
            if url is None:
                raise ValueError("RabbitMQ run events need RUNWATCH_RABBITMQ_URL (the broker is not a RabbitmqBroker)")
            return cls(RABBITMQ, amqp_url=url)
        client = redis_client or getattr(broker, "client", None)
        if client is None:
            if not settings.redis_url:
                raise ValueError(
                    "install() needs a Redis for run events: pass redis_client or set RUNWATCH_REDIS_URL "
                    "(or RUNWATCH_EVENT_TRANSPORT=rabbitmq with RUNWATCH_RABBITMQ_URL)"
                )
            client = redis.Redis.from_url(settings.redis_url)
        return cls(REDIS, redis_client=client)

    @classmethod
    def from_settings(cls, settings: Settings) -> Transport:
        """The transport a standalone process (``runwatch drain``, the drainer child) reads."""
        kind = settings.transport_for(settings.broker_kind)
        if kind == RABBITMQ:
            return cls(RABBITMQ, amqp_url=settings.require_rabbitmq_url())
        return cls(REDIS, redis_client=redis.Redis.from_url(settings.require_redis_url()))

    @property
    def identity(self) -> str:
        """Where the events are, as a URL (the drain election's lock is per host, per transport)."""
        if self.kind == RABBITMQ:
            assert self.amqp_url is not None
            return self.amqp_url
        assert self.redis_client is not None
        return redis_url_of(self.redis_client)

    def child_env(self) -> dict[str, str]:
        """The variables a child process needs to reach the same transport."""
        if self.kind == RABBITMQ:
            assert self.amqp_url is not None
            return {"RUNWATCH_EVENT_TRANSPORT": RABBITMQ, "RUNWATCH_RABBITMQ_URL": self.amqp_url}
        return {"RUNWATCH_EVENT_TRANSPORT": REDIS, "RUNWATCH_REDIS_URL": self.identity}

    def shipper(self, settings: Settings) -> EventShipper:
        writer = None
        if self.kind == RABBITMQ:
            assert self.amqp_url is not None
            writer = QueueWriter(self.amqp_url, settings.event_stream, timeout_seconds=settings.durable_wait_ms / 1000)
        return EventShipper(
            self.redis_client,
            settings.event_stream,
            flush_interval_ms=settings.flush_interval_ms,
            durable_wait_ms=settings.durable_wait_ms,
            buffer_max_events=settings.buffer_max_events,
            writer=writer,
        )

    def source(self, settings: Settings, add_counters: Callable[[Mapping[str, float]], None]) -> EventSource:
        """A drainer's source; ``add_counters`` keeps run counters where Redis does not (RabbitMQ)."""
        if self.kind == RABBITMQ:
            assert self.amqp_url is not None
            return AmqpEventSource(
                self.amqp_url,
                settings.event_stream,
                batch_entries=settings.drain_batch,
                add_counters=add_counters,
                heartbeat_seconds=max(1, settings.drain_claim_idle_ms // 2000),  # dead after 2-3 missed
            )
        assert self.redis_client is not None
        return RedisEventSource(
            self.redis_client,
            settings.event_stream,
            batch_entries=settings.drain_batch,
            claim_idle_ms=settings.drain_claim_idle_ms,
        )
