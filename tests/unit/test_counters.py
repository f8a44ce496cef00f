"""Run counters: increments from ended runs, and the families an exporter builds from the hash."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from runwatch import counters


def _finished(**over):
    run = {
        "type": "report.build",
        "queue_name": "default",
        "outcome": "succeeded",
        "source": None,
        "reason_code": None,
        "created_at": 100.0,
        "started_at": 100.5,
        "completed_at": 103.5,
    }
    return {**run, **over}


def _text(values) -> str:
    class Fixed(Collector):
        def collect(self):
            return counters.families(values)

    registry = CollectorRegistry()
    registry.register(Fixed())
    return generate_latest(registry).decode()


def test_an_ended_run_counts_once_with_its_duration_and_queue_wait():
    amounts = counters.increments([_finished(), _finished(outcome="failed", source="failed_callback", reason_code="x")])
    assert amounts[counters.field("finished", "report.build", "default", "succeeded")] == 1
    assert amounts[counters.field("reconciled", "failed_callback", "x")] == 1
    assert amounts[counters.field("duration", "report.build", "le", "5")] == 2  # 3 s each
    assert amounts[counters.field("wait", "report.build", "le", "0.5")] == 2  # 0.5 s each
    assert amounts[counters.field("duration", "report.build", "sum")] == 6.0


def test_a_run_that_never_started_has_no_duration():
    amounts = counters.increments([_finished(started_at=None, source="scheduled_reconciler", reason_code="r")])
    assert not any(k.startswith("duration") or k.startswith("wait") for k in amounts)


def test_the_hash_reads_back_as_counters_and_cumulative_histograms():
    amounts = counters.increments([_finished(), _finished(completed_at=200.0)])
    values = {k.encode(): str(v).encode() for k, v in amounts.items()}
    values[counters.field("dropped", "outcome").encode()] = b"3"
    body = _text(values)
    assert 'runwatch_runs_finished_total{outcome="succeeded",queue="default",type="report.build"} 2.0' in body
    assert 'runwatch_run_duration_seconds_bucket{le="5.0",type="report.build"} 1.0' in body
    assert 'runwatch_run_duration_seconds_bucket{le="300.0",type="report.build"} 2.0' in body
    assert 'runwatch_run_duration_seconds_count{type="report.build"} 2.0' in body
    assert 'runwatch_queue_wait_seconds_bucket{le="+Inf",type="report.build"} 2.0' in body
    assert 'runwatch_shipper_dropped_events_total{kind="outcome"} 3.0' in body
