"""Metrics where runs are produced: counted once on apply, kept past pruning, served by the host's drainer."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import dramatiq
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from runwatch.bridge.keys import Keys
from runwatch.bridge.locator import RedisLocator
from runwatch.workers.maintenance import Maintenance
from runwatch.workers.shipper import EventShipper

from runwatch import counters
from runwatch import events as ev
from runwatch.exposition import RunwatchCollector
from runwatch.healer import HealOptions, heal_once
from runwatch.retention import prune_once
from runwatch.thresholds import ThresholdPolicy
from tests.support.ledger import seed
from tests.support.net import free_port
from tests.support.waiting import wait_for


def scrape(harness, settings) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    registry.register(
        RunwatchCollector(stream=settings.event_stream, redis_client=harness.broker.client, engine=harness.engine)
    )
    return samples(generate_latest(registry).decode())


def samples(body: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def finished(values, type_, queue, outcome):
    labels = (("outcome", outcome), ("queue", queue), ("type", type_))
    return values.get(("runwatch_runs_finished_total", labels), 0)


def test_runs_are_counted_when_applied_and_the_counts_survive_pruning(harness, worker, settings):
    @dramatiq.actor(queue_name="m1", runwatch_type="metrics.ok")
    def ok():
        pass

    @dramatiq.actor(queue_name="m1", runwatch_type="metrics.boom", max_retries=0)
    def boom():
        raise ValueError("no")

    for _ in range(3):
        ok.send()
    boom.send()
    harness.settle("m1")
    harness.drainer.drain_until_empty()  # applying again changes nothing: counted once
    values = scrape(harness, settings)
    assert finished(values, "metrics.ok", "m1", "succeeded") == 3
    assert finished(values, "metrics.boom", "m1", "failed") == 1
    reconciled = (("reason_code", "run.queue_failure_bridge"), ("source", "failed_callback"))
    assert values[("runwatch_reconciliations_total", reconciled)] == 1
    assert values[("runwatch_run_duration_seconds_count", (("type", "metrics.ok"),))] == 3
    assert values[("runwatch_queue_wait_seconds_count", (("type", "metrics.ok"),))] == 3
    assert values[("runwatch_redis_up", ())] == 1 and values[("runwatch_ledger_up", ())] == 1

    # NOTE: keep 0 days: every run completed before now goes (terminal rows cannot be backdated).
    assert sum(prune_once(harness.engine, {"succeeded": 0, "failed": 0}).deleted.values()) == 4
    after = scrape(harness, settings)
    assert finished(after, "metrics.ok", "m1", "succeeded") == 3  # counters, not a recount of the table
    assert after[("runwatch_passes_total", (("pass", "prune"), ("result", "ok")))] == 1


def test_healer_reconciliations_and_passes_are_exported(harness, settings):
    stale = seed(harness.engine, "queued", age=600, type_="metrics.lost")
    maintenance = Maintenance(harness.broker.client, settings, namespace=harness.broker.namespace)
    maintenance.run_once(dead_letter_min_age_seconds=0)
    values = scrape(harness, settings)
    assert finished(values, "metrics.lost", "q", "failed") == 1, stale
    reconciled = (("reason_code", "run.stale_queued"), ("source", "scheduled_reconciler"))
    assert values[("runwatch_reconciliations_total", reconciled)] == 1
    for name in ("healer", "bridge"):
        assert values[("runwatch_passes_total", (("pass", name), ("result", "ok")))] == 1
        assert values[("runwatch_pass_duration_seconds_count", (("pass", name),))] == 1
        assert values[("runwatch_pass_last_success_timestamp_seconds", (("pass", name),))] > 0
    assert values[("runwatch_stale_runs", ())] == 0


def test_a_paused_healer_pass_is_recorded_as_paused_not_as_a_success(harness, settings):
    keys = Keys(harness.broker.namespace)
    locator = RedisLocator(harness.broker.client, keys, event_stream=settings.event_stream)
    seed(harness.engine, "queued", age=600)
    from runwatch.healer import record_broker_outage

    record_broker_outage(harness.engine, ConnectionError("down"))
    result = heal_once(harness.engine, locator, ThresholdPolicy(settings), HealOptions(outage_grace_seconds=600))
    assert result.paused and result.reconciled == 0
    values = scrape(harness, settings)
    assert values[("runwatch_passes_total", (("pass", "healer"), ("result", "paused")))] == 1
    assert values[("runwatch_pass_last_status", (("pass", "healer"), ("status", "paused")))] == 1
    assert ("runwatch_pass_last_success_timestamp_seconds", (("pass", "healer"),)) not in values
    assert values[("runwatch_stale_runs", ())] == 1


def test_the_event_backlog_and_the_drainers_lag(harness, settings):
    client = harness.broker.client
    assert scrape(harness, settings)[("runwatch_event_stream_backlog", ())] == 0
    ten_minutes_ago_ms = int(client.time()[0] * 1000) - 600_000
    client.xadd(settings.event_stream, {"e": b"[]"}, id=f"{ten_minutes_ago_ms}-0")
    client.xadd(settings.event_stream, {"e": b"[]"})
    values = scrape(harness, settings)
    assert values[("runwatch_event_stream_backlog", ())] == 2
    assert 590 < values[("runwatch_drainer_lag_seconds", ())] < 700
    harness.drainer.drain_until_empty()
    values = scrape(harness, settings)
    assert values[("runwatch_event_stream_backlog", ())] == 0 and values[("runwatch_drainer_lag_seconds", ())] == 0


def test_events_a_full_buffer_dropped_are_counted_once_redis_takes_events_again(harness, settings):
    shipper = EventShipper(
        harness.broker.client, settings.event_stream, flush_interval_ms=10_000, durable_wait_ms=0, buffer_max_events=100
    )
    meta = {"queue": "q", "actor": "a", "type": "t", "created_at": 1.0}
    with shipper._cond:  # NOTE: the shipping thread cannot take the buffer meanwhile: it overflows
        for i in range(130):
            shipper.emit(ev.new_event(ev.PROGRESS, "m", 1.0 + i, meta))
    assert shipper.flush()
    shipper.close()
    values = scrape(harness, settings)
    assert values[("runwatch_shipper_dropped_events_total", (("kind", "other"),))] == 30


def test_the_hosts_drainer_process_serves_metrics_on_the_documented_port(harness, settings):
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RUNWATCH_")},
        **settings.as_env(),
        "RUNWATCH_METRICS_PORT": str(port),
        "RUNWATCH_METRICS_HOST": "127.0.0.1",
    }
    child = subprocess.Popen([sys.executable, "-m", "runwatch.workers.drain_process_main"], env=env)
    try:
        client = harness.broker.client
        client.hincrbyfloat(
            counters.hash_key(settings.event_stream), counters.field("finished", "t", "q", "succeeded"), 2
        )

        def body():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    return response.read().decode()
            except OSError:
                return None

        values = samples(wait_for(body, timeout=30))
        assert values[("runwatch_runs_finished_total", (("outcome", "succeeded"), ("queue", "q"), ("type", "t")))] == 2
        assert values[("runwatch_ledger_up", ())] == 1 and values[("runwatch_redis_up", ())] == 1
    finally:
        child.terminate()
        child.wait(30)


def test_a_scrape_with_redis_down_says_so_instead_of_failing(harness, settings):
    import redis

    dead = redis.Redis(port=free_port(), socket_connect_timeout=1)
    registry = CollectorRegistry()
    registry.register(RunwatchCollector(stream=settings.event_stream, redis_client=dead, engine=harness.engine))
    values = samples(generate_latest(registry).decode())
    assert values[("runwatch_redis_up", ())] == 0 and values[("runwatch_ledger_up", ())] == 1


def test_every_metric_the_alerts_and_the_dashboard_use_is_exported(harness, worker, settings):
    from tests.support.monitoring import alert_exprs, dashboard_exprs, metric_names

    @dramatiq.actor(queue_name="m2", runwatch_type="metrics.names")
    def job():
        pass

    job.send()
    harness.settle("m2")
    seed(harness.engine, "queued", age=600)
    Maintenance(harness.broker.client, settings, namespace=harness.broker.namespace).run_once(prune=True)
    shipper = EventShipper(
        harness.broker.client, settings.event_stream, flush_interval_ms=10_000, durable_wait_ms=0, buffer_max_events=100
    )
    with shipper._cond:
        for i in range(101):
            shipper.emit(ev.new_event(ev.PROGRESS, "m", 1.0 + i, {"queue": "q", "actor": "a", "type": "t"}))
    assert shipper.flush()
    shipper.close()
    exported = {name for name, _ in scrape(harness, settings)}
    # NOTE: a histogram is used by its _bucket series, a counter by its _total: both appear as samples.
    used = metric_names(alert_exprs()) | metric_names(dashboard_exprs())
    assert used and sorted(used - exported - RABBITMQ_ONLY) == []


#: Exported only where the events travel through RabbitMQ (its event queue answered the scrape).
RABBITMQ_ONLY = {"runwatch_broker_up"}


def test_what_the_alerts_use_of_a_rabbitmq_exporter_is_exported(rabbitmq_url, engine):
    from runwatch.bridge import amqp

    from runwatch.exposition import RunwatchCollector
    from tests.support.exposition import samples, scrape
    from tests.support.monitoring import alert_exprs, metric_names

    collector = RunwatchCollector(
        stream="rw-metrics-names", engine=engine, counters_in_ledger=True,
        backlog=amqp.queue_backlog(rabbitmq_url, "rw-metrics-names"),
    )  # fmt: skip
    exported = {name for name, _ in samples(scrape(collector))}
    assert exported >= RABBITMQ_ONLY and metric_names(alert_exprs()) >= RABBITMQ_ONLY


def test_a_failed_pass_is_recorded_as_an_error_and_keeps_its_last_success(harness, settings):
    import redis

    Maintenance(harness.broker.client, settings, namespace=harness.broker.namespace).run_once()
    dead = redis.Redis(port=free_port(), socket_connect_timeout=1)
    Maintenance(dead, settings, namespace=harness.broker.namespace).run_once()  # the broker is unreachable
    values = scrape(harness, settings)
    healer = (("pass", "healer"),)
    assert values[("runwatch_pass_last_status", (("pass", "healer"), ("status", "error")))] == 1
    assert values[("runwatch_passes_total", (("pass", "healer"), ("result", "error")))] == 1
    assert values[("runwatch_passes_total", (("pass", "healer"), ("result", "ok")))] == 1
    assert values[("runwatch_pass_last_success_timestamp_seconds", healer)] > 0
