"""The jobs the acceptance suite runs, and the journal that is its ground truth.

Every worker process appends what it *did* to a journal file of its own: a delivery started, the
actor returned (or raised), the message was acked or nacked. Each line is one unbuffered
``write(2)`` to an ``O_APPEND`` file, so a SIGKILL loses no line already written; the checker
compares this history with the final ledger (tests/acceptance/checker.py).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from runwatch.workers.run import current_run

QUEUE = "acc"
#: Per-type thresholds, small so that every fault resolves within seconds.
RUNNING_STALE_SECONDS = 2
QUEUED_STALE_SECONDS = 3
#: What each mode's run must end as when its job finished normally.
EXPECTED = {
    "ok": "succeeded",
    "flaky": "succeeded",
    "partial": "partially_succeeded",
    "block": "blocked",
    "fail": "failed",
    "raise": None,  # dead-lettered: reconciled by the failure callback
    "zombie": "succeeded",
}
#: The exceptions each mode raises itself, by fully qualified class: any other failure of a delivery
#: is Runwatch's fault (``redis.exceptions.ConnectionError`` is a ``ConnectionError`` too, and is not ours).
RAISES = {
    "raise": ("builtins.ValueError",),
    "flaky": ("builtins.ConnectionError",),
    "zombie": ("builtins.RuntimeError",),
}
JOURNAL_ENV = "RW_ACC_JOURNAL"
#: A RabbitMQ worker's AMQP heartbeat in seconds (app.py), when a scenario needs a frozen worker's
#: connection closed by RabbitMQ (its unacked deliveries then go back to the queue).
AMQP_HEARTBEAT_ENV = "RW_ACC_AMQP_HEARTBEAT"
#: A gated job gives up (and fails, which the checker reports) if its gate stays shut this long.
GATE_MAX_SECONDS = 50
GATE_POLL_SECONDS = 0.05


def gate_path(directory: str | os.PathLike[str], gate: str) -> Path:
    """The file whose existence opens ``gate``: the scenario creates it, gated jobs poll for it."""
    return Path(directory) / f"gate-{gate}"


def qualified_name(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


class Journal(Middleware):
    """Appends start / done / ack / nack lines for every delivery this process handles.

    Each line names the process (``p``), its process group (``g``: the worker group a scenario
    signals) and the thread (``th``: a delivery's start and done share it, even when one process
    runs two deliveries of a duplicated message at once), so that a fault can be checked to have
    hit the deliveries it meant to hit.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._directory = Path(directory)
        self._fds: dict[int, int] = {}  # by pid: the CLI may import this module before it forks
        self._done: dict[int, bool] = {}  # by delivery (its MessageProxy): a broker's own id may not exist
        self._lock = threading.Lock()

    def _write(self, kind: str, message: dramatiq.Message, **extra: Any) -> None:
        pid = os.getpid()
        with self._lock:
            if pid not in self._fds:
                path = self._directory / f"{pid}.jsonl"
                self._fds[pid] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        line = {"k": kind, "m": message.message_id, "q": message.queue_name, "t": time.time(), "p": pid,
                "g": os.getpgid(0), "th": threading.get_ident()}  # fmt: skip
        os.write(self._fds[pid], (json.dumps({**line, **extra}) + "\n").encode())

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self._write("start", message, attempt=message.options.get("retries", 0) + 1)

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        ok = exception is None
        with self._lock:
            self._done[id(message)] = ok
        self._write("done", message, ok=ok, error=qualified_name(exception) if exception else None)

    def after_ack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        if message.queue_name.endswith(".DQ"):
            return  # a delayed message moving to its queue, not a completion
        with self._lock:
            ok = self._done.pop(id(message), None)
        self._write("ack", message, ok=ok)

    def after_nack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self._write("nack", message)


def read_journal(directory: Path) -> Iterator[dict[str, Any]]:
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.endswith("}"):  # a line cut by SIGKILL mid-write cannot be trusted
                yield json.loads(line)


def declare(broker: dramatiq.Broker, journal_dir: str | None = None) -> dramatiq.Actor:
    """The acceptance job: works ``ms`` milliseconds with progress, then ends as ``mode`` says.

    With a ``gate`` it then also waits, reporting progress, until the scenario opens that gate: a
    job a fault must catch in flight stays in flight until the fault has hit it, however slow the
    machine, instead of the scenario racing a timer.
    """

    @dramatiq.actor(
        broker=broker,
        queue_name=QUEUE,
        max_retries=1,
        min_backoff=50,
        max_backoff=100,
        time_limit=60_000,
        runwatch_type="acc.work",
        runwatch_running_stale_seconds=RUNNING_STALE_SECONDS,
        runwatch_queued_stale_seconds=QUEUED_STALE_SECONDS,
    )
    def work(mode: str, ms: int, gate: str | None = None) -> None:
        run = current_run()
        if mode == "zombie":
            # Delivered again while its first worker was frozen: the redelivery fails, then the
            # first delivery, thawed, succeeds: the late success of scenario 6.
            marker = Path(journal_dir or ".") / f"zombie-{run.message_id}"
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                raise RuntimeError("the resource is held by an earlier delivery") from None
        steps = max(1, ms // 100)
        for step in range(1, steps + 1):
            time.sleep(ms / steps / 1000)
            run.progress(processed=step, total=steps)
        if gate is not None:
            _wait_for_gate(gate_path(journal_dir or ".", gate), run)
        if mode == "flaky" and run.attempt == 1:
            raise ConnectionError("flaky upstream")
        if mode == "partial":
            run.partially_succeeded("some records skipped", processed=steps, skipped=1)
        elif mode == "block":
            run.block("acc.precondition_missing", "Precondition missing")
        elif mode == "fail":
            run.fail("acc.business_failure", "Business failure handled by the job")
        elif mode == "raise":
            raise ValueError("unrecoverable input")

    return work


def _wait_for_gate(path: Path, run: Any) -> None:
    deadline = time.monotonic() + GATE_MAX_SECONDS
    while not path.exists():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"gate {path.name} stayed shut for {GATE_MAX_SECONDS}s")
        time.sleep(GATE_POLL_SECONDS)
        run.progress()
