"""The drainer as a daemon thread inside each worker process (``RUNWATCH_DRAIN=thread``; the default is a process)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from runwatch.db import engine_for
from runwatch.thresholds import ThresholdPolicy

from .drainer import Drainer

if TYPE_CHECKING:
    from .middleware import Recorder

logger = logging.getLogger("runwatch.drainer")


def start_drain_thread(recorder: Recorder, stop: threading.Event) -> threading.Thread | None:
    settings = recorder.settings
    if not settings.database_url:
        logger.error(
            "RUNWATCH_DATABASE_URL is not set: run events are kept in the Redis stream %r until a "
            "drainer with a database runs (`runwatch drain`)",
            settings.event_stream,
        )
        return None
    drainer = Drainer(
        recorder.shipper.client,
        engine_for(settings.database_url, pool_size=1),
        ThresholdPolicy(settings),
        stream=settings.event_stream,
        batch_entries=settings.drain_batch,
        claim_idle_ms=settings.drain_claim_idle_ms,
    )
    thread = threading.Thread(target=drainer.run, args=(stop,), name="runwatch-drainer", daemon=True)
    thread.start()
    return thread
