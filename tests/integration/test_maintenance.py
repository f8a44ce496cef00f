"""The maintenance that runs inside every worker: healer and dead-letter scan, no extra process."""

from __future__ import annotations

import dataclasses

import dramatiq
from runwatch.workers.maintenance import Maintenance, declare_actors
from sqlalchemy import text

from tests.support.ledger import row, seed
from tests.support.waiting import wait_for


def test_a_pass_heals_stale_runs_and_records_itself(harness, settings):
    run_id = seed(harness.engine, "running", worker_id="gone")
    Maintenance(harness.broker.client, settings, namespace=harness.broker.namespace).run_once()
    assert row(harness.engine, run_id)["reason_code"] == "run.stale_running"
    with harness.engine.connect() as conn:
        names = set(conn.execute(text("SELECT name FROM maintenance_passes")).scalars())
    assert names == {"healer", "bridge", "operator_actions", "dead_letter_mirror"}


def test_the_worker_runs_maintenance_on_its_own(harness, settings, servers, namespace):
    from dramatiq.brokers.redis import RedisBroker

    from runwatch import workers
    run_id = seed(harness.engine, "running", worker_id="gone")
    live = dataclasses.replace(settings, heal_interval_seconds=1)
    broker = RedisBroker(url=servers.redis_url, namespace=namespace)
    workers.install(broker, settings=live)
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        wait_for(lambda: row(harness.engine, run_id)["status"] == "completed", timeout=15)
    finally:
        worker.stop()
        broker.close()


def test_maintenance_actors_run_a_pass(harness, worker, settings):
    run_id = seed(harness.engine)
    actors = declare_actors(harness.broker, settings)
    actors["runwatch_heal"].send()
    harness.broker.join("runwatch", timeout=10_000)
    assert row(harness.engine, run_id)["reason_code"] == "run.stale_queued"
