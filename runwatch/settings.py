"""Settings read from ``RUNWATCH_*`` environment variables, with documented defaults.

Each default is defined once, here, as a ``DEFAULT_*`` constant; each variable once, in
``runwatch.variables``. ``Settings.from_env`` parses every variable of that table (a malformed
value is a ``ConfigError`` naming the variable and the form it takes), and the README's
configuration table is printed from the same table (``runwatch config --markdown``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .parsers import normalize_database_url as normalize_database_url
from .variables import BY_NAME, NOT_SETTINGS, PREFIX, RETENTION_OUTCOMES, VARIABLES, Variable, closest
from .variables import DRAIN_MODES as DRAIN_MODES

logger = logging.getLogger("runwatch.settings")

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
#: Where run events are applied (one of ``DRAIN_MODES``): a child process of each worker process.
DEFAULT_DRAIN_MODE = "process"
#: Stream entries a drainer read but did not acknowledge (it died) are claimed by another after this.
DEFAULT_DRAIN_CLAIM_IDLE_MS = 60_000
#: Seconds between maintenance passes (healer + dead-letter scan) in each worker process; 0 disables.
DEFAULT_HEAL_INTERVAL_SECONDS = 30
#: Minimum gap between two progress events of the same run (the latest values always win).
DEFAULT_PROGRESS_INTERVAL_MS = 1000
#: A message delivered this many times more than it was attempted is a poison pill (crash loop)...
DEFAULT_MAX_CRASH_REDELIVERIES = 3
#: ... counting the deliveries of this window only.
DEFAULT_CRASH_WINDOW_SECONDS = 3600
#: After a pass could not reach the broker, wait this long before reconciling again.
DEFAULT_OUTAGE_GRACE_SECONDS = 120
#: A live worker may hold a run this long past its time limit before the healer stops believing it.
DEFAULT_CEILING_MARGIN_SECONDS = 60
#: Dramatiq's Redis broker default: a worker silent this long is dead (and its messages requeued).
DEFAULT_HEARTBEAT_TIMEOUT_MS = 60_000
#: Terminal runs (and their events) older than this many days are pruned, per outcome.
DEFAULT_RETENTION_DAYS = 90
#: Where worker hosts' drainers, ``runwatch drain`` and ``runwatch heal`` serve /metrics (Dramatiq's
#: own Prometheus middleware takes 9191, its documented neighbours 9192-9194 are left free).
DEFAULT_METRICS_PORT = 9195
DEFAULT_METRICS_HOST = "0.0.0.0"  # NOTE: a scraper reaches a container from outside it
#: Where the monitoring API listens.
DEFAULT_API_BIND = "127.0.0.1:8000"
#: gunicorn worker processes of the API (sync workers: one request at a time each).
DEFAULT_API_WORKERS = 2
#: An API worker silent this long is killed and replaced by gunicorn.
DEFAULT_API_TIMEOUT_SECONDS = 30
#: How long a token lookup is trusted: revocation takes effect within this many seconds.
DEFAULT_API_TOKEN_CACHE_SECONDS = 5.0
#: An API read that takes longer than this is cancelled by PostgreSQL rather than piling up.
DEFAULT_API_STATEMENT_TIMEOUT_MS = 5000
#: gunicorn's log level for the API.
DEFAULT_API_LOG_LEVEL = "info"
#: A console sign-in lasts this long (then the browser signs in again).
DEFAULT_CONSOLE_SESSION_SECONDS = 8 * 3600


def _default_retention_days() -> dict[str, int]:
    return dict.fromkeys(RETENTION_OUTCOMES, DEFAULT_RETENTION_DAYS)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every ``RUNWATCH_*`` setting; build it with ``from_env`` or with keywords (tests, embedding)."""

    database_url: str | None = None
    redis_url: str | None = None
    rabbitmq_url: str | None = None
    rabbitmq_management_url: str | None = None
    broker: str | None = None  # one of BROKERS; None: inferred (``broker_kind``)
    event_transport: str | None = None  # one of BROKERS; None: the broker's own
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
    drain_mode: str = DEFAULT_DRAIN_MODE  # one of DRAIN_MODES
    heal_interval_seconds: int = DEFAULT_HEAL_INTERVAL_SECONDS
    max_crash_redeliveries: int = DEFAULT_MAX_CRASH_REDELIVERIES
    crash_window_seconds: int = DEFAULT_CRASH_WINDOW_SECONDS
    outage_grace_seconds: int = DEFAULT_OUTAGE_GRACE_SECONDS
    ceiling_margin_seconds: int = DEFAULT_CEILING_MARGIN_SECONDS
    heartbeat_timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS
    metrics_port: int = DEFAULT_METRICS_PORT
    metrics_host: str = DEFAULT_METRICS_HOST
    #: Days to keep terminal runs, by outcome value (``"failed"``, ...).
    retention_days: Mapping[str, int] = field(default_factory=_default_retention_days)
    #: Key names masked beyond the default denylist, and an optional ``module:function`` hook.
    redact_keys: tuple[str, ...] = ()
    redact_hook: str | None = None
    api_bind: str = DEFAULT_API_BIND
    api_workers: int = DEFAULT_API_WORKERS
    api_timeout_seconds: int = DEFAULT_API_TIMEOUT_SECONDS
    api_secret: str | None = field(default=None, repr=False)  # APPSEC: never in a log line
    api_token_cache_seconds: float = DEFAULT_API_TOKEN_CACHE_SECONDS
    api_statement_timeout_ms: int = DEFAULT_API_STATEMENT_TIMEOUT_MS
    api_access_log: str | None = None
    api_log_level: str = DEFAULT_API_LOG_LEVEL
    console_session_seconds: int = DEFAULT_CONSOLE_SESSION_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Parse every variable of ``env`` (default ``os.environ``); blank means unset.

        Raises one ``ConfigError`` naming every malformed variable; unknown ``RUNWATCH_*`` names
        are logged (once per process) with the setting they were probably meant to be.
        """
        env = os.environ if env is None else env
        _warn_unknown(env)
        values: dict[str, Any] = {}
        errors = []
        for var in VARIABLES:
            raw = (env.get(var.name) or "").strip()
            if not raw:
                continue
            try:
                value = var.parser.parse(raw)
            except ValueError:
                errors.append(malformed(var, raw))
                continue
            if var.keys:  # NOTE: later rows (per outcome) override earlier ones (all outcomes)
                value = {**values.get(var.field, default_of_field(var.field)), **dict.fromkeys(var.keys, value)}
            values[var.field] = value
        if errors:
            raise ConfigError("; ".join(errors))
        return cls(**values)

    def as_env(self) -> dict[str, str]:
        """The variables that make ``from_env`` rebuild these settings (for a child process)."""
        env = {}
        for var in VARIABLES:
            value = getattr(self, var.field)
            if var.keys:
                if len(var.keys) != 1:
                    continue  # the per-key rows carry every value
                value = value.get(var.keys[0])
            if value is not None and value != ():
                env[var.name] = var.parser.format(value)
        return env

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigError(
                "RUNWATCH_DATABASE_URL is not set (e.g. postgresql://user@host:5432/runwatch); "
                "`runwatch demo` starts an embedded PostgreSQL when nothing is configured"
            )
        return self.database_url

    @property
    def broker_kind(self) -> str:
        """The broker the CLI talks to: ``RUNWATCH_BROKER``, else RabbitMQ when only its URL is set."""
        if self.broker:
            return self.broker
        return "rabbitmq" if self.rabbitmq_url and not self.redis_url else "redis"

    def transport_for(self, broker_kind: str) -> str:
        """Where run events travel for a broker of ``broker_kind``: ``RUNWATCH_EVENT_TRANSPORT``, else that broker."""
        return self.event_transport or broker_kind

    def require_rabbitmq_url(self) -> str:
        if not self.rabbitmq_url:
            raise ConfigError(
                "RUNWATCH_RABBITMQ_URL is not set (the RabbitMQ your Dramatiq broker uses, "
                "e.g. amqp://guest:guest@127.0.0.1:5672/%2F)"
            )
        return self.rabbitmq_url

    def require_redis_url(self) -> str:
        if not self.redis_url:
            raise ConfigError("RUNWATCH_REDIS_URL is not set (the Redis your Dramatiq broker uses)")
        return self.redis_url


def default_of_field(name: str) -> Any:
    """The default of the ``Settings`` field ``name`` (a fresh copy for a mapping)."""
    spec = Settings.__dataclass_fields__[name]
    return spec.default_factory() if spec.default_factory is not MISSING else spec.default


def default_of(var: Variable) -> Any:
    """What ``var`` is when it is unset."""
    value = default_of_field(var.field)
    return value[var.keys[0]] if var.keys else value


def malformed(var: Variable, raw: str) -> str:
    """``RUNWATCH_X must be <form> (e.g. <example>), got '<value>'``: never echoes a secret."""
    shown = "a value that is not shown (secret)" if var.secret else repr(_clip(var.parser.mask(raw)))
    example = var.example if var.example is not None else var.parser.example
    if example is None and default_of(var) is not None:
        example = var.parser.format(default_of(var))
    return f"{var.name} must be {var.parser.expected}{f' (e.g. {example})' if example else ''}, got {shown}"


def unknown_variables(env: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``RUNWATCH_*`` names in ``env`` that set nothing, each with the closest known name (or None)."""
    return [
        (name, closest(name))
        for name in sorted(env)
        if name.startswith(PREFIX) and name not in BY_NAME and name not in NOT_SETTINGS
    ]


def unknown_message(name: str, guess: str | None) -> str:
    hint = f"did you mean {guess}?" if guess else "`runwatch config` lists the settings"
    return f"{name} is not a Runwatch setting and is ignored; {hint}"


_warned: set[str] = set()


def _warn_unknown(env: Mapping[str, str]) -> None:
    # NOTE: a warning, not an error: an unknown name may belong to a newer Runwatch, or to a test.
    for name, guess in unknown_variables(env):
        if name not in _warned:
            _warned.add(name)
            logger.warning(unknown_message(name, guess))


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
