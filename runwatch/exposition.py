"""Prometheus exposition where the work happens: worker hosts, drainers, the healer loop.

``RunwatchCollector`` reads, at scrape time, the run counters and histograms (``counters``: a
Redis hash every process that ends runs adds to), the event stream's backlog and the drainer's
lag (the oldest entry not applied yet: applied entries are deleted), the periodic passes as
recorded in ``maintenance_passes`` and the number of likely-stale runs.

Without Redis (a RabbitMQ shop) the counters come from the ledger's ``metric_counters`` table
(``counters_in_ledger=True``) and the backlog and lag from a ``backlog`` callable that asks the
event transport; ``runwatch_broker_up`` says whether it answered. ``serve`` starts
prometheus_client's HTTP server on ``RUNWATCH_METRICS_HOST``:``RUNWATCH_METRICS_PORT`` (default
9195; Dramatiq's own Prometheus middleware takes 9191). Every value here is global (the same
hash, the same tables), so several exporters report the same numbers: aggregate with ``max``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy import Engine, text

from . import counters, passes
from .counter_store import LedgerCounters
from .settings import DEFAULT_METRICS_HOST

log = logging.getLogger("runwatch.metrics")
#: Index scan on operation_runs_stale_at (live runs only): cheap at any table size.
_STALE = text("SELECT count(*) FROM operation_runs WHERE status IN ('queued', 'running') AND stale_at <= now()")
#: What an event transport other than the Redis stream tells at scrape time: how many run events
#: wait to be applied, and the age in seconds of the oldest (None when the transport cannot tell).
#: It must bound its own time (a socket timeout): a scrape waits for it.
Backlog = Callable[[], tuple[int, float | None]]


class RunwatchCollector(Collector):
    """The worker-side metrics; a source that is not given (or not answering) is left out, with ``*_up`` 0."""

    def __init__(
        self,
        *,
        stream: str,
        redis_client: Any = None,
        engine: Engine | None = None,
        counters_in_ledger: bool = False,
        backlog: Backlog | None = None,
    ) -> None:
        """``counters_in_ledger``: the run counters are in ``metric_counters`` (needs ``engine``), not in
        Redis; ``backlog``: the event backlog and lag come from it, not from the Redis stream."""
        if counters_in_ledger and engine is None:
            raise ValueError("counters_in_ledger needs the ledger's engine")
        self.stream = stream
        self.redis = redis_client
        self.engine = engine
        self.counters_in_ledger = counters_in_ledger
        self.backlog = backlog

    def collect(self) -> Iterator[Metric]:
        if self.redis is not None:
            yield from self._from_redis()
        if self.backlog is not None:
            yield from self._from_backlog(self.backlog)
        if self.engine is not None:
            yield from self._from_ledger(self.engine)

    def _from_redis(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("runwatch_redis_up", "1 if Redis answered this scrape, else 0")
        # NOTE: each family comes from one source only: a scrape must not name a family twice.
        counts, stream = not self.counters_in_ledger, self.backlog is None
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                if counts:
                    pipe.hgetall(counters.hash_key(self.stream))
                if stream:
                    pipe.xlen(self.stream)
                    pipe.xrange(self.stream, count=1)
                    pipe.time()
                if not (counts or stream):
                    pipe.ping()
                replies = pipe.execute()
        except Exception as exc:  # NOTE: a scrape never fails because a source is down
            log.warning("metrics: Redis did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        if counts:
            yield from counters.families(replies[0])
        if stream:
            yield from _stream_backlog(*replies[-3:])

    def _from_backlog(self, backlog: Backlog) -> Iterator[Metric]:
        up = GaugeMetricFamily("runwatch_broker_up", "1 if the event transport answered this scrape's backlog query")
        try:
            waiting, age = backlog()
            waiting, age = int(waiting), None if age is None else max(float(age), 0.0)
        except Exception as exc:
            log.warning("metrics: the event transport did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "runwatch_event_stream_backlog",
            "Run events in the event queue not yet applied to the ledger",
            value=waiting,
        )
        if waiting and age is None:
            return  # NOTE: events wait, their age is unknown: no lag rather than a lag of 0 that says "all applied"
        yield GaugeMetricFamily(
            "runwatch_drainer_lag_seconds",
            "Age of the oldest run event not yet applied (0: all applied; absent: events wait, age unknown)",
            value=age or 0.0,
        )

    def _from_ledger(self, engine: Engine) -> Iterator[Metric]:
        up = GaugeMetricFamily("runwatch_ledger_up", "1 if the ledger answered this scrape, else 0")
        values: dict[str, float] = {}
        try:
            with engine.connect() as conn:
                if self.counters_in_ledger:
                    values = LedgerCounters.values(conn)
                rows = passes.every(conn)
                stale = conn.execute(_STALE).scalar()
        except Exception as exc:
            log.warning("metrics: PostgreSQL did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        if self.counters_in_ledger:
            yield from counters.families(values)
        yield GaugeMetricFamily(
            "runwatch_stale_runs", "Live runs past their stale_at deadline (likely_stale)", value=stale
        )
        yield from pass_families(rows)


def _stream_backlog(backlog: int, oldest: Any, now: tuple[int, int]) -> Iterator[Metric]:
    """The Redis stream's entries not yet applied, and the age of the oldest (by its id's time)."""
    seconds, micros = now
    yield GaugeMetricFamily(
        "runwatch_event_stream_backlog", "Run event stream entries not yet applied to the ledger", value=backlog
    )
    lag = 0.0
    if oldest:
        entry_ms = int(_text(oldest[0][0]).split("-")[0])
        lag = max(seconds + micros / 1e6 - entry_ms / 1000, 0.0)
    yield GaugeMetricFamily(
        "runwatch_drainer_lag_seconds", "Age of the oldest run event not yet applied (0: all applied)", value=lag
    )


def pass_families(rows: Iterable[Mapping[str, Any]]) -> Iterator[Metric]:
    """The periodic passes (healer, bridge, prune) as ``maintenance_passes`` records them; label ``pass``
    (``job`` is Prometheus's own target label)."""
    labels = ["pass"]
    last = GaugeMetricFamily("runwatch_pass_last_timestamp_seconds", "When the pass last finished", labels=labels)
    success = GaugeMetricFamily(
        "runwatch_pass_last_success_timestamp_seconds", "When the pass last finished with status ok", labels=labels
    )
    age = GaugeMetricFamily(
        "runwatch_pass_last_age_seconds", "Seconds since the pass last finished (database clock)", labels=labels
    )
    duration = GaugeMetricFamily("runwatch_pass_last_duration_seconds", "How long the last pass took", labels=labels)
    status = GaugeMetricFamily(
        "runwatch_pass_last_status", "1 for the status of the last pass (ok, paused, error)", labels=["pass", "status"]
    )
    result = GaugeMetricFamily(
        "runwatch_pass_last_result",
        "Numeric results of the last pass (candidates, reconciled, ...)",
        labels=["pass", "key"],
    )
    total = CounterMetricFamily("runwatch_passes", "Passes recorded, by pass and result", labels=["pass", "result"])
    histogram = HistogramMetricFamily("runwatch_pass_duration_seconds", "Duration of recorded passes", labels=labels)
    for row in rows:
        name = row["name"]
        last.add_metric([name], row["finished_at"])
        age.add_metric([name], row["age_seconds"])
        duration.add_metric([name], row["duration_ms"] / 1000.0)
        status.add_metric([name, row.get("status") or "ok"], 1)
        if row.get("last_success_at") is not None:
            success.add_metric([name], row["last_success_at"])
        for key, value in sorted((row["result"] or {}).items()):
            if isinstance(value, int | float) and not isinstance(value, bool):
                result.add_metric([name, key], float(value))
        totals = row.get("totals") or {}
        for key, value in sorted(totals.items()):
            if key.startswith("passes."):
                total.add_metric([name, key.removeprefix("passes.")], float(value))
        if totals.get("duration.count"):
            cumulative, points = 0.0, []
            for bound in [f"{b:g}" for b in passes.DURATION_BUCKETS] + ["+Inf"]:
                cumulative += float(totals.get(f"duration.le.{bound}", 0.0))
                points.append((bound if bound == "+Inf" else floatToGoString(float(bound)), cumulative))
            histogram.add_metric([name], points, sum_value=float(totals.get("duration.sum", 0.0)))
    yield from (last, success, age, duration, status, result, total, histogram)


def registry_for(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


def serve(collector: Collector, *, port: int, host: str = DEFAULT_METRICS_HOST) -> bool:
    """Serve ``collector`` on ``host:port`` in a daemon thread; False (logged) when the port is taken or 0."""
    if port <= 0:
        return False
    try:
        start_http_server(port, addr=host, registry=registry_for(collector))
    except OSError as exc:
        # NOTE: another exporter of this host already serves the same global values.
        log.warning("metrics: not serving on %s:%d: %s", host, port, exc)
        return False
    log.info("metrics: serving Prometheus metrics on %s:%d/metrics", host, port)
    return True


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
