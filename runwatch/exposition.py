"""Prometheus exposition where the work happens: worker hosts, drainers, the healer loop.

``RunwatchCollector`` reads, at scrape time, the run counters and histograms (``counters``: a
Redis hash every process that ends runs adds to), the event stream's backlog and the drainer's
lag (the oldest entry not applied yet: applied entries are deleted), the periodic passes as
recorded in ``maintenance_passes`` and the number of likely-stale runs. ``serve`` starts
prometheus_client's HTTP server on ``RUNWATCH_METRICS_HOST``:``RUNWATCH_METRICS_PORT`` (default
9195; Dramatiq's own Prometheus middleware takes 9191). Every value here is global (the same
hash, the same tables), so several exporters report the same numbers: aggregate with ``max``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy import Engine, text

from . import counters, passes
from .settings import DEFAULT_METRICS_HOST

log = logging.getLogger("runwatch.metrics")
#: Index scan on operation_runs_stale_at (live runs only): cheap at any table size.
_STALE = text("SELECT count(*) FROM operation_runs WHERE status IN ('queued', 'running') AND stale_at <= now()")


class RunwatchCollector(Collector):
    """The worker-side metrics; a source that is not given (or not answering) is left out, with ``*_up`` 0."""

    def __init__(self, *, stream: str, redis_client: Any = None, engine: Engine | None = None) -> None:
        self.stream = stream
        self.redis = redis_client
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        if self.redis is not None:
            yield from self._from_redis()
        if self.engine is not None:
            yield from self._from_ledger(self.engine)

    def _from_redis(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("runwatch_redis_up", "1 if Redis answered this scrape, else 0")
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(counters.hash_key(self.stream))
                pipe.xlen(self.stream)
                pipe.xrange(self.stream, count=1)
                pipe.time()
                values, backlog, oldest, (seconds, micros) = pipe.execute()
        except Exception as exc:  # NOTE: a scrape never fails because a source is down
            log.warning("metrics: Redis did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from counters.families(values)
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

    def _from_ledger(self, engine: Engine) -> Iterator[Metric]:
        up = GaugeMetricFamily("runwatch_ledger_up", "1 if the ledger answered this scrape, else 0")
        try:
            with engine.connect() as conn:
                rows = passes.every(conn)
                stale = conn.execute(_STALE).scalar()
        except Exception as exc:
            log.warning("metrics: PostgreSQL did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "runwatch_stale_runs", "Live runs past their stale_at deadline (likely_stale)", value=stale
        )
        yield from pass_families(rows)


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
