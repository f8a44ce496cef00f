"""The drainer as a child process of each worker process (``RUNWATCH_DRAIN=process``, the default).

Applying events to PostgreSQL is CPU work (decode, fold, encode); in a thread it competes for
the worker's GIL. A child process runs it on another core. The child exits when its parent
does (SIGKILL included: it watches its parent pid), after a last drain on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING
from urllib.parse import quote

import redis

if TYPE_CHECKING:
    from .middleware import Recorder

logger = logging.getLogger("runwatch.drainer")
_PARENT_ENV = "RW_DRAIN_PARENT_PID"


def redis_url_of(client: redis.Redis) -> str:
    """A URL for the connection ``client`` uses, so the child reaches the same Redis."""
    kw = client.connection_pool.connection_kwargs
    auth = ""
    if kw.get("password"):
        auth = f"{quote(kw.get('username') or '')}:{quote(kw['password'])}@"
    if kw.get("path"):
        return f"unix://{auth}{kw['path']}?db={kw.get('db', 0)}"
    scheme = "rediss" if kw.get("ssl") else "redis"
    return f"{scheme}://{auth}{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"


def spawn(recorder: Recorder) -> subprocess.Popen | None:
    settings = recorder.settings
    if not settings.database_url:
        logger.error(
            "RUNWATCH_DATABASE_URL is not set: run events wait in the Redis stream %r until a drainer "
            "with a database runs (`runwatch drain`)",
            settings.event_stream,
        )
        return None
    # NOTE: the child gets the worker's settings, not the inherited RUNWATCH_* variables: they
    # differ when the settings were given to install() in code (thresholds, stream, ...).
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RUNWATCH_")},
        **settings.as_env(),
        "RUNWATCH_REDIS_URL": redis_url_of(recorder.shipper.client),
        _PARENT_ENV: str(os.getpid()),
    }
    return subprocess.Popen([sys.executable, "-m", "runwatch.workers.drain_process"], env=env)


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
    from runwatch.settings import Settings
    from runwatch.thresholds import ThresholdPolicy

    from .drainer import Drainer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        settings.require_database_url()
    except ConfigError as exc:
        logger.error("drainer not started: %s", exc)
        sys.exit(2)
    parent = int(os.environ.get(_PARENT_ENV, "0"))
    drainer = Drainer(
        redis.Redis.from_url(settings.redis_url),
        engine_for(settings.require_database_url(), pool_size=1),
        ThresholdPolicy(settings),
        stream=settings.event_stream,
        batch_entries=settings.drain_batch,
        claim_idle_ms=settings.drain_claim_idle_ms,
    )
    stop_event = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_event.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides

    def watch_parent() -> None:
        while not stop_event.wait(1):
            if parent and os.getppid() != parent:  # reparented: the worker is gone
                stop_event.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    drainer.run(stop_event, block_ms=200)
    drainer.drain_until_empty(max_seconds=5)  # what the worker shipped on its way out


if __name__ == "__main__":
    main()
