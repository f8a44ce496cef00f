"""Every transition the recorder writes, end to end through real Redis and PostgreSQL."""

from __future__ import annotations

import dramatiq
import pytest
from runwatch.workers import current_run

from runwatch import workers


def test_success_is_recorded_with_every_stage(harness, worker):
    @dramatiq.actor(queue_name="basic", runwatch_type="demo.ok", runwatch_label="Demo OK")
    def ok(x):
        current_run().progress(processed=1, total=1)

    message = ok.send_with_options(args=(1,), runwatch_tenant_id=7, runwatch_initiator="alice")
    harness.settle("basic")

    run = harness.run(message.message_id)
    assert (run["status"], run["outcome"]) == ("completed", "succeeded")
    assert run["type"] == "demo.ok" and run["type_label"] == "Demo OK"
    assert run["tenant_id"] == 7 and run["initiator_name"] == "alice"
    assert run["attempts"] == 1 and run["deliveries"] == 1
    assert run["worker_id"] == harness.broker.broker_id
    assert run["created_at"] <= run["started_at"] <= run["completed_at"]
    assert run["progress_processed"] == 1 and run["stale_at"] is None
    # NOTE: a plain enqueue leaves no log row (the run row records it); the start is either a row of
    # its own or, for a job shorter than a flush, part of its outcome's row.
    events = harness.events(message.message_id)
    kinds = [e["kind"] for e in events]
    assert kinds in (["started", "progress", "completed"], ["progress", "completed"])
    assert kinds[0] == "started" or events[-1]["details"]["start"]["attempt"] == 1


def test_malformed_tenant_fails_at_call_site_and_enqueues_nothing(harness):
    @dramatiq.actor(queue_name="badinput")
    def job():
        pass

    with pytest.raises(workers.InvalidSendOptions, match="tenant id"):
        job.send_with_options(runwatch_tenant_id="seven")
    assert harness.broker.client.llen(f"{harness.broker.namespace}:badinput") == 0


def test_duplicate_delivery_is_one_run_with_both_deliveries_counted(harness, worker):
    import threading

    release, both_started = threading.Event(), threading.Barrier(3, timeout=60)  # both deliveries and this test

    @dramatiq.actor(queue_name="dup")
    def twice():
        both_started.wait()
        release.wait(60)  # released by the test; the bound only ends a failed test

    message = twice.message()
    harness.broker.enqueue(message)
    harness.broker.enqueue(message)  # the same message delivered a second time
    both_started.wait()
    release.set()
    harness.settle("dup")
    run = harness.run(message.message_id)
    assert run["deliveries"] == 2 and run["outcome"] == "succeeded"
    events = harness.events(message.message_id)
    completions = [e for e in events if e["kind"] == "completed"]
    assert len(completions) == 2 and sum(e["late"] for e in completions) == 1


def test_recorder_is_first_so_its_after_hooks_run_last(harness):
    assert harness.broker.middleware[0] is harness.recorder


def test_a_broken_recorder_never_fails_the_job(harness, worker, monkeypatch, caplog):
    def explode(*args, **kwargs):
        raise RuntimeError("recorder bug")

    monkeypatch.setattr(harness.recorder.shipper, "emit", explode)
    monkeypatch.setattr(harness.recorder.shipper, "defer", explode)  # the start event is deferred, not emitted
    done = []

    @dramatiq.actor(queue_name="robust", max_retries=0)
    def job():
        done.append(1)

    job.send()
    harness.broker.join("robust", timeout=10_000)
    assert done == [1]
    failed = [r.args[0] for r in caplog.records if r.getMessage().startswith("runwatch recorder hook")]
    assert sorted(failed) == ["after_enqueue", "after_process_message", "before_process_message"], failed
    assert harness.recorder.hook_errors == 3  # enqueue, start and completion hooks all failed, once each
    assert harness.broker.client.zcard(f"{harness.broker.namespace}:robust.XQ") == 0


def test_the_run_knows_the_redis_id_of_its_current_delivery(harness, worker):
    import threading

    started, release = threading.Event(), threading.Event()

    @dramatiq.actor(queue_name="rid", max_retries=1, min_backoff=60_000, max_backoff=60_000)
    def fails_once():
        started.set()
        release.wait(60)  # released by the test; the bound only ends a failed test
        raise RuntimeError("retry me later")

    message = fails_once.send()
    assert started.wait(60)
    harness.recorder.shipper.flush()
    harness.drainer.drain_until_empty()
    client, ns = harness.broker.client, harness.broker.namespace
    first = harness.run(message.message_id)["redis_message_id"]
    assert client.hexists(f"{ns}:rid.msgs", first)
    release.set()

    def retried():
        harness.recorder.shipper.flush()
        harness.drainer.drain_until_empty()
        rid = harness.run(message.message_id)["redis_message_id"]
        return rid if rid != first else None

    from tests.support.waiting import wait_for

    retry_id = wait_for(retried)
    assert client.hexists(f"{ns}:rid.DQ.msgs", retry_id)  # the retry waits in the delay queue


def test_a_fast_job_ships_one_event_and_the_ledger_still_logs_its_start(harness, worker):
    import json

    @dramatiq.actor(queue_name="fast")
    def quick():
        pass

    harness.recorder.shipper._interval = 5.0  # NOTE: make "shorter than a flush" certain
    message = quick.send()
    harness.broker.join("fast", timeout=10_000)
    harness.recorder.shipper.flush()
    shipped = [
        e
        for _, f in harness.broker.client.xrange(harness.recorder.settings.event_stream)
        for e in json.loads(f[b"e"])
        if e["message_id"] == message.message_id
    ]
    assert [e["kind"] for e in shipped] == ["enqueued", "completed"] and shipped[1]["start"]["attempt"] == 1
    harness.drainer.drain_until_empty()
    logged = harness.events(message.message_id)
    assert [e["kind"] for e in logged] == ["completed"] and logged[0]["details"]["start"]["attempt"] == 1
    assert harness.run(message.message_id)["deliveries"] == 1


def test_a_slow_job_ships_its_start_while_it_runs(harness, worker):
    import threading

    from sqlalchemy import text

    from tests.support.waiting import wait_for

    release = threading.Event()

    @dramatiq.actor(queue_name="slow")
    def slow():
        release.wait(60)  # released by the test; the bound only ends a failed test

    message = slow.send()

    def running():  # no flush: the shipper releases the held-back start on its own
        harness.drainer.drain_until_empty()
        with harness.engine.connect() as conn:
            status = conn.execute(
                text("SELECT status FROM operation_runs WHERE message_id = :m"), {"m": message.message_id}
            ).scalar()
        return status == "running"

    try:
        wait_for(running, timeout=30)
    finally:
        release.set()
    harness.settle("slow")
    assert harness.run(message.message_id)["outcome"] == "succeeded"


def test_a_delayed_message_records_its_new_redis_id_when_it_leaves_the_delay_queue(harness, worker):
    @dramatiq.actor(queue_name="later")
    def later():
        pass

    message = later.send_with_options(delay=100)
    dq_id = message.options["redis_message_id"]  # the id it had in later.DQ
    harness.settle("later")
    moves = [e for e in harness.events(message.message_id) if e["details"].get("moved_out_of_delay_queue")]
    assert len(moves) == 1 and moves[0]["details"]["redis_message_id"] not in (None, dq_id)
    assert harness.run(message.message_id)["outcome"] == "succeeded"


def test_arguments_are_kept_only_on_opt_in_as_they_were_sent(harness, worker):
    @dramatiq.actor(queue_name="args", runwatch_store_args=True)
    def keeps(items, *, mode):
        pass

    @dramatiq.actor(queue_name="args")
    def forgets(secret):
        pass

    items = [1, {"n": 2}]
    kept = keeps.send(items, mode="fast")
    items.append("added after send()")  # must not change what is recorded
    items[1]["n"] = 99
    forgot = forgets.send("hunter2")
    harness.settle("args")
    assert harness.run(kept.message_id)["args"] == {"args": [[1, {"n": 2}]], "kwargs": {"mode": "fast"}}
    assert harness.run(forgot.message_id)["args"] is None
