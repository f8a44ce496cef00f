"""Run counters and histograms for /metrics, kept in one Redis hash beside the event stream.

Runs end in many processes (every host's drainer, the healer and the dead-letter bridge in any
worker process, ``runwatch heal``), and a pruned ledger cannot be recounted. So whoever commits
a run's end adds it here, once, after its transaction committed: ``increments(finished)`` turns
the ended runs (``statements._FINISHED_COLUMNS``) into hash-field increments, the caller sends
them with ``HINCRBYFLOAT`` (the drainer in the pipeline that acknowledges the entries: no extra
round trip). Every exporter reads the same hash (``families``), so the values are global: the
same on every exporter, to be aggregated with ``max``, never ``sum``. At-least-once delivery
cannot count a run twice (a redelivered event writes no row, so adds nothing); a drainer killed
between its commit and its acknowledgement loses that batch's increments (an undercount).

Without Redis (a RabbitMQ shop), the same fields live in the ledger's ``metric_counters`` table
instead: ``runwatch.counter_store`` holds both stores; ``send`` and ``record`` here are the Redis
forms, kept for the Redis broker's callers.

Cardinality: label values are operation types, queue names, outcomes, reconciliation sources
and reason codes: all defined in code (actor options, the reason catalogue), never job data.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.core import Metric

log = logging.getLogger("runwatch.metrics")
#: Run duration (started -> completed), seconds: jobs take milliseconds to hours.
RUN_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)
#: Queue wait (enqueued -> started), seconds.
QUEUE_WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_SEP = "\x1f"
FINISHED, RECONCILED, DROPPED = "finished", "reconciled", "dropped"
_HISTOGRAMS = {
    "duration": (
        "runwatch_run_duration_seconds",
        "Run duration from start to completion, by type",
        RUN_DURATION_BUCKETS,
    ),
    "wait": ("runwatch_queue_wait_seconds", "Queue wait from enqueue to first start, by type", QUEUE_WAIT_BUCKETS),
}


def hash_key(stream: str) -> str:
    """The Redis hash that holds the counters of ``stream``'s runs."""
    return f"{stream}:metrics"


def field(*parts: str) -> str:
    return _SEP.join(parts)


#: Each histogram's bucket labels, ``le`` as Prometheus writes it, then ``+Inf``.
_LABELS = {name: (*(f"{b:g}" for b in buckets), "+Inf") for name, (_, _, buckets) in _HISTOGRAMS.items()}


def _bucket(name: str, value: float) -> str:
    """The label of the smallest bucket of histogram ``name`` that holds ``value``."""
    # PERF: a binary search over the bounds, labels formatted once (twice per ended run).
    return _LABELS[name][bisect.bisect_left(_HISTOGRAMS[name][2], value)]


def increments(finished: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Hash-field increments for runs that just ended (rows with type, queue_name, outcome, source,
    reason_code, created_at, started_at, completed_at; times as epoch seconds)."""
    # PERF: counted under tuple keys, each field name joined once per batch, not once per run
    # (the drainer calls this for every batch; ~15 % of its Python per delivery before).
    out: dict[tuple[str, ...], float] = {}
    for run in finished:
        type_ = run["type"]
        key: tuple[str, ...] = (FINISHED, type_, run["queue_name"], run["outcome"])
        out[key] = out.get(key, 0) + 1
        if run.get("source"):
            key = (RECONCILED, run["source"], run["reason_code"] or "")
            out[key] = out.get(key, 0) + 1
        started = run.get("started_at")
        if started is None:
            continue  # NOTE: never started (healed from the queue, dead-lettered unknown actor): no duration
        for name, begin, end in (
            ("wait", run.get("created_at"), started),
            ("duration", started, run.get("completed_at")),
        ):
            if begin is None or end is None:
                continue
            value = max(end - begin, 0.0)
            key = (name, type_, "le", _bucket(name, value))
            out[key] = out.get(key, 0) + 1
            key = (name, type_, "sum")
            out[key] = out.get(key, 0) + value
    return {field(*parts): amount for parts, amount in out.items()}


def send(pipe: Any, stream: str, increments_: Mapping[str, float]) -> None:
    """Queue the increments on a redis-py client or pipeline (``HINCRBYFLOAT`` per field)."""
    key = hash_key(stream)
    for name, amount in increments_.items():
        pipe.hincrbyfloat(key, name, amount)


def record(client: Any, stream: str, finished: Iterable[Mapping[str, Any]]) -> None:
    """Best effort, after the commit: a Redis that does not answer loses these increments, never the pass."""
    amounts = increments(finished)
    if not amounts:
        return
    try:
        with client.pipeline(transaction=False) as pipe:
            send(pipe, stream, amounts)
            pipe.execute()
    except Exception as exc:
        log.warning("metrics: could not count %d ended run(s) in Redis: %s", len(amounts), exc)


def families(values: Mapping[Any, Any]) -> Iterator[Metric]:
    """The metric families of a ``HGETALL`` of the hash (bytes or str keys and values)."""
    # NOTE: imported here: worker processes import this module to count, not to expose.
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
    from prometheus_client.utils import floatToGoString

    parsed = [(_text(k).split(_SEP), float(_text(v))) for k, v in values.items()]
    finished = CounterMetricFamily(
        "runwatch_runs_finished",
        "Runs that reached completed, by type, queue and outcome",
        labels=["type", "queue", "outcome"],
    )
    reconciled = CounterMetricFamily(
        "runwatch_reconciliations",
        "Runs reconciled as failed, by source and reason code",
        labels=["source", "reason_code"],
    )
    dropped = CounterMetricFamily(
        "runwatch_shipper_dropped_events",
        "Run events a worker's buffer dropped while Redis was unreachable, by kind (outcome or other)",
        labels=["kind"],
    )
    histograms: dict[str, dict[str, dict[str, float]]] = {name: {} for name in _HISTOGRAMS}
    for parts, value in sorted(parsed):
        kind = parts[0]
        if kind == FINISHED and len(parts) == 4:
            finished.add_metric(parts[1:], value)
        elif kind == RECONCILED and len(parts) == 3:
            reconciled.add_metric(parts[1:], value)
        elif kind == DROPPED and len(parts) == 2:
            dropped.add_metric(parts[1:], value)
        elif kind in histograms and len(parts) in (3, 4):
            key = "le." + parts[3] if parts[2] == "le" and len(parts) == 4 else parts[2]
            histograms[kind].setdefault(parts[1], {})[key] = value
    yield from (finished, reconciled, dropped)
    for name, by_type in histograms.items():
        metric, help_text, buckets = _HISTOGRAMS[name]
        family = HistogramMetricFamily(metric, help_text, labels=["type"])
        for type_, fields in sorted(by_type.items()):
            cumulative, points = 0.0, []
            for bound in [f"{b:g}" for b in buckets] + ["+Inf"]:
                cumulative += fields.get("le." + bound, 0.0)
                points.append((bound if bound == "+Inf" else floatToGoString(float(bound)), cumulative))
            family.add_metric([type_], points, sum_value=fields.get("sum", 0.0))
        yield family


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
