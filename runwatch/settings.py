"""Settings read from ``RUNWATCH_*`` environment variables, with documented defaults.

Every variable is listed in the README's configuration table; keep the two in step.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

#: A queued run older than this (and not found in the broker) is likely stale.
DEFAULT_QUEUED_STALE_SECONDS = 3600
#: A running run with no progress for this long is likely stale.
DEFAULT_RUNNING_STALE_SECONDS = 900
#: The Redis stream the recorder appends run events to before the ack.
DEFAULT_EVENT_STREAM = "runwatch:events"
#: How long buffered, non-urgent events (queued, started, progress) wait before shipping.
DEFAULT_FLUSH_INTERVAL_MS = 50
#: How long a worker thread waits for its outcome event to reach Redis before acking anyway.
DEFAULT_DURABLE_WAIT_MS = 2000
#: Events held in memory per process while Redis is unreachable; beyond that the oldest are dropped.
DEFAULT_BUFFER_MAX_EVENTS = 100_000
#: Stream entries the drainer applies to PostgreSQL per transaction (each holds at most
#: ``MAX_EVENTS_PER_ENTRY`` events; under load entries are small, one per group commit).
DEFAULT_DRAIN_BATCH = 50
MAX_EVENTS_PER_ENTRY = 100
#: Where run events are applied: a child process of each worker, a thread in it, or elsewhere.
DRAIN_MODES = ("process", "thread", "external")
#: Stream entries a drainer read but did not acknowledge (it died) are claimed by another after this.
DEFAULT_DRAIN_CLAIM_IDLE_MS = 60_000
#: Seconds between maintenance passes (healer + dead-letter scan) in each worker process; 0 disables.
DEFAULT_HEAL_INTERVAL_SECONDS = 30
#: Minimum gap between two progress events of the same run (the latest values always win).
DEFAULT_PROGRESS_INTERVAL_MS = 1000


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of key names (letters, digits, ``_ - .`` and inner spaces)."""
    names = tuple(n.strip() for n in (env.get(name) or "").split(",") if n.strip())
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z0-9_.\- ]+", n)]
    if bad:
        raise ConfigError(f"{name} must be comma-separated key names (letters, digits, _ - .), got {bad[0]!r}")
    return names


def normalize_database_url(url: str) -> str:
    """Make SQLAlchemy use psycopg 3 for plain ``postgresql://`` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass(frozen=True, kw_only=True)
class Settings:
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path | None = None
    thresholds_file: Path | None = None
    queued_stale_seconds: int = DEFAULT_QUEUED_STALE_SECONDS
    running_stale_seconds: int = DEFAULT_RUNNING_STALE_SECONDS
    event_stream: str = DEFAULT_EVENT_STREAM
    flush_interval_ms: int = DEFAULT_FLUSH_INTERVAL_MS
    durable_wait_ms: int = DEFAULT_DURABLE_WAIT_MS
    buffer_max_events: int = DEFAULT_BUFFER_MAX_EVENTS
    drain_batch: int = DEFAULT_DRAIN_BATCH
    drain_claim_idle_ms: int = DEFAULT_DRAIN_CLAIM_IDLE_MS
    progress_interval_ms: int = DEFAULT_PROGRESS_INTERVAL_MS
    drain_mode: str = "process"  # process | thread | external
    heal_interval_seconds: int = DEFAULT_HEAL_INTERVAL_SECONDS
    max_crash_redeliveries: int = 3
    crash_window_seconds: int = 3600
    outage_grace_seconds: int = 120
    ceiling_margin_seconds: int = 60
    heartbeat_timeout_ms: int = 60_000
    redact_keys: tuple[str, ...] = ()  # key names masked beyond runwatch.redact.DEFAULT_KEYS
    redact_hook: str | None = None  # package.module:function, str -> str, run after the built-in rules
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        db = env.get("RUNWATCH_DATABASE_URL") or None
        data_dir = env.get("RUNWATCH_DATA_DIR")
        thresholds = env.get("RUNWATCH_THRESHOLDS_FILE")
        drain_mode = env.get("RUNWATCH_DRAIN") or "process"
        if drain_mode not in DRAIN_MODES:
            raise ConfigError(f"RUNWATCH_DRAIN must be one of {', '.join(DRAIN_MODES)}, got {drain_mode!r}")
        return cls(
            database_url=normalize_database_url(db) if db else None,
            redis_url=env.get("RUNWATCH_REDIS_URL") or None,
            data_dir=Path(data_dir) if data_dir else None,
            thresholds_file=Path(thresholds) if thresholds else None,
            queued_stale_seconds=_int(env, "RUNWATCH_QUEUED_STALE_SECONDS", DEFAULT_QUEUED_STALE_SECONDS, minimum=1),
            running_stale_seconds=_int(env, "RUNWATCH_RUNNING_STALE_SECONDS", DEFAULT_RUNNING_STALE_SECONDS, minimum=1),
            event_stream=env.get("RUNWATCH_EVENT_STREAM") or DEFAULT_EVENT_STREAM,
            flush_interval_ms=_int(env, "RUNWATCH_FLUSH_INTERVAL_MS", DEFAULT_FLUSH_INTERVAL_MS, minimum=1),
            durable_wait_ms=_int(env, "RUNWATCH_DURABLE_WAIT_MS", DEFAULT_DURABLE_WAIT_MS),
            buffer_max_events=_int(env, "RUNWATCH_BUFFER_MAX_EVENTS", DEFAULT_BUFFER_MAX_EVENTS, minimum=100),
            drain_batch=_int(env, "RUNWATCH_DRAIN_BATCH", DEFAULT_DRAIN_BATCH, minimum=1),
            drain_claim_idle_ms=_int(env, "RUNWATCH_DRAIN_CLAIM_IDLE_MS", DEFAULT_DRAIN_CLAIM_IDLE_MS, minimum=100),
            progress_interval_ms=_int(env, "RUNWATCH_PROGRESS_INTERVAL_MS", DEFAULT_PROGRESS_INTERVAL_MS),
            drain_mode=drain_mode,
            heal_interval_seconds=_int(env, "RUNWATCH_HEAL_INTERVAL_SECONDS", DEFAULT_HEAL_INTERVAL_SECONDS),
            max_crash_redeliveries=_int(env, "RUNWATCH_MAX_CRASH_REDELIVERIES", 3, minimum=1),
            crash_window_seconds=_int(env, "RUNWATCH_CRASH_WINDOW_SECONDS", 3600, minimum=1),
            outage_grace_seconds=_int(env, "RUNWATCH_OUTAGE_GRACE_SECONDS", 120),
            ceiling_margin_seconds=_int(env, "RUNWATCH_CEILING_MARGIN_SECONDS", 60),
            heartbeat_timeout_ms=_int(env, "RUNWATCH_HEARTBEAT_TIMEOUT_MS", 60_000, minimum=1),
            redact_keys=_names(env, "RUNWATCH_REDACT_KEYS"),
            redact_hook=env.get("RUNWATCH_REDACT_HOOK") or None,
        )

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigError(
                "RUNWATCH_DATABASE_URL is not set (e.g. postgresql://user@host:5432/runwatch); "
                "`runwatch demo` starts an embedded PostgreSQL when nothing is configured"
            )
        return self.database_url
