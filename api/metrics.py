"""Prometheus metrics: request latency per route, and ledger gauges computed at scrape time.

Ledger gauges (runs by status and freshness, reconciliations by source and reason, the last
pass of each periodic job) are read from PostgreSQL when scraped, with index-friendly queries,
so every gunicorn worker reports the same truth. Latency is per process; under gunicorn
``PROMETHEUS_MULTIPROC_DIR`` (set by ``api/gunicorn_conf.py``) aggregates it across workers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runwatch.exposition import pass_families
from runwatch.queries import DatabaseUnavailable

from .store import Store

#: Latency buckets in seconds: the API's targets are single-digit milliseconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

#: Methods that get their own label value; anything a client invents is "other".
_METHODS = frozenset(falcon.constants.COMBINED_METHODS)

log = logging.getLogger("runwatch.api.metrics")


class LedgerCollector(Collector):
    """Gauges read from the ledger on every scrape; absent (not faked) when a feature never ran."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("runwatch_ledger_up", "1 if the ledger answered this scrape, else 0")
        try:
            snapshot = self.store.ledger_metrics()
        except DatabaseUnavailable:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        runs = GaugeMetricFamily(
            "runwatch_runs", "Operation runs by status and freshness", labels=["status", "freshness"]
        )
        for status, freshness, count in snapshot["runs"]:
            runs.add_metric([status, freshness], count)
        yield runs
        reconciled = GaugeMetricFamily(
            "runwatch_reconciled_runs", "Reconciled runs by source and reason code", labels=["source", "reason_code"]
        )
        for source, reason_code, count in snapshot["reconciliations"]:
            reconciled.add_metric([source, reason_code], count)
        yield reconciled
        yield from pass_families(snapshot["passes"])


class Metrics:
    """The latency histogram (fed by the middleware) and the registry /metrics exposes."""

    def __init__(self, store: Store) -> None:
        self.latency = Histogram(
            "runwatch_api_request_duration_seconds",
            "API request latency by route template, method and status",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self.registry = CollectorRegistry()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # NOTE: in multiprocess mode samples live in per-worker files; this collector sums them.
            multiprocess.MultiProcessCollector(self.registry)
        else:
            self.registry.register(self.latency)
        self.registry.register(LedgerCollector(store))

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        started = getattr(req.context, "started", None)
        if started is None:
            return
        # NOTE: the route template, never the raw path: run ids must not explode label cardinality.
        route = req.uri_template or "unmatched"
        method = req.method if req.method in _METHODS else "other"
        self.latency.labels(route, method, str(resp.status_code)).observe(time.perf_counter() - started)


class MetricsResource:
    """``GET /metrics``: Prometheus text format; no token (scrapers carry none)."""

    auth_required = False

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(self.metrics.registry)
