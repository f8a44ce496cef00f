"""A drainer stalled inside its transaction (its host partitioned, its process frozen) blocks no one for long.

Its upsert holds row locks until the transaction ends; to PostgreSQL a client cut off by a
partition is only "idle in transaction", for hours (until TCP keepalive gives up). Every other
drainer applying an event of the same runs waits on those locks, and the healer skips the runs
(``SKIP LOCKED``). PostgreSQL must end such a session after the drainer's idle timeout.
"""

from __future__ import annotations

import threading
import time
import uuid

import runwatch.workers.drainer as drainer_module
from runwatch.workers.drainer import Drainer
from sqlalchemy import text

from runwatch import events as ev
from runwatch import wire
from runwatch.thresholds import ThresholdPolicy
from tests.support.waiting import wait_for


def _entry(client, stream: str, event: dict) -> None:
    client.xadd(stream, {"e": wire.dumps([event])})


def test_a_drainer_stalled_in_its_transaction_loses_its_locks_after_the_idle_timeout(
    settings, engine, redis_client, monkeypatch
):
    policy, stream = ThresholdPolicy(settings), settings.event_stream
    message_id = str(uuid.uuid4())
    meta = {"queue": "q", "actor": "job", "type": "job", "created_at": time.time()}
    stalled, release = threading.Event(), threading.Event()
    real_apply = drainer_module.apply_events

    def apply_then_stall(conn, events, policy):
        result = real_apply(conn, events, policy)  # the run's row is locked now, until COMMIT
        if threading.current_thread().name == "stalled-drainer":
            stalled.set()
            release.wait(60)  # the partition: no COMMIT, no disconnect
        return result

    monkeypatch.setattr(drainer_module, "apply_events", apply_then_stall)
    kw = {"stream": stream, "batch_entries": 1, "claim_idle_ms": 300, "idle_timeout_seconds": 1}
    first = Drainer(redis_client, engine, policy, consumer="stalled", **kw)
    second = Drainer(redis_client, engine, policy, consumer="healthy", **kw)
    failures: list[BaseException] = []

    def stall() -> None:
        try:
            first.drain_once()
        except Exception as exc:  # noqa: BLE001 - its session was ended under it: expected
            failures.append(exc)

    _entry(redis_client, stream, ev.new_event(ev.ENQUEUED, message_id, time.time(), meta))
    stuck = threading.Thread(target=stall, name="stalled-drainer", daemon=True)
    stuck.start()
    try:
        assert stalled.wait(10)
        _entry(redis_client, stream, ev.new_event(ev.STARTED, message_id, time.time(), meta, attempt=1))
        done = threading.Event()
        threading.Thread(target=lambda: (second.drain_once(), done.set()), daemon=True).start()
        # The healthy drainer waits on the stalled one's row lock until PostgreSQL ends that session.
        assert done.wait(15), "a drainer stalled in its transaction blocks the others"
    finally:
        release.set()
        stuck.join(10)
    assert failures, "the stalled drainer's transaction should have been ended under it"

    # Nothing is lost: the stalled drainer's entry is claimed and applied by the healthy one (the
    # enqueue made the row, its queue is on it; the start is the log's one row, a transition).
    def applied() -> bool:
        second.drain_once()
        with engine.connect() as conn:
            kinds = conn.execute(text("SELECT kind FROM run_events WHERE message_id = :m"), {"m": message_id})
            row = conn.execute(
                text("SELECT status, queue_name FROM operation_runs WHERE message_id = :m"), {"m": message_id}
            ).first()
            return sorted(kinds.scalars()) == ["started"] and tuple(row or ()) == ("running", "q")

    wait_for(applied, timeout=15, interval=0.2)
    assert redis_client.xlen(stream) == 0
