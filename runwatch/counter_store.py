"""Where the run counters of /metrics live: the Redis hash, or the ledger when there is no Redis.

``runwatch.counters`` says what to count (``increments``) and how it reads back (``families``);
a store keeps the running totals. Both stores take the same increments and hand back the same
field names, so an exporter shows the same families whichever store counted.

- ``RedisCounters``: the ``<stream>:metrics`` hash (``HINCRBYFLOAT``), as on the Redis broker.
- ``LedgerCounters``: the ``metric_counters`` table, for a RabbitMQ shop that runs no Redis.
  ``add_in(conn, ...)`` adds inside the caller's own transaction: a drainer or a healer pass that
  counts in the transaction that ends the runs counts each run exactly once (no undercount when
  the process dies between its commit and a separate count, as with Redis).

``record_to(store, finished)`` is the best-effort form for after a commit: it never raises.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, text

from . import counters
from . import statements as sql

log = logging.getLogger("runwatch.metrics")
_VALUES = text("SELECT name, value FROM metric_counters")


class CounterStore(Protocol):
    """Running totals of counter fields (``counters.field`` names)."""

    #: Where the totals live, for log lines ("Redis", "PostgreSQL").
    where: str

    def add(self, increments: Mapping[str, float]) -> None:
        """Add ``increments`` to the totals; raises when the store does not answer."""


class RedisCounters:
    """The ``<stream>:metrics`` hash; ``counters.send`` adds to it on a caller's own pipeline."""

    where = "Redis"

    def __init__(self, client: Any, stream: str) -> None:
        self.client = client
        self.stream = stream

    def add(self, increments: Mapping[str, float]) -> None:
        if not increments:
            return
        with self.client.pipeline(transaction=False) as pipe:
            counters.send(pipe, self.stream, increments)
            pipe.execute()

    def values(self) -> dict[str, float]:
        return {_text(k): float(_text(v)) for k, v in self.client.hgetall(counters.hash_key(self.stream)).items()}


class LedgerCounters:
    """The ``metric_counters`` table of the ledger: one row per field."""

    where = "PostgreSQL"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, increments: Mapping[str, float]) -> None:
        """Add in a transaction of its own (one statement)."""
        if not increments:
            return
        with self.engine.begin() as conn:
            self.add_in(conn, increments)

    @staticmethod
    def add_in(conn: Connection, increments: Mapping[str, float]) -> None:
        """Add inside the caller's open transaction: the counts commit or roll back with its work.

        PERF: the rows stay locked until that transaction ends, and every drainer adds to the same
        few rows (a type's ``finished`` field): call this last, just before the commit, so
        concurrent drainers wait on each other for the commit only.
        """
        if not increments:
            return
        names = sorted(increments)
        conn.execute(sql.ADD_METRIC_COUNTERS, {"names": names, "amounts": [float(increments[n]) for n in names]})

    @staticmethod
    def values(conn: Connection) -> dict[str, float]:
        """Every total, by field name (what ``counters.families`` reads)."""
        return {name: float(value) for name, value in conn.execute(_VALUES)}


def record_to(store: CounterStore, finished: Iterable[Mapping[str, Any]]) -> None:
    """Count runs that just ended, best effort, after their commit: a store that does not answer loses
    these increments, never the pass that ended them."""
    runs = list(finished)
    amounts = counters.increments(runs)
    if not amounts:
        return
    try:
        store.add(amounts)
    except Exception as exc:
        log.warning("metrics: could not count %d ended run(s) in %s: %s", len(runs), store.where, exc)


def dropped(drops: Mapping[str, int]) -> dict[str, float]:
    """Increments for events a worker's buffer dropped, by kind (``outcome`` or ``other``)."""
    return {counters.field(counters.DROPPED, kind): float(n) for kind, n in drops.items() if n}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
