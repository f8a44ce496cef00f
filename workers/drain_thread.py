"""The drainer as a daemon thread inside each worker process (``RUNWATCH_DRAIN=thread``; the default is a process)."""

from __future__ import annotations

import logging
import threading

from runwatch.db import engine_for
from runwatch.settings import Settings

from .drain_setup import drainer_and_collector
from .transport import Transport

logger = logging.getLogger("runwatch.drainer")


def start_drain_thread(settings: Settings, transport: Transport, stop: threading.Event) -> threading.Thread | None:
    if not settings.database_url:
        logger.error(
            "RUNWATCH_DATABASE_URL is not set: run events are kept in %r until a drainer with a database "
            "runs (`runwatch drain`)",
            settings.event_stream,
        )
        return None
    drainer, _ = drainer_and_collector(settings, transport, engine_for(settings.database_url, pool_size=1))
    thread = threading.Thread(target=drainer.run, args=(stop,), name="runwatch-drainer", daemon=True)
    thread.start()
    return thread
