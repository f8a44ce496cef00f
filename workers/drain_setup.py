"""A drainer and its metrics exposition over a transport, built the same way wherever one runs
(the host's drainer child, the drain thread, ``runwatch drain``)."""

from __future__ import annotations

from runwatch.bridge import amqp
from sqlalchemy import Engine

from runwatch.counter_store import LedgerCounters, RedisCounters
from runwatch.exposition import RunwatchCollector
from runwatch.settings import Settings

from .drainer import Drainer
from .transport import RABBITMQ, Transport


def drainer_and_collector(
    settings: Settings, transport: Transport, engine: Engine
) -> tuple[Drainer, RunwatchCollector]:
    """A drainer over ``transport`` and the host's exposition; without Redis, the run counters live
    in the ledger (``counter_store.LedgerCounters``) and the backlog is the event queue's depth."""
    if transport.kind == RABBITMQ:
        assert transport.amqp_url is not None
        source = transport.source(settings, LedgerCounters(engine).add)
        collector = RunwatchCollector(
            stream=settings.event_stream,
            engine=engine,
            counters_in_ledger=True,
            backlog=amqp.queue_backlog(transport.amqp_url, settings.event_stream),
        )
    else:
        source = transport.source(settings, RedisCounters(transport.redis_client, settings.event_stream).add)
        collector = RunwatchCollector(stream=settings.event_stream, redis_client=transport.redis_client, engine=engine)
    return Drainer.from_settings(settings, source, engine), collector
