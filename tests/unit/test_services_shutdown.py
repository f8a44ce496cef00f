"""A worker's shutdown waits for its maintenance pass, as it waits for its drainer.

A pass stopped half-way by the process's exit (the thread is a daemon) had its transaction rolled
back, and a pass still running after ``worker.stop()`` returned wrote to the ledger after its owner
thought it gone (a test's truncation, then a pass record from the previous test).
"""

from __future__ import annotations

import threading
import time

from runwatch.workers.services import Services


def _pass_in_progress(services: Services, finished: threading.Event, *, until: threading.Event) -> threading.Thread:
    """A maintenance thread in a pass when asked to stop: it ends once ``until`` is set."""

    def run() -> None:
        services.stop.wait()
        until.wait(10)  # NOTE: the rest of the pass it was in
        finished.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_shutdown_returns_once_the_pass_in_progress_ended() -> None:
    services, finished, rest = Services(), threading.Event(), threading.Event()
    services.maintenance_thread = _pass_in_progress(services, finished, until=rest)
    threading.Timer(0.2, rest.set).start()  # the pass ends after shutdown began
    services.shutdown()
    assert finished.is_set()
    assert not services.maintenance_thread.is_alive()


def test_shutdown_gives_up_on_a_stuck_pass_after_its_bound(monkeypatch) -> None:
    import runwatch.workers.services as module

    monkeypatch.setattr(module, "MAINTENANCE_JOIN_SECONDS", 0.05)
    services, finished, rest = Services(), threading.Event(), threading.Event()
    services.maintenance_thread = _pass_in_progress(services, finished, until=rest)
    started = time.monotonic()
    services.shutdown()  # NOTE: the pass is stuck until the test lets it go: no race with a slow machine
    assert time.monotonic() - started < 5 and not finished.is_set()
    rest.set()
    finished.wait(5)
