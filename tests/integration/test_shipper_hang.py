"""A Redis that stops answering never holds a job longer than the durable wait (RUNWATCH_DURABLE_WAIT_MS).

The hook that emits an outcome writes it itself (it leads a group commit): its write must be
bounded, or a partitioned host's jobs would hang in the recorder instead of being acked.
"""

from __future__ import annotations

import socket
import threading
import time

import redis
from runwatch.workers.shipper import EventShipper


def test_a_durable_emit_returns_within_the_wait_when_redis_accepts_but_never_answers():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (the kernel does), never reads or answers
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except TimeoutError:
                continue

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    client = redis.Redis(host="127.0.0.1", port=silent.getsockname()[1])  # no socket timeout of its own
    shipper = EventShipper(client, "rwtest:hang", flush_interval_ms=10, durable_wait_ms=300, buffer_max_events=1000)
    try:
        started = time.monotonic()
        shipped = shipper.emit({"id": "e1", "kind": "completed"}, durable=True)
        elapsed = time.monotonic() - started
        assert shipped is False
        assert elapsed < 3.0, f"the hook was held {elapsed:.1f} s by a silent Redis"
    finally:
        stop.set()
        acceptor.join(5)
        for conn in held:
            conn.close()
        silent.close()
