"""A drainer and its metrics exposition over a transport, built the same way wherever one runs
(the host's drainer child, the drain thread, ``runwatch drain``)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Engine

from runwatch.exposition import RunwatchCollector
from runwatch.settings import Settings

from .drainer import Drainer
from .transport import Transport


def drainer_and_collector(
    settings: Settings, transport: Transport, engine: Engine
) -> tuple[Drainer, RunwatchCollector]:
    def add_counters(increments: Mapping[str, float]) -> None:
        pass  # TODO(lead): the ledger's counter store (helper: runwatch/counters.py LedgerCounters)

    source = transport.source(settings, add_counters)
    drainer = Drainer.from_settings(settings, source, engine)
    collector = RunwatchCollector(stream=settings.event_stream, redis_client=transport.redis_client, engine=engine)
    return drainer, collector
