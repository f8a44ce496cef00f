"""The poison-pill gate: refuse a redelivered message that keeps crashing its workers (RabbitMQ).

On Redis the healer dead-letters a crash-looping message while it waits in its queue
(``runwatch.poison``). RabbitMQ cannot take a message out of a queue by id, but it tells the
worker when a delivery is a redelivery (``message.redelivered``: a consumer died holding it).
Only then does the gate ask the ledger, in one short read under a statement timeout, whether
the run was delivered ``max_crash_redeliveries`` more times than attempted within
``crash_window_seconds``: the healer's own rule (``statements.POISON_PILL``). The recorder then
fails the delivery (``message.fail()``, ``SkipMessage``) and RabbitMQ dead-letters it.

It never raises and never makes a job wait long: on any error it lets the message run, and
leaves the ledger unasked for ``backoff_seconds`` so that an outage costs one timeout, not one
per redelivery.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from dramatiq.middleware import SkipMessage
from sqlalchemy import Engine

from runwatch import statements as sql
from runwatch.burstlog import BurstLogger
from runwatch.settings import DEFAULT_CRASH_WINDOW_SECONDS, DEFAULT_MAX_CRASH_REDELIVERIES, Settings

logger = logging.getLogger("runwatch.poison_gate")
#: The ledger read is an index lookup; past this it is not worth holding a job for.
DEFAULT_STATEMENT_TIMEOUT_MS = 500
#: After an error (PostgreSQL down or slow), redeliveries run unasked this long.
DEFAULT_BACKOFF_SECONDS = 30.0


class PoisonGate:
    """Decides, per redelivered message, whether it is a poison pill; ``engine=None`` never refuses."""

    def __init__(
        self,
        engine: Engine | None,
        *,
        max_crash_redeliveries: int = DEFAULT_MAX_CRASH_REDELIVERIES,
        crash_window_seconds: float = DEFAULT_CRASH_WINDOW_SECONDS,
        statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
        backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
    ) -> None:
        self._engine = engine
        self._params = {"window": crash_window_seconds, "max_crash": max_crash_redeliveries}
        self._timeout_ms = str(int(statement_timeout_ms))
        self._backoff_seconds = backoff_seconds
        self._quiet_until = 0.0
        self._errors = BurstLogger(logger, "poison gate could not ask the ledger; redeliveries run unchecked")

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine | None) -> PoisonGate:
        return cls(
            engine,
            max_crash_redeliveries=settings.max_crash_redeliveries,
            crash_window_seconds=settings.crash_window_seconds,
        )

    @classmethod
    def for_worker(cls, settings: Settings) -> PoisonGate:
        """The gate of a RabbitMQ worker process: over the ledger when it has one (else it never refuses)."""
        if not settings.database_url:
            return cls.from_settings(settings, None)
        from runwatch.db import engine_for

        return cls.from_settings(settings, engine_for(settings.database_url, pool_size=1))

    def stop(self, message: Any, run: Any) -> None:
        """Fail a poison pill's delivery (``run`` is the recorder's): Dramatiq nacks it into
        ``<queue>.XQ`` and the recorder's ``after_nack`` ends the run with this evidence."""
        poison = self.evidence(message)
        if poison is None:
            return
        text = "poison pill: refused on redelivery after repeated worker crashes"
        run.failure = {"exception_type": "SkipMessage", "exception_message": text, **poison, "skipped": True}
        message.fail()
        raise SkipMessage(text)

    def refuse(self, message: Any) -> bool:
        """True: fail this delivery (a poison pill). Only redeliveries are checked."""
        return self.evidence(message) is not None

    def evidence(self, message: Any) -> dict[str, Any] | None:
        """Why this delivery is refused (the healer's poison-pill evidence), or None to let it run."""
        if self._engine is None or not getattr(message, "redelivered", False):
            return None
        if time.monotonic() < self._quiet_until:
            return None
        try:
            with self._engine.begin() as conn:
                conn.execute(sql.LOCAL_STATEMENT_TIMEOUT, {"ms": self._timeout_ms})
                found = conn.execute(sql.POISON_PILL, {**self._params, "message_id": message.message_id}).first()
        except Exception as exc:  # NOTE: a gate that cannot ask lets the job run; never fails it
            self._quiet_until = time.monotonic() + self._backoff_seconds
            self._errors.failure(exc)
            return None
        self._errors.success()
        if found is None:
            return None
        row = found._mapping
        return {
            "poison_pill": True,
            "redelivered": True,
            "crash_redeliveries": row["deliveries"] - row["attempts"],
            "max_crash_redeliveries": self._params["max_crash"],
            "window_seconds": self._params["window"],
            "attempts": row["attempts"],
            "deliveries": row["deliveries"],
            "starts_in_window": row["starts"],
        }
