"""Real processes for the acceptance suite: Dramatiq workers started with the ``dramatiq`` CLI,
the API under gunicorn, and the ``runwatch`` CLI, each one a child the tests can kill."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


class Process:
    """A child in its own process group, so that a signal reaches all of it (worker, drainer, ...)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.argv, self.env, self.log_dir = name, argv, env, log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Process:
        self.starts += 1
        log = open(self.log_dir / f"{self.name}.{self.starts}.log", "wb")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def group(self) -> int | None:
        """The process group id (the leader's pid): journal lines name it as ``g``."""
        return None if self.proc is None else self.proc.pid

    def signal_group(self, sig: signal.Signals) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def sigkill(self) -> None:
        """SIGKILL every process of the group at once: an OOM kill or a lost container."""
        self.signal_group(signal.SIGKILL)
        self.wait(10)
        self._reap_group()

    def terminate(self) -> None:
        """SIGTERM to the main process only, as ``docker stop`` does; returns at once."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def sigterm(self, timeout: float = 30) -> int | None:
        """SIGTERM to the main process only, as ``docker stop`` does; wait for the group to exit."""
        if self.proc is None:
            return None
        self.terminate()
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the main process's exit code, then for the rest of its group to be gone."""
        code = self.wait(timeout)
        self._reap_group()
        return code

    def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _reap_group(self) -> None:
        """Children outlive their parent briefly (the drainer polls for it): wait for the group to be gone."""
        if self.proc is None:
            return

        def gone() -> bool:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return True
            return False

        try:
            wait_until(gone, 15, f"{self.name}'s process group to exit", interval=0.05)
        except TimeoutError:
            self.signal_group(signal.SIGKILL)
            wait_until(gone, 10, f"{self.name}'s process group to die", interval=0.05)

    def stop(self) -> None:
        if self.alive:
            self.signal_group(signal.SIGCONT)  # a frozen group cannot act on SIGTERM
            if self.sigterm(timeout=15) is None:
                self.sigkill()


def stop_all(procs: list[Process], timeout: float = 15) -> None:
    """``Process.stop`` for every process at once: a scenario's end costs its slowest shutdown, not their sum."""
    alive = [p for p in procs if p.alive]
    for proc in alive:
        proc.signal_group(signal.SIGCONT)  # a frozen group cannot act on SIGTERM
        proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in alive:
        if proc.wait_exit(max(0.1, deadline - time.monotonic())) is None:
            proc.sigkill()


def worker(name: str, env: dict[str, str], log_dir: Path, *, threads: int = 4, shutdown_timeout_ms: int = 10_000):
    argv = [
        sys.executable, "-m", "dramatiq", "tests.acceptance.app", "--processes", "1", "--threads", str(threads),
        "--queues", "acc", "--worker-shutdown-timeout", str(shutdown_timeout_ms), "--path", str(ROOT),
    ]  # fmt: skip
    return Process(name, argv, env, log_dir)


def runwatch(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Process:
    return Process(name, [sys.executable, "-m", "runwatch.cli", *args], env, log_dir)


def concurrent_passes(
    copies: int, env: dict[str, str], log_dir: Path, *, passes: int = 3, timeout: float = 180
) -> tuple[list[Process], dict[str, int | None]]:
    """``copies`` × (``heal --once`` and ``bridge scan``), each ``passes`` times, all at once; their exit codes."""
    procs = [
        Process(f"{what}-{i}", ["bash", "-c", f"for i in $(seq {passes}); do {cmd} || exit $?; done"],
                env, log_dir).start()
        for i in range(copies)
        for what, cmd in (
            ("heal", f"{sys.executable} -m runwatch.cli heal --once"),
            ("scan", f"{sys.executable} -m runwatch.cli bridge scan --min-age-seconds 0"),
        )
    ]  # fmt: skip
    deadline = time.monotonic() + timeout
    return procs, {p.name: p.wait(max(1.0, deadline - time.monotonic())) for p in procs}


def http_get(port: int, path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, dict(resp.headers), resp.read()
    finally:
        conn.close()


def answers(port: int) -> bool:
    """Whether the API on ``port`` says it is live."""
    try:
        return http_get(port, "/health/live")[0] == 200
    except OSError:
        return False
