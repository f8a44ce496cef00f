"""PostgreSQL and Redis outages: buffered, retried, logged per burst, never a failed job."""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit

import dramatiq
import pytest
import redis
from runwatch.workers.drainer import Drainer
from runwatch.workers.shipper import EventShipper
from sqlalchemy import create_engine, text

from runwatch.thresholds import ThresholdPolicy
from tests.support.proxy import CuttableProxy
from tests.support.waiting import wait_for


@pytest.fixture
def pg_proxy(database_url):
    parts = urlsplit(database_url)
    proxy = CuttableProxy(parts.hostname, parts.port or 5432)
    url = database_url.replace(f"{parts.hostname}:{parts.port or 5432}", f"127.0.0.1:{proxy.port}")
    engine = create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 2})
    yield proxy, engine
    engine.dispose()
    proxy.close()


def test_postgres_outage_loses_no_outcome_and_fails_no_job(harness, worker, pg_proxy, settings, caplog):
    proxy, engine = pg_proxy
    drainer = Drainer(
        harness.broker.client, engine, ThresholdPolicy(settings), stream=settings.event_stream, batch_entries=5
    )
    stop = threading.Event()
    thread = threading.Thread(target=drainer.run, args=(stop,), kwargs={"block_ms": 50}, daemon=True)

    @dramatiq.actor(queue_name="q", max_retries=0)
    def job(i):
        pass

    proxy.cut()
    caplog.set_level(logging.WARNING, logger="runwatch.drainer")
    thread.start()
    messages = [job.send(i) for i in range(40)]
    harness.broker.join("q", timeout=20_000)
    harness.recorder.shipper.flush()
    # Every job succeeded although the ledger is unreachable; the outcomes wait in Redis.
    assert harness.broker.client.zcard(f"{harness.broker.namespace}:q.XQ") == 0
    wait_for(lambda: drainer._db_errors.failing, timeout=10)
    assert harness.broker.client.xlen(settings.event_stream) > 0

    proxy.restore()

    def all_completed():
        with harness.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM operation_runs WHERE outcome='succeeded'")).scalar() == 40

    try:
        wait_for(all_completed, timeout=30)
    finally:
        stop.set()
        thread.join(5)
    assert {harness.run(m.message_id)["outcome"] for m in messages} == {"succeeded"}
    outage_logs = [r.getMessage() for r in caplog.records if "could not write run events" in r.getMessage()]
    # Once for the outage and once for its end, not once per message.
    assert [("recovered" in m) for m in outage_logs] == [False, True], outage_logs


def test_redis_outage_never_blocks_or_fails_the_job_and_ships_later(servers, namespace, caplog):
    parts = urlsplit(servers.redis_url)
    proxy = CuttableProxy(parts.hostname, parts.port or 6379)
    client = redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=1, socket_connect_timeout=1)
    stream = f"{namespace}:events"
    shipper = EventShipper(client, stream, flush_interval_ms=10, durable_wait_ms=200, buffer_max_events=1000)
    try:
        proxy.cut()
        caplog.set_level(logging.WARNING, logger="runwatch.shipper")
        assert shipper.emit({"n": 1}, durable=True) is False  # gave up waiting, did not raise
        for n in range(2, 50):
            shipper.emit({"n": n})
        # Restored only once the shipper has met the outage (redis-py retries a while on its own).
        wait_for(lambda: any("could not ship" in r.getMessage() for r in caplog.records), timeout=30)
        proxy.restore()
        direct = redis.Redis.from_url(servers.redis_url)
        wait_for(
            lambda: sum(len(__import__("json").loads(f[b"e"])) for _, f in direct.xrange(stream)) == 49, timeout=20
        )
        # NOTE: the shipper logs the recovery after its write returns, so a reader may see the
        # events in Redis first; wait for the line, then count every line.
        wait_for(lambda: any("recovered" in r.getMessage() for r in caplog.records), timeout=10)
        shipping = [r.getMessage() for r in caplog.records if "could not ship" in r.getMessage()]
        # Once for the outage and once for its end, not once per event.
        assert [("recovered" in m) for m in shipping] == [False, True], shipping
    finally:
        shipper.close(timeout_seconds=1)
        proxy.close()


def _started(event_id: str, message_id: str) -> dict:
    """A hand-made start event; ``event_id`` is repeated to the 32 hex digits of an event id."""
    return {
        "id": (event_id * 32)[:32],
        "kind": "started",
        "message_id": message_id,
        "at": 1_700_000_000.0,
        "meta": {"queue": "q", "actor": "a", "type": "t", "created_at": 1_700_000_000.0},
    }


def test_a_poisoned_event_is_rejected_and_the_rest_of_its_batch_applied(harness, settings):
    good = _started("a", "good")
    # A tenant id beyond bigint: passes validation, fails in the database.
    poisoned = {**good, "id": "b" * 32, "message_id": "bad", "meta": {**good["meta"], "tenant_id": 2**70}}
    harness.recorder.shipper.emit(good)
    harness.recorder.shipper.emit(poisoned)
    harness.recorder.shipper.flush()
    result = harness.drainer.drain_until_empty()
    assert result.rejected == 1
    assert harness.run("good")["status"] == "running"
    rejected = harness.broker.client.xrange(f"{settings.event_stream}:rejected")
    assert len(rejected) == 1 and b"bad" in rejected[0][1][b"payload"]
    assert harness.broker.client.xlen(settings.event_stream) == 0


def test_the_drainer_recreates_its_group_after_redis_lost_the_stream(harness, settings):
    """Found by the acceptance suite: a Redis restart without persistence takes the consumer group
    with it, and a drainer that remembered creating it failed with NOGROUP forever."""
    harness.recorder.shipper.emit(_started("c", "m1"))
    harness.recorder.shipper.flush()
    assert harness.drainer.drain_until_empty().events == 1
    harness.broker.client.delete(settings.event_stream)  # what a restart without persistence does
    harness.recorder.shipper.emit(_started("d", "m2"))
    harness.recorder.shipper.flush()
    with pytest.raises(redis.ResponseError, match="NOGROUP"):
        harness.drainer.drain_once()  # run() logs this and retries after a backoff
    assert harness.drainer.drain_until_empty().events == 1
    assert harness.run("m2")["status"] == "running"


def test_consumers_of_dead_drainers_are_forgotten_once_they_hold_nothing(harness, settings, engine):
    client = harness.broker.client
    harness.recorder.shipper.emit(_started("e", "m"))
    harness.recorder.shipper.flush()
    harness.drainer.drain_once()  # creates the group
    client.xreadgroup("runwatch-ledger", "dead-drainer", {settings.event_stream: ">"})  # reads nothing: 0 pending
    holder = Drainer(client, engine, ThresholdPolicy(settings), stream=settings.event_stream, batch_entries=10,
                     consumer="holder", forget_idle_ms=1)  # fmt: skip
    harness.recorder.shipper.emit(_started("f", "m2"))
    harness.recorder.shipper.flush()
    client.xreadgroup("runwatch-ledger", "dead-with-pending", {settings.event_stream: ">"})  # holds one entry

    def names():
        return {c["name"].decode() for c in client.xinfo_consumers(settings.event_stream, "runwatch-ledger")}

    wait_for(lambda: holder.drain_once().entries == 0 and "dead-drainer" not in names())
    assert "dead-with-pending" in names()  # its entry is claimed first (after claim_idle_ms), then it goes


def test_a_closed_shipper_ships_again_on_the_next_emit(harness, settings):
    shipper, client = harness.recorder.shipper, harness.broker.client
    event = _started("a1", "m")
    shipper.defer("start", event)
    shipper.close()
    assert client.xlen(settings.event_stream) == 1  # the deferred event went out with the close
    assert shipper.emit({**event, "id": "b2" * 16}, durable=True)  # a new thread ships it
    assert client.xlen(settings.event_stream) == 2
