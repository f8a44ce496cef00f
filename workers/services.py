"""The recorder's background services in a worker process: the drainer and the maintenance thread.

Started once the worker has booted and stopped when it shuts down (the recorder's hooks call
``start`` and ``Services.shutdown``). The drainer runs as ``RUNWATCH_DRAIN`` says: a child process
per host (``process``, elected among the host's worker processes), a thread per worker process
(``thread``), or elsewhere (``external``: ``runwatch drain``).
"""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass, field

import dramatiq

from runwatch.settings import Settings

from .drain_process import HostDrainer
from .drain_thread import start_drain_thread
from .maintenance import start_thread
from .transport import Transport

#: How long a worker's shutdown waits for the maintenance pass in progress (a heal pass takes
#: milliseconds, a prune of a big backlog longer); past it, the process exits and PostgreSQL rolls
#: the pass back, which the next one redoes.
MAINTENANCE_JOIN_SECONDS = 10.0


@dataclass
class Services:
    """What ``start`` started, and the event that stops all of it."""

    stop: threading.Event = field(default_factory=threading.Event)
    drain_thread: threading.Thread | None = None
    host_drainer: HostDrainer | None = None
    maintenance_thread: threading.Thread | None = None

    @property
    def drain_process(self) -> subprocess.Popen | None:
        """The drainer child this process runs (None unless it holds the host's drain lock)."""
        return self.host_drainer.child if self.host_drainer is not None else None

    def shutdown(self) -> None:
        """Stop every service; wait a bounded time for the drainer (its last drain) and for the
        maintenance pass in progress, so that nothing writes to the ledger once this returned."""
        self.stop.set()
        if self.drain_thread is not None:
            self.drain_thread.join(timeout=10)
        if self.host_drainer is not None:
            self.host_drainer.join(timeout_seconds=15)
        if self.maintenance_thread is not None:
            self.maintenance_thread.join(timeout=MAINTENANCE_JOIN_SECONDS)


def start(settings: Settings, transport: Transport, namespace: str, *, broker: dramatiq.Broker) -> Services:
    """Start the drainer (by ``settings.drain_mode``) over ``transport`` and the maintenance thread
    over the worker's ``broker`` (its dead letters and healer evidence)."""
    services = Services()
    if settings.drain_mode == "process":
        services.host_drainer = HostDrainer(settings, transport, services.stop).start()
    elif settings.drain_mode == "thread":
        services.drain_thread = start_drain_thread(settings, transport, services.stop)
    services.maintenance_thread = start_thread(
        transport.redis_client, settings, namespace, services.stop, broker=broker
    )
    return services
