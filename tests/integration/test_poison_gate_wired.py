"""The recorder refuses a poison pill's redelivery on RabbitMQ (no Redis): dead-lettered, its run failed."""

from __future__ import annotations

import dramatiq

from tests.support.crash_loops import crash_loop
from tests.support.ledger import row
from tests.support.rabbit_harness import rabbit_harness
from tests.support.rabbitmq_heal import holding_consumer
from tests.support.waiting import wait_for


def test_a_crash_looping_redelivery_is_refused_and_its_run_failed(engine, database_url, rabbitmq_url):
    with rabbit_harness(rabbitmq_url, database_url, engine) as harness:
        ran = []

        @dramatiq.actor(broker=harness.broker, queue_name=harness.queue, actor_name=f"crashes_{harness.queue}")
        def crashes() -> None:
            ran.append(1)

        sent = crashes.send()
        run_id = crash_loop(engine, 5, message_id=sent.message_id)  # 4 crash redeliveries already recorded
        with holding_consumer(rabbitmq_url, harness.queue, expect=1):
            pass  # NOTE: its consumer dies holding it: RabbitMQ redelivers it, marked redelivered
        worker = dramatiq.Worker(harness.broker, worker_timeout=50, worker_threads=1)
        worker.start()
        try:
            wait_for(lambda: harness.broker.get_queue_message_counts(harness.queue) == (0, 0, 1), timeout=20)
        finally:
            worker.stop()
        harness.recorder.shipper.flush()
        harness.drainer.drain_until_empty()
        failed = row(engine, run_id)
        assert not ran
        assert (failed["status"], failed["outcome"], failed["reason_code"]) == (
            "completed",
            "failed",
            "run.infrastructure_timeout_or_abandonment",
        )
        evidence = failed["reconciliation_evidence"]
        assert evidence["poison_pill"] is True and evidence["redelivered"] is True
        assert evidence["crash_redeliveries"] == 4 and "poison pill" in evidence["exception_message"]
