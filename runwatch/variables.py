"""The table of ``RUNWATCH_*`` variables: the one place that says what each one sets and accepts.

``Settings.from_env`` parses the environment with it, ``runwatch config`` shows the values with
it, and ``runwatch config --markdown`` prints the README's configuration table from it. Defaults
are not repeated here: they are the ``Settings`` field defaults (``DEFAULT_*`` in ``settings``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from . import parsers as p
from .lifecycle import TERMINAL_OUTCOMES

PREFIX = "RUNWATCH_"
#: Where run events are applied: a child process of each worker, a thread in it, or elsewhere.
DRAIN_MODES = ("process", "thread", "external")
#: The Dramatiq brokers Runwatch serves; also where run events can travel.
BROKERS = ("redis", "rabbitmq")
#: gunicorn's log levels.
API_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class Variable:
    name: str
    field: str  # the Settings field it sets
    parser: p.Parser
    meaning: str  # one line, Markdown
    keys: tuple[str, ...] = ()  # for a mapping field: the keys it sets (later rows override earlier ones)
    default_text: str | None = None  # when the default is not a plain value
    secret: bool = False  # never shown, not even in an error message
    example: str | None = None  # overrides the parser's example


#: Outcomes a terminal run can have, the keys of ``Settings.retention_days``.
RETENTION_OUTCOMES = tuple(sorted(o.value for o in TERMINAL_OUTCOMES))

_RETENTION_PER_OUTCOME = tuple(
    Variable(
        f"RUNWATCH_RETENTION_DAYS_{outcome.upper()}",
        "retention_days",
        p.integer(minimum=1),
        f"days to keep `{outcome}` runs (overrides `RUNWATCH_RETENTION_DAYS`)",
        keys=(outcome,),
        default_text="`RUNWATCH_RETENTION_DAYS`",
    )
    for outcome in RETENTION_OUTCOMES
)

VARIABLES: tuple[Variable, ...] = (
    Variable(
        "RUNWATCH_DATABASE_URL", "database_url", p.POSTGRES_URL,
        "PostgreSQL URL of the ledger; `postgresql://` URLs use psycopg 3",
        default_text="unset (`runwatch demo` and the tests start an embedded server)",
    ),
    Variable(
        "RUNWATCH_REDIS_URL", "redis_url", p.REDIS_URL,
        "your Dramatiq broker's Redis, for `redis_broker()`, the CLI (`drain`, `heal`, `deadletters`) and the "
        "API's readiness probe; `install()` uses the broker's own connection",
        default_text="unset (`runwatch demo` and the tests start an embedded server)",
    ),
    Variable(
        "RUNWATCH_RABBITMQ_URL", "rabbitmq_url", p.AMQP_URL,
        "your Dramatiq broker's RabbitMQ, for `rabbitmq_broker()`, the CLI and drainers; `install()` uses the "
        "broker's own connection parameters",
    ),
    Variable(
        "RUNWATCH_RABBITMQ_MANAGEMENT_URL", "rabbitmq_management_url", p.HTTP_URL,
        "RabbitMQ's management API, when its plugin is enabled: the healer then also sees messages held "
        "unacknowledged (without it, queue depth and time alone)",
    ),
    Variable(
        "RUNWATCH_BROKER", "broker", p.choice(*BROKERS),
        "the broker the CLI (`heal`, `deadletters`, `bridge`, `drain`) and the API's readiness probe talk to",
        default_text="`rabbitmq` when only `RUNWATCH_RABBITMQ_URL` is set, else `redis`",
    ),
    Variable(
        "RUNWATCH_EVENT_TRANSPORT", "event_transport", p.choice(*BROKERS),
        "where run events travel to the drainer: a Redis stream, or a durable RabbitMQ queue",
        default_text="the broker's own (`rabbitmq` on a RabbitMQ broker: no Redis needed)",
    ),
    Variable(
        "RUNWATCH_DATA_DIR", "data_dir", p.PATH, "where the embedded servers (`runwatch demo`) keep their data",
        default_text="`$XDG_DATA_HOME/runwatch` or `~/.local/share/runwatch`",
    ),
    Variable("RUNWATCH_THRESHOLDS_FILE", "thresholds_file", p.PATH, "TOML file with per-type thresholds",
             example="/etc/runwatch/thresholds.toml"),
    Variable("RUNWATCH_QUEUED_STALE_SECONDS", "queued_stale_seconds", p.integer(minimum=1),
             "global queued threshold: queued this long (and not in the broker) is likely stale"),
    Variable("RUNWATCH_RUNNING_STALE_SECONDS", "running_stale_seconds", p.integer(minimum=1),
             "global running threshold: no progress this long is likely stale"),
    Variable("RUNWATCH_EVENT_STREAM", "event_stream", p.TEXT, "Redis stream (or RabbitMQ queue) of run events"),
    Variable("RUNWATCH_FLUSH_INTERVAL_MS", "flush_interval_ms", p.integer(minimum=1),
             "how long non-urgent events (queued, started, progress) wait in the process buffer"),
    Variable("RUNWATCH_DURABLE_WAIT_MS", "durable_wait_ms", p.integer(minimum=0),
             "how long a worker waits for its outcome to reach Redis before acking anyway"),
    Variable("RUNWATCH_BUFFER_MAX_EVENTS", "buffer_max_events", p.integer(minimum=100),
             "per-process buffer bound while Redis is unreachable (the oldest non-outcome events go first)"),
    Variable("RUNWATCH_PROGRESS_INTERVAL_MS", "progress_interval_ms", p.integer(minimum=0),
             "minimum gap between two progress events of a run (the latest values always win)"),
    Variable(
        "RUNWATCH_DRAIN", "drain_mode", p.choice(*DRAIN_MODES),
        "where events are applied: `process` (a child of each worker process), `thread`, or `external` "
        "(`runwatch drain`)",
    ),
    Variable("RUNWATCH_DRAIN_BATCH", "drain_batch", p.integer(minimum=1),
             "stream entries (up to 100 events each) per drain transaction; on RabbitMQ a drainer "
             "prefetches two batches"),
    Variable("RUNWATCH_DRAIN_CLAIM_IDLE_MS", "drain_claim_idle_ms", p.integer(minimum=100),
             "entries a drainer read but never applied (it died) are claimed by another after this long; on "
             "RabbitMQ the drainer's AMQP heartbeat is half this: a frozen drainer's batches return after 1-1.5x it"),
    Variable("RUNWATCH_HEAL_INTERVAL_SECONDS", "heal_interval_seconds", p.integer(minimum=0),
             "between maintenance passes (healer, dead-letter scan) in each worker process; `0` disables"),
    Variable("RUNWATCH_HEARTBEAT_TIMEOUT_MS", "heartbeat_timeout_ms", p.integer(minimum=1),
             "a worker silent this long is dead (match the broker's `heartbeat_timeout`)"),
    Variable("RUNWATCH_CEILING_MARGIN_SECONDS", "ceiling_margin_seconds", p.integer(minimum=0),
             "a run whose worker still heartbeats is healed only past its time limit plus this"),
    Variable("RUNWATCH_OUTAGE_GRACE_SECONDS", "outage_grace_seconds", p.integer(minimum=0),
             "after a maintenance pass could not reach Redis, reconcile nothing for this long"),
    Variable("RUNWATCH_MAX_CRASH_REDELIVERIES", "max_crash_redeliveries", p.integer(minimum=1),
             "a message redelivered this many times more than attempted (a crash loop) is dead-lettered"),
    Variable("RUNWATCH_CRASH_WINDOW_SECONDS", "crash_window_seconds", p.integer(minimum=1),
             "... counting only the deliveries within this window"),
    Variable("RUNWATCH_METRICS_PORT", "metrics_port", p.integer(minimum=0),
             "port of the Prometheus exposition of worker hosts (their drainer), `runwatch drain` and "
             "`runwatch heal`; `0` disables"),
    Variable("RUNWATCH_METRICS_HOST", "metrics_host", p.TEXT,
             "address that exposition listens on (`127.0.0.1` to keep it off the network)"),
    Variable("RUNWATCH_RETENTION_DAYS", "retention_days", p.integer(minimum=1),
             "days to keep terminal runs and their events (pruned hourly and by `runwatch prune`)",
             keys=RETENTION_OUTCOMES),
    *_RETENTION_PER_OUTCOME,
    Variable("RUNWATCH_REDACT_KEYS", "redact_keys", p.KEY_NAMES,
             "key names masked in every text that leaves a job, beyond the default denylist",
             default_text="none"),
    Variable("RUNWATCH_REDACT_HOOK", "redact_hook", p.HOOK_PATH,
             "a function applied to every text that leaves a job, after the denylist"),
    Variable("RUNWATCH_API_BIND", "api_bind", p.BIND_ADDRESS,
             "where the API listens (`0.0.0.0:8000` in a container)"),
    Variable("RUNWATCH_API_WORKERS", "api_workers", p.integer(minimum=1),
             "API worker processes (sync workers: one request at a time each)"),
    Variable("RUNWATCH_API_TIMEOUT_SECONDS", "api_timeout_seconds", p.integer(minimum=0),
             "an API worker silent this long is killed and replaced (`0`: never)"),
    Variable(
        "RUNWATCH_API_SECRET", "api_secret", p.TEXT, "key that signs pagination cursors", secret=True,
        default_text="a random secret kept in the database",
    ),
    Variable("RUNWATCH_API_TOKEN_CACHE_SECONDS", "api_token_cache_seconds", p.number(minimum=0),
             "how long a token lookup is trusted: a revocation takes effect within this"),
    Variable("RUNWATCH_API_STATEMENT_TIMEOUT_MS", "api_statement_timeout_ms", p.integer(minimum=1),
             "API queries slower than this are cancelled by PostgreSQL rather than piling up"),
    Variable("RUNWATCH_API_ACCESS_LOG", "api_access_log", p.LOG_FILE, "gunicorn's access log", default_text="none"),
    Variable("RUNWATCH_API_LOG_LEVEL", "api_log_level", p.choice(*API_LOG_LEVELS),
             "gunicorn's log level"),
    Variable("RUNWATCH_CONSOLE_SESSION_SECONDS", "console_session_seconds", p.integer(minimum=60),
             "how long a console sign-in lasts before the browser must sign in again"),
)

#: ``RUNWATCH_*`` names that are not settings but are used on purpose: never warned about.
NOT_SETTINGS = frozenset(
    {
        "RUNWATCH_TOKEN",  # the README's curl examples keep an API token in it
        "RUNWATCH_ACCEPTANCE_SCALE",  # tests/acceptance: quick or large
        "RUNWATCH_CHROMIUM",  # the browser the console's tests and scripts/screenshots drive
    }
)

BY_NAME = {v.name: v for v in VARIABLES}


def closest(name: str) -> str | None:
    """The known variable ``name`` was probably meant to be (a typo), if any is close enough."""
    # NOTE: compared without the shared prefix, which would make every pair look alike.
    known = {v.name[len(PREFIX) :]: v.name for v in VARIABLES}
    match = difflib.get_close_matches(name[len(PREFIX) :], known, n=1, cutoff=0.6)
    return known[match[0]] if match else None
