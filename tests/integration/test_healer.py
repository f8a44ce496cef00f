"""The healer on real PostgreSQL and Redis: both sides of every threshold, time faked in the database."""

from __future__ import annotations

import json
import threading
import time

import pytest
from runwatch.bridge.keys import Keys
from runwatch.bridge.locator import RedisLocator
from sqlalchemy import text

from runwatch import events as ev
from runwatch.healer import HealOptions, heal_once
from runwatch.ledger import apply_events
from runwatch.thresholds import ThresholdPolicy, TypePolicy
from tests.support.ledger import row, seed


@pytest.fixture
def heal(harness, settings):
    keys = Keys(harness.broker.namespace)
    locator = RedisLocator(harness.broker.client, keys, event_stream=settings.event_stream)
    policy = ThresholdPolicy(settings, {"opted.out": TypePolicy(heal=False)})

    def run(**options):
        return heal_once(harness.engine, locator, policy, HealOptions(**options))

    run.keys = keys
    return run


def snapshot(engine):
    with engine.connect() as conn:
        runs = conn.execute(text("SELECT * FROM operation_runs ORDER BY id")).mappings().all()
        events = conn.execute(text("SELECT count(*) FROM run_events")).scalar()
    return [dict(r) for r in runs], events


def test_queued_runs_on_both_sides_of_the_threshold_and_in_the_broker(harness, heal):
    client, keys = harness.broker.client, heal.keys
    lost = seed(harness.engine, age=120, rid="lost-rid")
    fresh = seed(harness.engine, age=30, rid="fresh-rid")
    backlog = seed(harness.engine, age=120, rid="waiting-rid")
    delayed = seed(harness.engine, age=120, rid="delayed-rid")
    client.hset(keys.messages("q"), "waiting-rid", b"{}")
    client.hset(keys.delay_messages("q"), "delayed-rid", b"{}")

    result = heal()
    assert (result.candidates, result.reconciled, dict(result.skipped)) == (3, 1, {"backlog": 2})
    healed = row(harness.engine, lost)
    assert (healed["status"], healed["outcome"], healed["reason_code"], healed["reconciliation_source"]) == (
        "completed",
        "failed",
        "run.stale_queued",
        "scheduled_reconciler",
    )
    evidence = healed["reconciliation_evidence"]
    assert evidence["message_found_in"] is None and evidence["threshold_seconds"] == 60
    assert evidence["looked_for_message_in"] == [
        keys.messages("q"),
        keys.delay_messages("q"),
        keys.dead_letter_messages("q"),
    ]
    assert row(harness.engine, fresh)["status"] == "queued" and row(harness.engine, fresh)["healer_note"] is None
    for run_id, where in ((backlog, "queue"), (delayed, "delay_queue")):
        kept = row(harness.engine, run_id)
        assert kept["status"] == "queued" and kept["healer_note"]["message_found_in"] == where


def test_running_runs_dead_worker_live_worker_and_hard_ceiling(harness, heal):
    client, keys = harness.broker.client, heal.keys
    client.zadd(keys.heartbeats(), {"alive": time.time() * 1000, "dead": time.time() * 1000 - 120_000})
    dead = seed(harness.engine, "running", worker_id="dead", rid="r1")
    slow = seed(harness.engine, "running", worker_id="alive", rid="r2", time_limit_ms=600_000)
    overdue = seed(harness.engine, "running", age=700, worker_id="alive", rid="r3", time_limit_ms=60_000)
    progressing = seed(harness.engine, "running", age=10, worker_id="dead", rid="r4")

    result = heal()
    assert (result.reconciled, dict(result.skipped)) == (2, {"worker_alive": 1})
    assert row(harness.engine, dead)["reason_code"] == "run.stale_running"
    assert row(harness.engine, dead)["reconciliation_evidence"]["worker_alive"] is False
    assert row(harness.engine, slow)["status"] == "running"
    assert row(harness.engine, slow)["healer_note"]["why"] == "worker_alive"
    assert row(harness.engine, overdue)["reconciliation_evidence"]["worker_alive"] is True
    assert row(harness.engine, progressing)["status"] == "running"


def test_terminal_runs_filters_and_opt_out_stay_untouched(harness, heal):
    done = [seed(harness.engine, "completed", outcome=o, age=9999) for o in ("succeeded", "failed", "blocked")]
    other_type = seed(harness.engine, type_="other")
    other_tenant = seed(harness.engine, tenant_id=2)
    opted_out = seed(harness.engine, type_="opted.out")
    target = seed(harness.engine, tenant_id=1)
    before = {i: row(harness.engine, i) for i in done}

    result = heal(types=["t"], tenants=[1])
    assert (result.candidates, result.reconciled) == (1, 1)
    assert row(harness.engine, target)["reason_code"] == "run.stale_queued"
    for untouched in (other_type, other_tenant, opted_out):
        assert row(harness.engine, untouched)["status"] == "queued"
    assert {i: row(harness.engine, i) for i in done} == before
    assert heal().reconciled == 2  # without filters, everything but the opted-out type


def test_limit_takes_the_oldest_deadlines_first(harness, heal):
    old, older = seed(harness.engine, age=200), seed(harness.engine, age=300)
    seed(harness.engine, age=100)
    assert heal(limit=2).reconciled == 2
    assert {row(harness.engine, i)["status"] for i in (old, older)} == {"completed"}


def test_dry_run_writes_nothing(harness, heal):
    seed(harness.engine)
    seed(harness.engine, "running", worker_id="gone")
    before = snapshot(harness.engine)
    result = heal(dry_run=True)
    assert result.candidates == 2 and result.reconciled == 0
    assert [d["action"] for d in result.decisions] == ["reconcile", "reconcile"]
    assert snapshot(harness.engine) == before


def test_concurrent_passes_in_threads_reconcile_each_run_once(harness, heal):
    ids = [seed(harness.engine) for _ in range(30)]
    results, barrier = [], threading.Barrier(4)

    def one_pass():
        barrier.wait()
        results.append(heal())

    threads = [threading.Thread(target=one_pass) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(r.reconciled for r in results) == 30
    with harness.engine.connect() as conn:
        logged = conn.execute(text("SELECT count(*) FROM run_events WHERE kind = 'reconciled'")).scalar()
    assert logged == 30 and {row(harness.engine, i)["status"] for i in ids} == {"completed"}


def _success(message_id):
    meta = {"queue": "q", "actor": "a", "type": "t", "created_at": time.time() - 120}
    return ev.new_event(ev.COMPLETED, message_id, time.time(), meta, outcome="succeeded")


def test_a_run_locked_by_a_completing_writer_keeps_its_own_outcome(harness, heal, settings):
    run_id = seed(harness.engine, "running", worker_id="gone")
    message_id = row(harness.engine, run_id)["message_id"]
    completion = _success(message_id)
    with harness.engine.connect() as writer:
        tx = writer.begin()
        writer.execute(text("SELECT 1 FROM operation_runs WHERE id = :i FOR UPDATE"), {"i": run_id})
        assert heal().reconciled == 0  # SKIP LOCKED: the row being written is not touched
        apply_events(writer, [completion], ThresholdPolicy(settings))
        tx.commit()
    assert row(harness.engine, run_id)["outcome"] == "succeeded"
    assert heal().candidates == 0


def test_a_late_completion_after_healing_is_an_event_and_the_reconciliation_stands(harness, heal, settings):
    run_id = seed(harness.engine, "running", worker_id="gone")
    message_id = row(harness.engine, run_id)["message_id"]
    assert heal().reconciled == 1
    late = _success(message_id)
    with harness.engine.begin() as conn:
        assert apply_events(conn, [late], ThresholdPolicy(settings)).late_events == [late["id"]]
    healed = row(harness.engine, run_id)
    assert (healed["outcome"], healed["reason_code"]) == ("failed", "run.stale_running")


def test_a_run_whose_own_events_are_unapplied_waits_for_them(harness, heal, settings):
    waiting = seed(harness.engine, "running", worker_id="gone")
    other = seed(harness.engine, "running", worker_id="gone")
    progress = {"message_id": row(harness.engine, waiting)["message_id"], "kind": "progress"}
    harness.broker.client.xadd(settings.event_stream, {"e": json.dumps([progress])})  # not yet applied
    result = heal()
    assert result.reconciled == 1 and result.skipped["events_in_flight"] == 1 and result.paused is None
    assert row(harness.engine, waiting)["healer_note"]["why"] == "events_in_flight"
    assert row(harness.engine, other)["reason_code"] == "run.stale_running"


def test_no_reconciliation_while_the_ledger_lags_far_behind(harness, heal, settings):
    from runwatch.bridge import locator as locator_module

    run_id = seed(harness.engine, "running", worker_id="gone")
    for _ in range(locator_module.MAX_INSPECTED_ENTRIES + 1):
        harness.broker.client.xadd(settings.event_stream, {"e": json.dumps([])})
    result = heal()
    assert result.reconciled == 0 and "ledger catching up" in result.paused
    assert row(harness.engine, run_id)["healer_note"]["why"] == "paused"


def test_outage_grace_after_the_broker_was_unreachable(harness, heal):
    from runwatch.healer import record_broker_outage

    run_id = seed(harness.engine, "running", worker_id="gone")
    record_broker_outage(harness.engine, ConnectionError("redis down"))
    for _ in range(2):  # a pass during the grace does not end it
        result = heal()
        assert result.reconciled == 0 and "outage grace" in result.paused
    with harness.engine.begin() as conn:  # fake the grace period's end in the database
        conn.execute(
            text(
                "UPDATE maintenance_passes SET finished_at = now() - interval '10 minutes' "
                "WHERE name = 'healer_broker_outage'"
            )
        )
    assert heal().reconciled == 1 and row(harness.engine, run_id)["status"] == "completed"


def test_concurrent_passes_in_processes_reconcile_each_run_once(harness, settings, database_url, servers):
    import subprocess
    import sys

    ids = [seed(harness.engine) for _ in range(40)]
    script = (
        "import sys, redis\n"
        "from bridge.keys import Keys\nfrom bridge.locator import RedisLocator\n"
        "from runwatch.db import engine_for\nfrom runwatch.healer import heal_once\n"
        "from runwatch.settings import Settings\nfrom runwatch.thresholds import ThresholdPolicy\n"
        "s = Settings(database_url=sys.argv[1], event_stream=sys.argv[3])\n"
        "loc = RedisLocator(redis.Redis.from_url(sys.argv[2]), Keys(sys.argv[4]), event_stream=sys.argv[3])\n"
        "print(heal_once(engine_for(sys.argv[1]), loc, ThresholdPolicy(s)).reconciled)\n"
    )
    argv = [database_url, servers.redis_url, settings.event_stream, harness.broker.namespace]
    procs = [
        subprocess.Popen([sys.executable, "-c", script, *argv], stdout=subprocess.PIPE, text=True) for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert sum(int(o.strip()) for o in outputs) == 40
    assert {row(harness.engine, i)["status"] for i in ids} == {"completed"}


def _crash_loop(engine, deliveries, *, rid):
    """A running run whose message was delivered ``deliveries`` times, each a crash, all attempt 1."""
    run_id = seed(engine, "running", age=5, worker_id="w-crashed", rid=rid)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE operation_runs SET deliveries = :d, attempts = 1 WHERE id = :i"),
            {"d": deliveries, "i": run_id},
        )
        conn.execute(
            text(
                "INSERT INTO run_events (event_uuid, message_id, kind, at, details) "
                "SELECT gen_random_uuid(), message_id, 'started', now() - make_interval(secs => n), "
                "jsonb_build_object('attempt', 1, 'worker_id', 'w' || n) "
                "FROM operation_runs, generate_series(1, :d) AS n WHERE id = :i"
            ),
            {"d": deliveries, "i": run_id},
        )
    return run_id


def test_poison_pill_is_dead_lettered_and_failed_with_its_deliveries(harness, heal):
    client, keys = harness.broker.client, heal.keys
    poison = _crash_loop(harness.engine, 5, rid="poison-rid")
    client.hset(keys.messages("q"), "poison-rid", b'{"payload": 1}')
    client.rpush(keys.queue("q"), "poison-rid")
    in_flight = _crash_loop(harness.engine, 5, rid="busy-rid")  # a worker holds it right now
    unlucky = _crash_loop(harness.engine, 2, rid="unlucky-rid")  # under the limit
    client.hset(keys.messages("q"), "unlucky-rid", b"{}")
    client.rpush(keys.queue("q"), "unlucky-rid")

    result = heal()
    assert result.poison_pills == 1 and result.skipped["poison_in_flight"] == 1
    assert client.zscore(keys.dead_letters("q"), "poison-rid") is not None
    assert client.hget(keys.dead_letter_messages("q"), "poison-rid") == b'{"payload": 1}'
    assert client.lrange(keys.queue("q"), 0, -1) == [b"unlucky-rid"]
    failed = row(harness.engine, poison)
    assert (failed["outcome"], failed["reason_code"]) == ("failed", "run.infrastructure_timeout_or_abandonment")
    evidence = failed["reconciliation_evidence"]
    assert evidence["poison_pill"] and evidence["crash_redeliveries"] == 4
    assert len(evidence["deliveries_in_window"]) == 5 and evidence["dead_letter_key"] == keys.dead_letters("q")
    assert row(harness.engine, in_flight)["status"] == "running"
    assert row(harness.engine, unlucky)["status"] == "running"


def test_a_dead_workers_in_flight_message_is_handed_back_not_failed(harness, heal):
    client, keys = harness.broker.client, heal.keys
    client.zadd(keys.heartbeats(), {"alive": time.time() * 1000, "dead": time.time() * 1000 - 120_000})
    orphaned = seed(harness.engine, "running", worker_id="dead", rid="held-by-dead")
    busy = seed(harness.engine, "running", worker_id="alive", rid="held-by-alive")
    for rid, worker in (("held-by-dead", "dead"), ("held-by-alive", "alive")):
        client.hset(keys.messages("q"), rid, b"{}")
        client.sadd(keys.acks(worker, "q"), rid)

    result = heal()
    assert result.reconciled == 0
    assert dict(result.skipped) == {"requeued_from_dead_worker": 1, "worker_alive": 1}
    assert client.lrange(keys.queue("q"), 0, -1) == [b"held-by-dead"]  # back in the queue, for redelivery
    assert not client.sismember(keys.acks("dead", "q"), "held-by-dead")
    assert client.sismember(keys.acks("alive", "q"), "held-by-alive")
    kept = row(harness.engine, orphaned)
    assert kept["status"] == "running" and kept["healer_note"]["why"] == "requeued_from_dead_worker"
    assert row(harness.engine, busy)["status"] == "running"
    again = heal()  # next pass: the message waits in the queue, nothing more to do
    assert again.skipped["requeued"] == 1 and client.llen(keys.queue("q")) == 1


def test_a_queued_message_prefetched_by_a_dead_worker_is_handed_back_not_left_as_backlog(harness, heal):
    """Found by the acceptance suite: a worker SIGKILLed with messages in its prefetch leaves them in
    <queue>.msgs and its in-flight set; only a random Dramatiq maintenance pass would give them back."""
    client, keys = harness.broker.client, heal.keys
    client.zadd(keys.heartbeats(), {"alive": time.time() * 1000, "dead": time.time() * 1000 - 120_000})
    prefetched = seed(harness.engine, "queued", rid="prefetched")  # never started: no worker recorded
    moved_on = seed(harness.engine, "running", worker_id="first", rid="second-holder")  # redelivered, then lost
    waiting = seed(harness.engine, "queued", rid="in-queue")
    for rid in ("prefetched", "second-holder", "in-queue"):
        client.hset(keys.messages("q"), rid, b"{}")
    client.sadd(keys.acks("dead", "q"), "prefetched", "second-holder")
    client.rpush(keys.queue("q"), "in-queue")

    result = heal()
    assert result.reconciled == 0
    assert dict(result.skipped) == {"requeued_from_dead_worker": 2, "backlog": 1}
    assert sorted(client.lrange(keys.queue("q"), 0, -1)) == [b"in-queue", b"prefetched", b"second-holder"]
    assert client.scard(keys.acks("dead", "q")) == 0
    note = row(harness.engine, prefetched)["healer_note"]
    assert note["worker_id"] == "dead" and note["worker_alive"] is False and note["message_found_in"] == "in_flight"
    assert row(harness.engine, moved_on)["status"] == "running"
    assert row(harness.engine, waiting)["healer_note"]["why"] == "backlog"


def test_a_stale_run_whose_message_was_dead_lettered_is_reconciled_from_the_dead_letter(harness, heal):
    """Found by the acceptance suite: a worker SIGKILLed right after a nack loses the failure
    callback's event; the run must not be failed as merely stale when the broker says why."""
    client, keys = harness.broker.client, heal.keys
    client.zadd(keys.heartbeats(), {"dead": time.time() * 1000 - 120_000})
    dead_lettered = seed(harness.engine, "running", worker_id="dead", rid="nacked")
    just_nacked = seed(harness.engine, "running", worker_id="dead", rid="nacked-just-now")
    client.hset(keys.dead_letter_messages("q"), mapping={"nacked": b"{}", "nacked-just-now": b"{}"})
    client.zadd(keys.dead_letters("q"), {"nacked": time.time() * 1000 - 60_000, "nacked-just-now": time.time() * 1000})

    result = heal()
    assert (result.reconciled, dict(result.skipped)) == (1, {"dead_letter_fresh": 1})  # its callback may be coming
    assert row(harness.engine, just_nacked)["status"] == "running"
    run = row(harness.engine, dead_lettered)
    assert (run["reconciliation_source"], run["reason_code"]) == ("adapter_reconciler", "run.adapter_out_of_sync")
    assert run["reconciliation_evidence"]["dead_letter_key"] == keys.dead_letters("q")
    assert run["reconciliation_evidence"]["message_found_in"] == "dead_letters"
    (event,) = [e for e in harness.events(run["message_id"]) if e["kind"] == "reconciled"]
    assert event["details"]["source"] == "adapter_reconciler"


def test_a_retry_waiting_in_a_busy_workers_prefetch_is_backlog_not_past_its_time_limit(harness, heal):
    """Found by the large PostgreSQL-outage scenario: a retried message prefetched by a live worker
    whose threads were busy waited there longer than the time limit, and the healer, taking it for
    a run past its hard ceiling, failed it. The time limit applies once the retry has started."""
    client, keys = harness.broker.client, heal.keys
    client.zadd(keys.heartbeats(), {"alive": time.time() * 1000})
    waiting = seed(harness.engine, "running", age=700, worker_id="alive", rid="retry-rid", time_limit_ms=60_000)
    with harness.engine.begin() as conn:  # attempt 1 failed 600 s ago; the retry has not started since
        conn.execute(text("UPDATE operation_runs SET next_retry_at = now() - interval '600 s' WHERE id = :i"),
                     {"i": waiting})  # fmt: skip
    client.hset(keys.messages("q"), "retry-rid", b"{}")
    client.sadd(keys.acks("alive", "q"), "retry-rid")

    gone = seed(harness.engine, "running", age=700, worker_id="alive", rid="retry-lost", time_limit_ms=60_000)
    with harness.engine.begin() as conn:  # the same, but Redis lost the retry: past the ceiling, it is failed
        conn.execute(text("UPDATE operation_runs SET next_retry_at = now() - interval '600 s' WHERE id = :i"),
                     {"i": gone})  # fmt: skip

    result = heal()
    assert (result.reconciled, dict(result.skipped)) == (1, {"retry_waiting": 1})
    note = row(harness.engine, waiting)["healer_note"]
    assert note["message_found_in"] == "in_flight" and note["worker_alive"] is True
    assert row(harness.engine, gone)["reason_code"] == "run.stale_running"


def test_a_retry_held_by_a_dead_workers_delay_queue_consumer_is_handed_back(harness, heal):
    """Found by the quick SIGKILL scenario in CI: a worker killed right after a failed attempt held
    the retry in its delay-queue consumer (<q>.DQ in-flight set); the run waited forever."""
    client, keys = harness.broker.client, heal.keys
    client.zadd(keys.heartbeats(), {"dead": time.time() * 1000 - 120_000})
    retried = seed(harness.engine, "running", worker_id="dead", rid="retry-in-dq")
    client.hset(keys.delay_messages("q"), "retry-in-dq", b"{}")
    client.sadd(keys.acks("dead", "q.DQ"), "retry-in-dq")

    result = heal()
    assert (result.reconciled, dict(result.skipped)) == (0, {"requeued_from_dead_worker": 1})
    assert client.lrange(keys.queue("q.DQ"), 0, -1) == [b"retry-in-dq"]  # back in the delay queue
    assert client.scard(keys.acks("dead", "q.DQ")) == 0
    assert row(harness.engine, retried)["healer_note"]["looked_for_message_in"][-1] == keys.acks("dead", "q.DQ")


def test_a_pass_frozen_while_holding_the_lock_loses_it_after_the_idle_timeout(harness, heal, settings):
    """Found by the frozen-worker acceptance scenario: a worker SIGSTOPped in the middle of its
    healer pass kept the single-flight lock (and its transaction) open, and no other process healed.

    Two frozen passes, so that no check races the idle timeout: one with a long timeout shows that a
    frozen pass holds the lock, one with a short timeout that it loses it, whatever the machine's speed."""
    locator = RedisLocator(harness.broker.client, heal.keys, event_stream=settings.event_stream)

    def freeze(idle_timeout_seconds):
        seed(harness.engine, "running", worker_id="frozen-holder", rid="r")
        frozen, thawed, failures = threading.Event(), threading.Event(), []

        class FreezingLocator:
            def __getattr__(self, name):
                return getattr(locator, name)

            def observe(self, runs):
                frozen.set()
                thawed.wait(60)  # between two statements of the pass, as SIGSTOP would leave it
                return locator.observe(runs)

        def frozen_pass():
            try:
                options = HealOptions(idle_timeout_seconds=idle_timeout_seconds)
                heal_once(harness.engine, FreezingLocator(), ThresholdPolicy(settings), options)
            except Exception as exc:  # its session was ended under it
                failures.append(exc)

        thread = threading.Thread(target=frozen_pass)
        thread.start()
        assert frozen.wait(30)
        return thawed, thread, failures

    thawed, thread, failures = freeze(idle_timeout_seconds=600)
    try:
        assert heal().locked_out  # a frozen pass holds the lock...
    finally:
        thawed.set()
        thread.join(30)
    assert failures == []  # ... and, thawed before its idle timeout, finishes its pass

    thawed, thread, failures = freeze(idle_timeout_seconds=1)
    try:
        deadline = time.monotonic() + 30
        while heal().locked_out:  # ... until PostgreSQL ends its idle transaction
            assert time.monotonic() < deadline, "the frozen pass kept the lock"
            time.sleep(0.1)  # NOTE: polling against a deadline
    finally:
        thawed.set()
        thread.join(30)
    # The frozen pass, once thawed, finds its session gone and writes nothing.
    assert len(failures) == 1 and "idle-in-transaction timeout" in str(failures[0]), failures


def test_a_drainer_frozen_mid_transaction_loses_its_row_locks_after_the_idle_timeout(
    harness, heal, settings, monkeypatch
):
    """Found by the frozen-worker acceptance scenario: a worker group SIGSTOPped while its drainer
    was between two statements of a transaction kept the rows it had written locked. The healer
    skipped them (SKIP LOCKED) and every other drainer waited on them, so the frozen worker's runs
    were never handed back and the ledger stood still until the worker was thawed."""
    from runwatch.workers import drainer as drainer_module
    from runwatch.workers.drainer import Drainer

    run_id = seed(harness.engine, "running", worker_id="frozen-worker", rid="r")
    completion = _success(row(harness.engine, run_id)["message_id"])
    harness.broker.client.xadd(settings.event_stream, {"e": json.dumps([completion])})
    frozen, thawed, failures = threading.Event(), threading.Event(), []
    apply_events = drainer_module.apply_events

    def apply_then_freeze(conn, events, policy):
        result = apply_events(conn, events, policy)  # the row is written, and locked
        frozen.set()
        thawed.wait(60)  # before the commit, as SIGSTOP would leave it
        return result

    monkeypatch.setattr(drainer_module, "apply_events", apply_then_freeze)
    drainer = Drainer(harness.broker.client, harness.engine, ThresholdPolicy(settings), stream=settings.event_stream,
                      batch_entries=10, idle_timeout_seconds=1)  # fmt: skip

    def frozen_drain():
        try:
            drainer.drain_once()
        except Exception as exc:  # its session was ended under it
            failures.append(exc)

    thread = threading.Thread(target=frozen_drain)
    thread.start()
    try:
        assert frozen.wait(30)
        # The row is the healer's to look at again once PostgreSQL ended the frozen transaction.
        deadline = time.monotonic() + 30
        while heal().candidates == 0:
            assert time.monotonic() < deadline, "the frozen drainer kept the run's row locked"
            time.sleep(0.1)  # NOTE: polling against a deadline
    finally:
        thawed.set()
        thread.join(30)
    assert len(failures) == 1 and "idle-in-transaction timeout" in str(failures[0]), failures
    assert row(harness.engine, run_id)["status"] == "running"  # the frozen drainer's write never committed
