"""Rows as the healer's candidate query returns them, for ``verdicts.decide`` in unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

#: The database's now() of every row here.
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def candidate(
    status: str = "queued",
    *,
    age_seconds: float = 600,
    next_retry_at: datetime | None = None,
    time_limit_ms: int | None = None,
    redis_message_id: str | None = "r1",
) -> dict[str, Any]:
    """A live run created (and, running, started) ``age_seconds`` ago, past a 60 s deadline."""
    at = NOW - timedelta(seconds=age_seconds)
    return {
        "db_now": NOW,
        "status": status,
        "queued_stale_seconds": 60,
        "running_stale_seconds": 120,
        "threshold_source": "default",
        "created_at": at,
        "started_at": at if status == "running" else None,
        "last_progress_at": at if status == "running" else None,
        "next_retry_at": next_retry_at,
        "stale_at": at + timedelta(seconds=60),
        "worker_id": "w1" if status == "running" else None,
        "redis_message_id": redis_message_id,
        "time_limit_ms": time_limit_ms,
    }
