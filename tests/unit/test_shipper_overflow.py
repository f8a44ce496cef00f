"""A full buffer (Redis away too long) drops progress before outcomes, and says so."""

from __future__ import annotations

import logging
import threading

import pytest
import redis
from runwatch.workers.shipper import EventShipper

from runwatch import events as ev


class _DownRedis:
    """A Redis that is never reachable (an in-memory twin: unit tests only)."""

    def pipeline(self, transaction: bool = False):
        raise redis.ConnectionError("Redis is down")


META = {"queue": "q", "actor": "a", "type": "t", "created_at": 1.0}


@pytest.fixture
def shipper():
    s = EventShipper(_DownRedis(), "s", flush_interval_ms=10_000, durable_wait_ms=0, buffer_max_events=100)
    # NOTE: no shipping thread: every flush would fail anyway, and the buffer stays still to look at.
    s._thread = threading.current_thread()
    return s


def test_outcomes_survive_a_full_buffer(shipper, caplog):
    caplog.set_level(logging.WARNING, "runwatch.shipper")
    shipper.builders["dead"] = lambda m: ev.new_event(ev.DEAD_LETTERED, m, 2.0, META, reason_code="run.stale_queued")
    shipper.emit(ev.new_event(ev.COMPLETED, "m1", 2.0, META, outcome="succeeded"), durable=True)
    shipper.emit(("dead", "m2"), durable=True)  # built lazily, as the recorder emits outcomes
    shipper.emit(ev.new_event(ev.ATTEMPT_FAILED, "m3", 2.0, META, attempt=1, next_retry_at=3.0))  # a retry's plan
    for i in range(250):
        shipper.emit(ev.new_event(ev.PROGRESS, "m", 1.0 + i, META))
    with shipper._cond:
        buffer = [e if isinstance(e, dict) else shipper.builders[e[0]](*e[1:]) for e in shipper._buffer]
    assert len(buffer) == 100
    assert {(e["kind"], e["message_id"]) for e in buffer if e["kind"] != ev.PROGRESS} == {
        (ev.COMPLETED, "m1"),
        (ev.DEAD_LETTERED, "m2"),
        (ev.ATTEMPT_FAILED, "m3"),
    }
    assert (shipper.dropped, shipper.dropped_outcomes) == (153, 0)
    assert "run event buffer full" in caplog.text


def test_a_buffer_of_nothing_but_outcomes_drops_the_oldest_and_counts_it(shipper):
    outcomes = [ev.new_event(ev.COMPLETED, f"m{i}", 2.0, META, outcome="succeeded") for i in range(101)]
    for event in outcomes:
        shipper.emit(event, durable=True)
    with shipper._cond:
        kept = {e["message_id"] for e in shipper._buffer}
    assert len(kept) == 100 and "m0" not in kept
    assert (shipper.dropped, shipper.dropped_outcomes) == (1, 1)
