"""Run counters in the ledger (no Redis): they add up, survive concurrency, and expose as from Redis."""

from __future__ import annotations

import logging
import threading

import pytest
import redis
from sqlalchemy import create_engine, text

from runwatch import counters
from runwatch.counter_store import LedgerCounters, RedisCounters, dropped, record_to
from runwatch.exposition import RunwatchCollector
from tests.support.exposition import family_blocks, samples, scrape
from tests.support.net import free_port
from tests.support.waiting import wait_for

COUNTER_FAMILIES = (
    "runwatch_runs_finished_total",
    "runwatch_reconciliations_total",
    "runwatch_shipper_dropped_events_total",
    "runwatch_run_duration_seconds",
    "runwatch_queue_wait_seconds",
)
A = counters.field(counters.FINISHED, "t", "q", "succeeded")
B = counters.field(counters.FINISHED, "t", "q", "failed")


def _run(**over):
    # NOTE: times are binary fractions, so sums are exact in Redis's long double and PostgreSQL's float8 alike.
    run = {
        "type": "report.build",
        "queue_name": "default",
        "outcome": "succeeded",
        "source": None,
        "reason_code": None,
        "created_at": 1000.0,
        "started_at": 1000.25,
        "completed_at": 1003.5,
    }
    return {**run, **over}


FINISHED_RUNS = [
    _run(),
    _run(completed_at=1400.75),
    _run(type="mail.send", queue_name="mail", created_at=1000.0, started_at=1000.0, completed_at=1000.0),
    _run(outcome="failed", source="failed_callback", reason_code="run.queue_failure_bridge"),
    _run(outcome="failed", source="scheduled_reconciler", reason_code="run.stale_queued", started_at=None),
]


def _values(engine):
    with engine.connect() as conn:
        return LedgerCounters.values(conn)


def test_increments_add_up_and_commit_with_the_callers_transaction(engine):
    store = LedgerCounters(engine)
    store.add({A: 1, B: 2})
    store.add({A: 3})
    store.add({})
    with engine.begin() as conn:
        LedgerCounters.add_in(conn, {A: 0.5, B: 1})
    with pytest.raises(RuntimeError), engine.begin() as conn:
        LedgerCounters.add_in(conn, {A: 100})
        raise RuntimeError("the caller's work failed: its counts go with it")
    assert _values(engine) == {A: 4.5, B: 3.0}


def test_a_blocked_add_waits_for_the_other_transaction_and_loses_no_count(engine):
    store = LedgerCounters(engine)
    store.add({A: 1})
    with engine.connect() as holder:
        holder.begin()
        LedgerCounters.add_in(holder, {A: 10, B: 10})  # NOTE: holds the rows' locks until its commit
        pid = holder.execute(text("SELECT pg_backend_pid()")).scalar()
        adder = threading.Thread(target=store.add, args=({B: 1, A: 1},))
        adder.start()

        def adder_waits_on_the_lock():
            with engine.connect() as conn:
                return conn.execute(
                    text("SELECT count(*) FROM pg_locks WHERE NOT granted AND :pid = ANY(pg_blocking_pids(pid))"),
                    {"pid": pid},
                ).scalar()

        wait_for(adder_waits_on_the_lock)
        holder.commit()
    adder.join(30)
    assert not adder.is_alive()
    assert _values(engine) == {A: 12.0, B: 11.0}


def test_concurrent_adds_from_two_connections_lose_no_count(engine):
    rounds = 100
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def adder(fields):
        start.wait(10)
        try:
            for _ in range(rounds):
                LedgerCounters(engine).add(dict.fromkeys(fields, 1.0))
        except BaseException as exc:  # NOTE: a deadlock or lost update must fail the test, not vanish in a thread
            errors.append(exc)

    # NOTE: opposite field orders: the statement locks rows in name order, so these never deadlock.
    threads = [threading.Thread(target=adder, args=(f,)) for f in ([A, B], [B, A])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert _values(engine) == {A: 2.0 * rounds, B: 2.0 * rounds}


def test_the_ledger_exposes_the_same_counter_families_as_redis(engine, redis_client, namespace):
    stream = f"{namespace}:events"
    for store in (RedisCounters(redis_client, stream), LedgerCounters(engine)):
        record_to(store, FINISHED_RUNS[:2])
        record_to(store, FINISHED_RUNS[2:])
        store.add(dropped({"outcome": 2, "other": 0}))
    from_redis = family_blocks(scrape(RunwatchCollector(stream=stream, redis_client=redis_client)))
    from_ledger = family_blocks(scrape(RunwatchCollector(stream=stream, engine=engine, counters_in_ledger=True)))
    for name in COUNTER_FAMILIES:
        assert from_ledger[name] == from_redis[name], name
    assert (
        'runwatch_runs_finished_total{outcome="succeeded",queue="default",type="report.build"} 2.0'
        in (from_ledger["runwatch_runs_finished_total"])
    )
    # 3.25 + 400.5 + 3.25 s: the run that never started has no duration
    assert (
        'runwatch_run_duration_seconds_sum{type="report.build"} 407.0' in from_ledger["runwatch_run_duration_seconds"]
    )
    assert "runwatch_redis_up" not in from_ledger and "runwatch_event_stream_backlog" not in from_ledger
    assert RedisCounters(redis_client, stream).values() == _values(engine)


@pytest.mark.parametrize(
    ("answer", "backlog", "lag"),
    [((7, 42.5), 7, 42.5), ((3, None), 3, None), ((0, None), 0, 0.0), ((2, -1.0), 2, 0.0)],
    ids=["age-known", "age-unknown", "empty", "clock-skew"],
)
def test_the_backlog_and_lag_come_from_the_transports_callable(engine, answer, backlog, lag):
    collector = RunwatchCollector(stream="s", engine=engine, counters_in_ledger=True, backlog=lambda: answer)
    values = samples(scrape(collector))
    assert values[("runwatch_broker_up", ())] == 1 and values[("runwatch_ledger_up", ())] == 1
    assert values[("runwatch_event_stream_backlog", ())] == backlog
    # NOTE: events wait and their age is unknown: no lag at all, not a 0 that would read "all applied".
    assert values.get(("runwatch_drainer_lag_seconds", ())) == lag


def test_a_backlog_callable_that_fails_sets_the_broker_gauge_to_0_and_the_scrape_goes_on(engine, caplog):
    LedgerCounters(engine).add({A: 5})

    def broker_down():
        raise ConnectionError("RabbitMQ is restarting")

    collector = RunwatchCollector(stream="s", engine=engine, counters_in_ledger=True, backlog=broker_down)
    with caplog.at_level(logging.WARNING, logger="runwatch.metrics"):
        values = samples(scrape(collector))
    assert values[("runwatch_broker_up", ())] == 0 and values[("runwatch_ledger_up", ())] == 1
    assert ("runwatch_event_stream_backlog", ()) not in values and ("runwatch_drainer_lag_seconds", ()) not in values
    assert values[("runwatch_runs_finished_total", (("outcome", "succeeded"), ("queue", "q"), ("type", "t")))] == 5
    assert "RabbitMQ is restarting" in caplog.text


def test_redis_beside_a_ledger_and_a_callable_names_each_family_once(engine, redis_client, namespace):
    stream = f"{namespace}:events"
    redis_client.xadd(stream, {"e": b"[]"})  # NOTE: the Redis stream is not the transport here: not counted
    LedgerCounters(engine).add({A: 1})
    collector = RunwatchCollector(
        stream=stream, redis_client=redis_client, engine=engine, counters_in_ledger=True, backlog=lambda: (4, 1.5)
    )
    body = scrape(collector)
    family_blocks(body)  # fails on a family named twice
    values = samples(body)
    assert values[("runwatch_redis_up", ())] == 1 and values[("runwatch_broker_up", ())] == 1
    assert values[("runwatch_event_stream_backlog", ())] == 4 and values[("runwatch_drainer_lag_seconds", ())] == 1.5


def test_recording_to_a_store_that_does_not_answer_logs_and_never_raises(caplog):
    dead_ledger = LedgerCounters(
        create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x", connect_args={"connect_timeout": 2})
    )
    dead_redis = RedisCounters(redis.Redis(port=free_port(), socket_connect_timeout=1), "s")
    with caplog.at_level(logging.WARNING, logger="runwatch.metrics"):
        for store in (dead_ledger, dead_redis):
            record_to(store, FINISHED_RUNS)
    assert "could not count 5 ended run(s) in PostgreSQL" in caplog.text
    assert "could not count 5 ended run(s) in Redis" in caplog.text


def test_counters_in_the_ledger_need_the_ledger():
    with pytest.raises(ValueError, match="engine"):
        RunwatchCollector(stream="s", counters_in_ledger=True)
