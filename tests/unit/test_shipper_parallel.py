"""A writer with a long round trip (RabbitMQ's confirm) gets several rounds in flight, never more
than its ``parallel``; every outcome is still written exactly once before its emitter returns."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from runwatch.workers.shipper import EventShipper

from runwatch import events as ev
from runwatch import wire

META = {"queue": "q", "actor": "a", "type": "t", "created_at": 1.0}


class _SlowWriter:
    """An in-memory twin of a confirming writer: each write waits until the test lets it go."""

    def __init__(self, parallel: int) -> None:
        self.parallel = parallel
        self.in_flight = 0
        self.most_in_flight = 0
        self.written: list[dict] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.all_in = threading.Condition(self._lock)

    def write(self, payloads: list[bytes]) -> None:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.all_in.notify_all()
        self.release.wait(10)
        with self._lock:
            self.in_flight -= 1
            self.written.extend(e for p in payloads for e in wire.loads(p))

    def count(self, increments: Mapping[str, float]) -> None:
        pass

    def reset(self) -> None:
        pass


def _emit_outcomes(shipper: EventShipper, n: int) -> tuple[list[threading.Thread], list[bool]]:
    done: list[bool] = []

    def finish(i: int) -> None:
        done.append(shipper.emit(ev.new_event(ev.COMPLETED, f"m{i}", 1.0, META, outcome="succeeded"), durable=True))

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, done


def test_rounds_overlap_up_to_the_writers_parallel_and_each_outcome_is_written_once():
    writer = _SlowWriter(parallel=3)
    shipper = EventShipper(None, "s", flush_interval_ms=10_000, durable_wait_ms=10_000, buffer_max_events=1000,
                           writer=writer)  # fmt: skip
    threads, done = _emit_outcomes(shipper, 8)
    with writer.all_in:
        assert writer.all_in.wait_for(lambda: writer.in_flight == 3, timeout=10)  # three rounds in flight at once
    writer.release.set()
    for t in threads:
        t.join(10)
    assert done == [True] * 8 and writer.most_in_flight == 3
    assert sorted(e["message_id"] for e in writer.written) == sorted(f"m{i}" for i in range(8))
    shipper.close()


def test_a_writer_without_parallel_has_one_round_in_flight():
    writer = _SlowWriter(parallel=1)
    del writer.parallel  # NOTE: the Redis writer has no such attribute: one round at a time
    shipper = EventShipper(None, "s", flush_interval_ms=10_000, durable_wait_ms=10_000, buffer_max_events=1000,
                           writer=writer)  # fmt: skip
    threads, done = _emit_outcomes(shipper, 4)
    with writer.all_in:
        assert writer.all_in.wait_for(lambda: writer.in_flight == 1, timeout=10)
    writer.release.set()
    for t in threads:
        t.join(10)
    assert done == [True] * 4 and writer.most_in_flight == 1
    shipper.close()
