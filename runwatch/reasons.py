"""The reconciliation sources and reason-code catalogue of docs/design.md §4."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Source(enum.StrEnum):
    FAILED_CALLBACK = "failed_callback"
    SCHEDULED_RECONCILER = "scheduled_reconciler"
    ADAPTER_RECONCILER = "adapter_reconciler"


@dataclass(frozen=True)
class Reason:
    code: str
    message: str  # operator-safe: never exception text
    source: Source


QUEUE_FAILURE_BRIDGE = Reason("run.queue_failure_bridge", "Queue failure was reconciled", Source.FAILED_CALLBACK)
INFRASTRUCTURE_ENDED = Reason(
    "run.infrastructure_timeout_or_abandonment", "Infrastructure ended the run", Source.FAILED_CALLBACK
)
STALE_QUEUED = Reason("run.stale_queued", "Run never started", Source.SCHEDULED_RECONCILER)
STALE_RUNNING = Reason("run.stale_running", "Run stopped reporting progress", Source.SCHEDULED_RECONCILER)
ADAPTER_OUT_OF_SYNC = Reason(
    "run.adapter_out_of_sync", "Lifecycle was reconciled from related records", Source.ADAPTER_RECONCILER
)

CATALOGUE: dict[str, Reason] = {
    r.code: r for r in (QUEUE_FAILURE_BRIDGE, INFRASTRUCTURE_ENDED, STALE_QUEUED, STALE_RUNNING, ADAPTER_OUT_OF_SYNC)
}

#: Exception type names that mean the infrastructure, not the job, ended the run.
INFRASTRUCTURE_EXCEPTIONS = frozenset({"TimeLimitExceeded", "Shutdown", "AgeLimitExceeded", "SkipMessage"})


def dead_letter_reason(exception_type: str | None, *, skipped: bool = False) -> Reason:
    """Pick the failure-callback reason for a dead-lettered message."""
    if skipped or exception_type in INFRASTRUCTURE_EXCEPTIONS:
        return INFRASTRUCTURE_ENDED
    return QUEUE_FAILURE_BRIDGE
