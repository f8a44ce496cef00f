"""A worker's shutdown waits for its maintenance pass, as it waits for its drainer.

A pass stopped half-way by the process's exit (the thread is a daemon) had its transaction rolled
back, and a pass still running after ``worker.stop()`` returned wrote to the ledger after its owner
thought it gone (a test's truncation, then a pass record from the previous test).
"""

from __future__ import annotations

import threading
import time

from runwatch.workers.services import Services


def _pass_in_progress(services: Services, finished: threading.Event) -> threading.Thread:
    def run() -> None:
        services.stop.wait()
        time.sleep(0.2)  # NOTE: the rest of the pass it was in when asked to stop (simulated work)
        finished.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_shutdown_returns_once_the_pass_in_progress_ended() -> None:
    services, finished = Services(), threading.Event()
    services.maintenance_thread = _pass_in_progress(services, finished)
    services.shutdown()
    assert finished.is_set()
    assert not services.maintenance_thread.is_alive()


def test_shutdown_gives_up_on_a_stuck_pass_after_its_bound(monkeypatch) -> None:
    import runwatch.workers.services as module

    monkeypatch.setattr(module, "MAINTENANCE_JOIN_SECONDS", 0.05)
    services, finished = Services(), threading.Event()
    services.maintenance_thread = _pass_in_progress(services, finished)
    started = time.monotonic()
    services.shutdown()
    assert time.monotonic() - started < 0.2 and not finished.is_set()
    finished.wait(5)
