"""The drainer as a child process of one worker process per host (``RUNWATCH_DRAIN=process``, the default).

A drainer in a thread would compete for the worker's GIL; in a child process it runs beside
the jobs. One per host is enough (PostgreSQL does the folding; the drainer is a thin pipe), and
one per worker process would multiply its memory with ``dramatiq -p N``: the worker processes
of a host elect one with an ``flock`` on a per-host, per-stream lock file (``HostDrainer``). The
holder runs the child; when the holder dies the kernel releases the lock and another worker
process takes over within ``RETRY_SECONDS``. The child exits when its parent does (SIGKILL
included: it watches its parent pid), after a last drain on SIGTERM.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from runwatch.settings import Settings

from .transport import Transport, redis_url_of

__all__ = ["HostDrainer", "lock_path", "main", "redis_url_of", "spawn", "stop"]

logger = logging.getLogger("runwatch.drainer")
_PARENT_ENV = "RW_DRAIN_PARENT_PID"


def spawn(settings: Settings, transport: Transport) -> subprocess.Popen | None:
    if not settings.database_url:
        logger.error(
            "RUNWATCH_DATABASE_URL is not set: run events wait in %r until a drainer with a database "
            "runs (`runwatch drain`)",
            settings.event_stream,
        )
        return None
    # NOTE: the child gets the worker's settings, not the inherited RUNWATCH_* variables: they
    # differ when the settings were given to install() in code (thresholds, stream, ...).
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RUNWATCH_")},
        **settings.as_env(),
        **transport.child_env(),
        _PARENT_ENV: str(os.getpid()),
    }
    return subprocess.Popen([sys.executable, "-m", "runwatch.workers.drain_process_main"], env=env)


#: Logged once the child is about to read. NOTE: bench/throughput.py reads the CPU figure (imports and
#: connections, ~1 s once per host start): a drainer's boot is boot, not a cost per message.
READY_LOG = "drainer ready: %s from %s, batches of %d entries, booted on %.2f s of CPU"

#: How often a worker process that does not hold the host's drain lock tries to take it over
#: (and how often the holder touches the lock file: its heartbeat).
RETRY_SECONDS = 1.0
#: A holder whose heartbeat is this old is frozen (SIGSTOP, a VM pause) though alive and locking:
#: another worker process then runs a spare drainer until the holder beats again.
STALE_HOLDER_SECONDS = 10.0


def lock_path(transport: Transport, stream: str) -> Path:
    """The host's lock file for draining ``stream`` of ``transport``."""
    key = hashlib.sha256(f"{transport.identity}\0{stream}".encode()).hexdigest()[:20]
    return Path(tempfile.gettempdir()) / f"runwatch-drain-{key}.lock"


class HostDrainer:
    """Run the drainer child in whichever worker process of this host holds the drain lock."""

    def __init__(
        self,
        settings: Settings,
        transport: Transport,
        stop_event: threading.Event,
        *,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self._settings, self._transport = settings, transport
        self._stop = stop_event
        self._retry = retry_seconds
        self._path = lock_path(transport, settings.event_stream)
        self._spare_path = self._path.with_suffix(".spare.lock")
        self._fd: int | None = None
        self._spare = False  # we hold the spare lock: the holder looks frozen
        self.child: subprocess.Popen | None = None
        self.thread = threading.Thread(target=self._run, name="runwatch-drain-election", daemon=True)

    @property
    def holds_lock(self) -> bool:
        return self._fd is not None

    def start(self) -> HostDrainer:
        self.thread.start()
        return self

    def join(self, timeout_seconds: float) -> None:
        self.thread.join(timeout_seconds)

    def _run(self) -> None:
        try:
            while True:
                self._elect()
                if self._fd is not None and (self.child is None or self.child.poll() is not None):
                    if self.child is not None:
                        logger.warning("the drainer process exited with %s; starting another", self.child.returncode)
                    self.child = spawn(self._settings, self._transport)
                    if self.child is None:
                        return  # no database: spawn() said why; nothing to elect for
                if self._stop.wait(self._retry):
                    break
        finally:
            self._release()

    def _elect(self) -> None:
        if self._fd is None:
            self._fd = self._try_lock(self._path)
            if self._fd is not None:
                os.utime(self._path)  # NOTE: a heartbeat at once: the file may be an old holder's
            elif self._holder_frozen():
                self._fd = self._try_lock(self._spare_path)
                self._spare = self._fd is not None
                if self._spare:
                    logger.warning("the drain lock's holder has not beaten for %.0f s: running a spare drainer",
                                   STALE_HOLDER_SECONDS)  # fmt: skip
        elif self._spare and not self._holder_frozen():
            self._release()  # the holder is back: one drainer per host again
            self.child = None
        elif not self._spare:
            os.utime(self._path)  # the heartbeat

    def _holder_frozen(self) -> bool:
        try:
            return time.time() - self._path.stat().st_mtime > STALE_HOLDER_SECONDS
        except FileNotFoundError:
            return True

    def _release(self) -> None:
        stop(self.child)
        if self._fd is not None:
            os.close(self._fd)  # NOTE: releases the lock; another worker process takes over
            self._fd, self._spare = None, False

    def _try_lock(self, path: Path) -> int | None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        os.set_inheritable(fd, False)  # NOTE: the lock dies with this process, not with a child
        return fd


def stop(child: subprocess.Popen | None, timeout_seconds: float = 10) -> None:
    if child is None or child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout_seconds)
    except subprocess.TimeoutExpired:
        child.kill()


def main() -> None:
    from runwatch.db import engine_for
    from runwatch.errors import ConfigError
    from runwatch.exposition import serve

    from .drain_setup import drainer_and_collector

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pika").setLevel(logging.WARNING)  # NOTE: it narrates every connection at INFO
    try:
        settings = Settings.from_env()
        settings.require_database_url()
        transport = Transport.from_settings(settings)
    except ConfigError as exc:
        logger.error("drainer not started: %s", exc)
        sys.exit(2)
    parent = int(os.environ.get(_PARENT_ENV, "0"))
    engine = engine_for(settings.require_database_url(), pool_size=1)
    drainer, collector = drainer_and_collector(settings, transport, engine)
    # NOTE: one drainer per host (the election above): the host's one exposition, on a known port.
    serve(collector, port=settings.metrics_port, host=settings.metrics_host)
    stop_event = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_event.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides

    def watch_parent() -> None:
        while not stop_event.wait(1):
            if parent and os.getppid() != parent:  # reparented: the worker is gone
                stop_event.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    logger.info(READY_LOG, settings.event_stream, transport.kind, settings.drain_batch, time.process_time())
    drainer.run(stop_event, block_ms=200)
    drainer.drain_until_empty(max_seconds=5)  # what the worker shipped on its way out
