"""Each drain mode gets events from Redis into PostgreSQL with nothing else running."""

from __future__ import annotations

import dataclasses

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from runwatch.workers.drain_process import redis_url_of

from runwatch import workers
from tests.support.waiting import wait_for


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_worker_drains_its_own_events(settings, servers, namespace, engine, mode):
    from sqlalchemy import text

    broker = RedisBroker(url=servers.redis_url, namespace=namespace)
    recorder = workers.install(broker, settings=dataclasses.replace(settings, drain_mode=mode))
    broker.emit_after("process_boot")

    @dramatiq.actor(broker=broker, queue_name="drained")
    def job():
        pass

    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=2)
    worker.start()
    try:
        messages = [job.send() for _ in range(20)]
        ids = [m.message_id for m in messages]
        query = text("SELECT count(*) FROM operation_runs WHERE outcome = 'succeeded' AND message_id = ANY(:ids)")

        def drained():
            with engine.connect() as conn:
                return conn.execute(query, {"ids": ids}).scalar() == 20

        wait_for(drained, timeout=30)
    finally:
        worker.stop()
        broker.close()
    if mode == "process":
        assert recorder.drain_process is not None and recorder.drain_process.poll() is not None  # stopped with us
    else:
        assert recorder.drain_thread is not None and not recorder.drain_thread.is_alive()


def test_redis_url_of_round_trips_the_connection():
    import redis

    client = redis.Redis.from_url("redis://user:p%40ss@example.invalid:6390/4")
    url = redis_url_of(client)
    again = redis.Redis.from_url(url).connection_pool.connection_kwargs
    assert (again["host"], again["port"], again["db"], again["password"], again["username"]) == (
        "example.invalid", 6390, 4, "p@ss", "user")
