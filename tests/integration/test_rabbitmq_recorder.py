"""Recording on RabbitMQ: every outcome the Redis path records, with the events travelling through
RabbitMQ itself (a durable queue) and no Redis anywhere."""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest
from runwatch.workers import current_run

from runwatch import counters
from runwatch.counter_store import LedgerCounters
from tests.support.rabbit_harness import RabbitHarness, rabbit_harness
from tests.support.waiting import wait_for

FAST_RETRY = {"min_backoff": 10, "max_backoff": 20}


@pytest.fixture
def rabbit(rabbitmq_url: str, database_url: str, engine) -> Iterator[RabbitHarness]:
    with rabbit_harness(rabbitmq_url, database_url, engine) as harness:
        worker = dramatiq.Worker(harness.broker, worker_timeout=50, worker_threads=2)
        worker.start()
        yield harness
        worker.stop()


def test_a_rabbitmq_worker_needs_no_redis(rabbit: RabbitHarness):
    assert rabbit.recorder.transport.kind == "rabbitmq" and rabbit.recorder.shipper.client is None
    assert rabbit.settings.redis_url is None


def test_every_outcome_is_recorded_through_rabbitmq(rabbit: RabbitHarness):
    @dramatiq.actor(queue_name=rabbit.queue, max_retries=0, runwatch_summary_keys=("invoices",))
    def job(kind):
        run = current_run()
        run.progress(1, 2, message="half way")
        if kind == "partial":
            run.summary(invoices=10)
            run.partially_succeeded("2 invoices skipped", skipped=2)
        elif kind == "block":
            run.block("tenant.not_operable", "Tenant is suspended")
        elif kind == "fail":
            run.fail("billing.remote_rejected", "The billing provider rejected the batch")
        elif kind == "raise":
            raise ValueError("boom: password=hunter2")

    sent = {kind: job.send(kind) for kind in ("ok", "partial", "block", "fail", "raise")}
    rabbit.settle_runs(*(m.message_id for m in sent.values()))
    outcomes = {kind: rabbit.run(m.message_id) for kind, m in sent.items()}
    assert {k: (r["status"], r["outcome"]) for k, r in outcomes.items()} == {
        "ok": ("completed", "succeeded"),
        "partial": ("completed", "partially_succeeded"),
        "block": ("completed", "blocked"),
        "fail": ("completed", "failed"),
        "raise": ("completed", "failed"),
    }
    assert outcomes["partial"]["summary_counts"] == {"invoices": 10, "skipped": 2}
    assert outcomes["fail"]["reconciled_at"] is None
    dead = outcomes["raise"]
    assert (dead["reconciliation_source"], dead["reason_code"]) == ("failed_callback", "run.queue_failure_bridge")
    assert dead["reconciliation_evidence"]["exception_type"] == "ValueError"
    assert "hunter2" not in str(dead["reconciliation_evidence"])
    assert rabbit.depth(f"{rabbit.queue}.XQ") == 1  # dead-lettered by RabbitMQ, run failed by the callback
    assert rabbit.depth(rabbit.settings.event_stream) == 0  # every event batch applied and acknowledged
    with rabbit.engine.connect() as conn:  # /metrics' run counters, in the ledger: there is no Redis
        counted = LedgerCounters.values(conn)
    assert sum(v for k, v in counted.items() if k.startswith(counters.field(counters.FINISHED, ""))) == 5
    assert counted[counters.field(counters.RECONCILED, "failed_callback", "run.queue_failure_bridge")] == 1


def test_retries_are_one_run_with_attempts_on_rabbitmq(rabbit: RabbitHarness):
    calls: list[int] = []

    @dramatiq.actor(queue_name=rabbit.queue, max_retries=5, **FAST_RETRY)
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("transient")

    message = flaky.send()
    rabbit.settle_runs(message.message_id)
    run = rabbit.run(message.message_id)
    assert (run["status"], run["outcome"], run["attempts"]) == ("completed", "succeeded", 3)
    kinds = [e["kind"] for e in rabbit.events(message.message_id)]
    # NOTE: a start shorter than a flush folds into its outcome's row, so "started" rows may or may not be there.
    assert [k for k in kinds if k != "started"] == ["attempt_failed", "attempt_failed", "completed"]


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_a_rabbitmq_worker_drains_its_own_events(rabbitmq_url, database_url, engine, mode):
    from sqlalchemy import text

    with rabbit_harness(rabbitmq_url, database_url, engine, drain_mode=mode) as harness:

        @dramatiq.actor(broker=harness.broker, queue_name=harness.queue)
        def job():
            pass

        worker = dramatiq.Worker(harness.broker, worker_timeout=50, worker_threads=2)
        worker.start()
        try:
            ids = [job.send().message_id for _ in range(20)]
            query = text("SELECT count(*) FROM operation_runs WHERE outcome = 'succeeded' AND message_id = ANY(:ids)")

            def drained():
                with engine.connect() as conn:
                    return conn.execute(query, {"ids": ids}).scalar() == 20

            wait_for(drained, timeout=30)
        finally:
            worker.stop()
        if mode == "process":
            child = harness.recorder.drain_process
            assert child is not None and child.poll() is not None  # stopped with the worker
        else:
            assert harness.recorder.drain_thread is not None and not harness.recorder.drain_thread.is_alive()


def test_a_rabbitmq_worker_heals_in_its_maintenance_thread_without_redis(rabbitmq_url, database_url, engine):
    from runwatch.bridge import amqp

    with rabbit_harness(rabbitmq_url, database_url, engine, drain_mode="thread", heal_interval_seconds=1) as harness:
        lost_queue = f"{harness.queue}-lost"

        @dramatiq.actor(broker=harness.broker, queue_name=lost_queue, runwatch_queued_stale_seconds=1)
        def digest():
            pass

        worker = dramatiq.Worker(harness.broker, queues={harness.queue}, worker_timeout=50, worker_threads=1)
        worker.start()
        try:
            assert harness.recorder.services is not None and harness.recorder.services.maintenance_thread is not None
            message = digest.send()
            wait_for(lambda: harness.run_or_none(message.message_id), timeout=30)  # recorded as queued
            harness.broker.channel.queue_purge(lost_queue)  # a message RabbitMQ lost (purged, expired)
            wait_for(lambda: harness.run(message.message_id)["status"] == "completed", timeout=60)
        finally:
            worker.stop()
            harness.broker.channel.queue_delete(lost_queue)
            for name in amqp.queue_family(lost_queue)[1:]:
                harness.broker.channel.queue_delete(name)
        run = harness.run(message.message_id)
        assert (run["outcome"], run["reason_code"], run["reconciliation_source"]) == (
            "failed", "run.stale_queued", "scheduled_reconciler")  # fmt: skip
        evidence = run["reconciliation_evidence"]
        assert evidence["broker_checked"] and lost_queue in evidence["looked_for_message_in"]
