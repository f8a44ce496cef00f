"""The job-author API: what a tracked actor can say about its own run while it executes.

    from runwatch.workers import current_run

    @dramatiq.actor(runwatch_type="billing.sync")
    def sync(account_id):
        run = current_run()
        run.progress(processed=10, total=200)
        run.summary(created=3, updated=7)
        run.partially_succeeded("3 accounts skipped: no billing address")

Declarations take effect when the actor returns normally; an exception wins over them (the
message is retried or dead-lettered as usual).
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runwatch.events import job_text, validate_reason_code, validate_summary
from runwatch.lifecycle import Outcome

from .errors import NotInsideRun

_current: contextvars.ContextVar[Run | None] = contextvars.ContextVar("runwatch_run", default=None)


@dataclass
class Run:
    """A tracked run in progress. Obtain it with ``current_run()`` inside the actor."""

    message_id: str
    type: str
    summary_keys: frozenset[str]
    _on_progress: Callable[[Run], None]
    _meta_factory: Callable[[], dict[str, Any]]
    outcome: Outcome = Outcome.SUCCEEDED
    attempt: int = 1
    start: dict[str, Any] | None = None  # when and where this delivery started
    start_key: int | None = None  # the held-back start event's key in the shipper, until shipped or folded
    retried_at: float | None = None  # when Retries re-enqueued this delivery: its attempt had ended by then
    retry_at: float | None = None  # ... and when the retry is due
    retry_redis_message_id: str | None = None  # ... under this Redis id, in the delay queue
    failure: dict[str, Any] | None = None  # evidence of a final failure, for the dead-letter event
    operator_message: str | None = None
    counts: dict[str, float] = field(default_factory=dict)
    failure_summary: list[dict[str, str]] = field(default_factory=list)
    processed: float | None = None
    total: float | None = None
    last_progress_sent: float = 0.0
    _last_text: tuple[str, str] | None = None  # (as written, as masked): a progress loop repeats its message

    def _masked(self, text: str) -> str:
        """``text`` through the redaction layer, once per distinct text (PERF: a regex pass per call)."""
        if self._last_text is None or self._last_text[0] != text:
            self._last_text = (text, job_text(text))
        return self._last_text[1]

    @functools.cached_property
    def meta(self) -> dict[str, Any]:
        """The run's metadata (type, queue, tenant, ...), built on first use: off the hot path."""
        return self._meta_factory()

    def progress(
        self, processed: float | None = None, total: float | None = None, *, message: str | None = None
    ) -> None:
        """Report progress; extends the run's freshness (also a plain heartbeat with no args)."""
        checked = validate_summary(
            {k: v for k, v in (("processed", processed), ("total", total)) if v is not None}, ("processed", "total")
        )
        self.processed = checked.get("processed", self.processed)
        self.total = checked.get("total", self.total)
        if message is not None:
            self.operator_message = self._masked(message)
        self._on_progress(self)

    def summary(self, counts: Mapping[str, float] | None = None, /, **more: float) -> None:
        """Set summary counts (merged with earlier ones); unknown keys raise ``InvalidSummary``."""
        self.counts.update(validate_summary({**(counts or {}), **more}, self.summary_keys))

    def message(self, text: str) -> None:
        """Set the operator-safe one-line message shown on monitoring surfaces."""
        self.operator_message = self._masked(text)

    def partially_succeeded(self, message: str | None = None, **counts: float) -> None:
        """Declare that only part of the work was done; say what in counts and a message."""
        self.summary(counts)
        self._declare(Outcome.PARTIALLY_SUCCEEDED, message)

    def block(self, reason_code: str, message: str) -> None:
        """Declare a deliberate refusal (missing precondition, not entitled, tenant not operable)."""
        self._declare(Outcome.BLOCKED, message, reason_code)

    def fail(self, code: str, message: str) -> None:
        """Declare a business failure the job handled itself: recorded as failed, message acked."""
        self._declare(Outcome.FAILED, message, code)

    def _declare(self, outcome: Outcome, message: str | None, code: str | None = None) -> None:
        if message is not None:
            self.operator_message = job_text(message)
        if code is not None:
            self.failure_summary = [{"code": validate_reason_code(code), "message": job_text(message or "")}]
        self.outcome = outcome

    def due_for_progress(self, interval_seconds: float) -> bool:
        now = time.monotonic()
        if now - self.last_progress_sent < interval_seconds:
            return False
        self.last_progress_sent = now
        return True


def current_run() -> Run:
    """The run of the message this thread is processing; raises ``NotInsideRun`` elsewhere."""
    run = _current.get()
    if run is None:
        raise NotInsideRun("current_run() is only available inside a tracked actor while it runs")
    return run


def active(message_id: str) -> Run | None:
    """The run this thread is processing, if it is the delivery of ``message_id``."""
    run = _current.get()
    return run if run is not None and run.message_id == message_id else None


def enter(run: Run) -> contextvars.Token[Run | None]:
    return _current.set(run)


def leave() -> None:
    _current.set(None)
