"""Stale-run healer on a large ledger: one full pass over N stale runs, then passes with nothing stale.

    python bench/healer.py [--runs 1000000] [--stale 10000] [--repeat 3] [--keep]

Targets (issue 4): on 1,000,000 runs of which 10,000 are stale, a full pass reconciles all 10,000
in under 5 s; a pass with nothing stale takes under 50 ms (an index scan on ``stale_at``).

1. ``runwatch_healbench`` is dropped and created on the server of ``RUNWATCH_DATABASE_URL``
   (default ``postgresql://postgres@127.0.0.1:5432/postgres``) and migrated to head.
2. Seeding, set-based (``INSERT ... SELECT FROM generate_series`` in chunks, the BEFORE INSERT
   trigger computes ``stale_at``), then ``VACUUM (ANALYZE)`` and ``CHECKPOINT`` so that neither
   autovacuum nor a checkpoint lands in the measurement:

   - terminal runs (the rest, ~89%): succeeded / failed / partially_succeeded / blocked, created
     over the last 90 days in id order; 2% of them reconciled failures with valid columns;
   - exactly ``--stale`` stale live runs, scattered through the heap among the terminal runs (one
     per ~100 rows: the pessimistic layout for the UPDATE, each on its own page), created in the
     last day: half queued past their threshold whose ``redis_message_id`` is in no Redis hash,
     half running with no progress past their threshold, held by dead workers (half of them with
     an expired heartbeat, half with none);
   - 10% fresh live runs inserted last (the newest rows): queued up to 30 min ago, running with
     progress in the last 4 min by workers that heartbeat, 0.1% of them redelivered once (so the
     poison-pill query has rows to look at). Their margins to staleness are >= 10 min.

   100 tenants, 5 types on 5 queues; one type has config thresholds (7200 s / 1800 s), the
   others the defaults (3600 s / 900 s).
3. Redis: namespace ``healbench`` and event stream ``healbench:runwatch:events`` (absent, so the
   locator reports no ledger backlog); every ``healbench:*`` key is deleted at the end.
   Also ~2.9 events per run in ``run_events`` (``--no-events`` leaves it empty: faster, but the
   planner's guess for an empty table then prices the poison-pill query past ``jit_above_cost``).
4. Measured, in this order:
   a. EXPLAIN (ANALYZE, BUFFERS) of ``statements.HEAL_CANDIDATES`` with the parameters
      ``heal_once`` uses, while the N runs are stale (in a transaction rolled back), then a
      CHECKPOINT (its row locks dirtied the candidates' pages);
   b. one full ``heal_once(HealOptions(dry_run=False, limit=max(--stale, 10000)))``: wall time,
      and it must reconcile exactly ``--stale`` runs (checked in the result and in the tables;
      the script exits 1 otherwise);
   c. ``--repeat`` passes with nothing stale (each must find 0 candidates): min / median / max,
      and the same EXPLAIN. Right after the full pass the partial index still holds the healed
      runs' dead entries (their old ``stale_at`` is in the past), so these passes visit them;
   d. ``VACUUM operation_runs`` (what autovacuum does eventually), then c. again.
   Each pass is broken down by timing SQLAlchemy's cursor executes (per statement), the Redis
   pipeline, ``decide`` and the commit, by hooks installed in this process only.
5. Summary table on stdout; the database is dropped unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import redis
from runwatch.bridge.keys import Keys
from runwatch.bridge.locator import RedisLocator
from sqlalchemy import Dialect, TextClause, event, make_url, text
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

import runwatch.healer as healer_mod
import runwatch.lookups as lookups_mod
from runwatch import passes as passes_mod
from runwatch import poison as poison_mod
from runwatch import statements as sql
from runwatch.db import engine_for
from runwatch.healer import DEFAULT_LIMIT, HealOptions, HealResult, heal_once
from runwatch.settings import Settings
from runwatch.thresholds import ThresholdPolicy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BenchError, database_url, drop_database, log, reset_database  # noqa: E402

DB_NAME = "runwatch_healbench"
NAMESPACE = "healbench"
EVENT_STREAM = f"{NAMESPACE}:runwatch:events"
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
CHUNK = 50_000
LIVE_FRACTION = 0.10
LIVE_WORKERS = 40
FULL_TARGET_S = 5.0
QUIET_TARGET_MS = 50.0


# --- seeding ------------------------------------------------------------------------------------

_COLUMNS = """message_id, type, type_label, queue_name, actor_name, status, outcome, tenant_id,
    initiator_name, summary_counts, failure_summary, progress_processed, progress_total, attempts,
    deliveries, max_retries, time_limit_ms, last_error, worker_id, queued_stale_seconds,
    running_stale_seconds, threshold_source, created_at, started_at, completed_at, last_progress_at,
    reconciled_at, reconciliation_source, reason_code, reason_message, reconciliation_evidence,
    redis_message_id"""

_TYPES = """(VALUES
    (0, 'report.generate', 'Generate report', 'reports', 3600, 900, 'default'),
    (1, 'invoice.sync', 'Sync invoices', 'billing', 3600, 900, 'default'),
    (2, 'email.digest', 'Send digest', 'mail', 3600, 900, 'default'),
    (3, 'import.csv', 'Import CSV', 'imports', 7200, 1800, 'config'),
    (4, 'search.reindex', 'Reindex search', 'search', 3600, 900, 'default')
) AS t(k, type, label, queue, qs, rs, src)"""

#: Rows :lo..:hi of the first :m (terminal runs, with exactly :s stale live runs spread evenly:
#: row i is the j-th stale one when floor(i*s/m) steps up; odd j queued, even j running).
#: ``pct`` picks the outcome: <78 succeeded, <88 failed, <90 failed+reconciled, <95 partial, else blocked.
SEED_MAIN = text(f"""
INSERT INTO operation_runs ({_COLUMNS})
SELECT md5('healbench:' || g.i), t.type, t.label, t.queue, replace(t.type, '.', '_'), g.status, g.outcome,
    1 + (g.i * 31) % 100, 'user-' || (g.i % 500),
    CASE WHEN g.outcome IN ('succeeded', 'partially_succeeded')
         THEN jsonb_build_object('processed', g.i % 1000, 'skipped', g.i % 7) ELSE '{{}}' END,
    CASE WHEN g.outcome = 'failed' AND g.pct < 88
         THEN jsonb_build_array(jsonb_build_object('code', 'job.exception', 'message', 'Job failed'))
         WHEN g.outcome = 'failed' THEN jsonb_build_array(jsonb_build_object('code', g.rcode, 'message', g.rmsg))
         ELSE '[]' END,
    CASE WHEN g.status <> 'queued' THEN (g.i % 1000)::float8 END,
    CASE WHEN g.status <> 'queued' THEN 1000::float8 END,
    CASE WHEN g.status = 'queued' THEN 0 WHEN g.i % 10 = 0 THEN 2 ELSE 1 END,
    CASE WHEN g.status = 'queued' THEN 0 WHEN g.i % 10 = 0 THEN 2 ELSE 1 END,
    3, CASE WHEN g.i % 4 = 0 THEN NULL ELSE 600000 END,
    CASE WHEN g.outcome = 'failed' AND g.pct < 88
         THEN jsonb_build_object('type', 'ValueError', 'message', 'bad input row ' || g.i) END,
    CASE WHEN g.status = 'queued' THEN NULL
         WHEN g.status = 'running' THEN 'healbench-dead-' || (g.j % :dead_workers)
         ELSE 'healbench-worker-' || (g.i % 50) END,
    t.qs, t.rs, t.src,
    g.created_at,
    CASE WHEN g.status <> 'queued' THEN g.created_at + make_interval(secs => 1 + g.i % 30) END,
    CASE WHEN g.status = 'completed' THEN g.created_at + make_interval(secs => 40 + g.i % 900) END,
    CASE WHEN g.status = 'completed' THEN g.created_at + make_interval(secs => 39 + g.i % 900)
         WHEN g.status = 'running' THEN now() - make_interval(secs => t.rs + 60 + g.i % 86400) END,
    CASE WHEN g.rcode IS NOT NULL THEN g.created_at + make_interval(secs => 40 + g.i % 900) END,
    CASE WHEN g.rcode = 'run.queue_failure_bridge' THEN 'failed_callback'
         WHEN g.rcode IS NOT NULL THEN 'scheduled_reconciler' END,
    g.rcode, g.rmsg,
    CASE WHEN g.rcode IS NOT NULL THEN jsonb_build_object('seeded', true, 'threshold_seconds', t.rs) END,
    gen_random_uuid()::text
FROM (
    SELECT s.i, s.j, s.pct, s.status,
        CASE WHEN s.status <> 'completed' THEN 'pending'
             WHEN s.pct < 78 THEN 'succeeded' WHEN s.pct < 90 THEN 'failed'
             WHEN s.pct < 95 THEN 'partially_succeeded' ELSE 'blocked' END AS outcome,
        CASE WHEN s.status = 'completed' AND s.pct IN (88, 89) THEN
            (ARRAY['run.stale_running', 'run.queue_failure_bridge', 'run.stale_queued'])
            [CAST(1 + s.i % 3 AS int)] END AS rcode,
        CASE WHEN s.status = 'completed' AND s.pct IN (88, 89) THEN
            (ARRAY['Run stopped reporting progress', 'Queue failure was reconciled', 'Run never started'])
            [CAST(1 + s.i % 3 AS int)] END AS rmsg,
        CASE s.status
            WHEN 'completed' THEN now() - interval '1 hour'
                                  - make_interval(secs => (1 - s.i::float8 / :m) * 90 * 86400)
            ELSE now() - interval '3 hours' - make_interval(secs => s.i % 86400)
        END AS created_at
    FROM (
        SELECT i, (i * :s) / :m AS j, (i * 7919) % 100 AS pct,
            CASE WHEN (i * :s) / :m = ((i - 1) * :s) / :m THEN 'completed'
                 WHEN ((i * :s) / :m) % 2 = 1 THEN 'queued' ELSE 'running' END AS status
        FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS i
    ) s
) g
JOIN {_TYPES} ON t.k = (g.i * 37) % 5
""")

#: Fresh live runs, the newest rows: even i queued (up to 30 min old), odd i running (progress < 4 min ago).
SEED_LIVE = text(f"""
INSERT INTO operation_runs ({_COLUMNS})
SELECT md5('healbench:' || (:offset + g.i)), t.type, t.label, t.queue, replace(t.type, '.', '_'), g.status, 'pending',
    1 + (g.i * 31) % 100, 'user-' || (g.i % 500), '{{}}', '[]',
    CASE WHEN g.status = 'running' THEN (g.i % 1000)::float8 END,
    CASE WHEN g.status = 'running' THEN 1000::float8 END,
    CASE WHEN g.status = 'running' THEN 1 ELSE 0 END,
    CASE WHEN g.status = 'queued' THEN 0 WHEN g.i % 1000 = 1 THEN 2 ELSE 1 END,
    3, CASE WHEN g.i % 4 = 0 THEN NULL ELSE 600000 END, NULL,
    CASE WHEN g.status = 'running' THEN 'healbench-live-' || (g.i % {LIVE_WORKERS}) END,
    t.qs, t.rs, t.src,
    g.created_at,
    CASE WHEN g.status = 'running' THEN g.created_at + interval '2 seconds' END,
    NULL,
    CASE WHEN g.status = 'running' THEN now() - make_interval(secs => g.i % 240) END,
    NULL, NULL, NULL, NULL, NULL,
    gen_random_uuid()::text
FROM (
    SELECT i, CASE WHEN i % 2 = 0 THEN 'queued' ELSE 'running' END AS status,
        CASE WHEN i % 2 = 0 THEN now() - make_interval(secs => i % 1800)
             ELSE now() - make_interval(secs => 300 + i % 1800) END AS created_at
    FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS i
) g
JOIN {_TYPES} ON t.k = (g.i * 37) % 5
""")

#: The event log of runs :lo..:hi (by id): queued for every run, started for every run that
#: started, the terminal event for every terminal run (~2.9 events per run). Without it
#: run_events is empty, and the planner's guess for an empty table changes the plans that join it.
SEED_EVENTS = text("""
INSERT INTO run_events (event_uuid, message_id, kind, at, details)
SELECT gen_random_uuid(), r.message_id, k.kind,
    CASE k.n WHEN 1 THEN r.created_at WHEN 2 THEN r.started_at ELSE r.completed_at END,
    CASE k.n WHEN 2 THEN jsonb_build_object('worker_id', r.worker_id, 'attempt', 1)
             WHEN 3 THEN jsonb_build_object('outcome', r.outcome) ELSE '{}' END
FROM operation_runs r
JOIN (VALUES (1, 'queued'), (2, 'started'), (3, 'completed')) AS k(n, kind)
  ON k.n = 1 OR (k.n = 2 AND r.started_at IS NOT NULL) OR (k.n = 3 AND r.status = 'completed')
WHERE r.id BETWEEN :lo AND :hi
""")

STALE_NOW = text("SELECT count(*) FROM operation_runs WHERE status IN ('queued', 'running') AND stale_at <= now()")


def dead_workers(stale: int) -> int:
    """Dead workers holding the stale running runs: ~8 runs (threads) each."""
    return max(1, (stale // 2 + 7) // 8)


def seed(engine: Any, runs: int, stale: int, *, events: bool) -> dict[str, Any]:
    live = round(runs * LIVE_FRACTION)
    main = runs - live
    if stale > main:
        raise BenchError(f"--stale {stale} leaves no room: at most {main} of {runs} runs can be stale")
    started = time.perf_counter()
    done = 0
    for lo in range(1, main + 1, CHUNK):
        hi = min(main, lo + CHUNK - 1)
        with engine.begin() as conn:
            conn.execute(SEED_MAIN, {"lo": lo, "hi": hi, "m": main, "s": stale, "dead_workers": dead_workers(stale)})
        done += hi - lo + 1
        rate = done / (time.perf_counter() - started)
        log(f"  seeded {done:,}/{runs:,} runs ({rate:,.0f} rows/s)")
    for lo in range(1, live + 1, CHUNK):
        hi = min(live, lo + CHUNK - 1)
        with engine.begin() as conn:
            conn.execute(SEED_LIVE, {"lo": lo, "hi": hi, "offset": main})
        done += hi - lo + 1
        log(f"  seeded {done:,}/{runs:,} runs (fresh live runs)")
    insert_s = time.perf_counter() - started
    if events:
        with engine.connect() as conn:
            first, last = conn.execute(text("SELECT min(id), max(id) FROM operation_runs")).one()
        for lo in range(first, last + 1, 2 * CHUNK):
            hi = min(last, lo + 2 * CHUNK - 1)
            with engine.begin() as conn:
                conn.execute(SEED_EVENTS, {"lo": lo, "hi": hi})
            log(f"  seeded the events of {hi - first + 1:,}/{runs:,} runs")
    log("  VACUUM (ANALYZE) and CHECKPOINT")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM (ANALYZE) operation_runs"))
        conn.execute(text("VACUUM (ANALYZE) run_events"))
        conn.execute(text("CHECKPOINT"))
        counts = dict(conn.execute(text("SELECT status, count(*) FROM operation_runs GROUP BY status")).all())
        n_events = conn.execute(text("SELECT count(*) FROM run_events")).scalar()
        stale_now = conn.execute(STALE_NOW).scalar()
        sizes = conn.execute(
            text(
                "SELECT pg_size_pretty(pg_table_size('operation_runs')), "
                "pg_size_pretty(pg_indexes_size('operation_runs')), "
                "pg_size_pretty(pg_relation_size('operation_runs_stale_at'))"
            )
        ).one()
    total = sum(counts.values())
    if total != runs or stale_now != stale:
        raise BenchError(f"seeded {total} runs of which {stale_now} stale; expected {runs} and {stale}")
    return {
        "insert_s": insert_s,
        "total_s": time.perf_counter() - started,
        "events": n_events,
        "counts": counts,
        "table_size": sizes[0],
        "indexes_size": sizes[1],
        "stale_index_size": sizes[2],
    }


def seed_template(admin_url: str, template: str, runs: int) -> int:
    """Seed database ``template`` with ``runs`` runs and their events (``seed``), for benchmarks whose
    rounds each start from a copy of it; return how many are completed."""
    log(f"seeding {runs:,} runs into {template} (once; every round starts from a copy)")
    seed_url = database_url(admin_url, template)
    reset_database(admin_url, seed_url)
    engine = engine_for(seed_url)
    try:
        seeded = seed(engine, runs, 0, events=True)
    finally:
        engine.dispose()
    log(f"seeded in {seeded['total_s']:.0f}s: {seeded['counts']}, {seeded['events']:,} events")
    return int(seeded["counts"].get("completed", 0))


def seed_redis(client: redis.Redis, keys: Keys, stale: int) -> None:
    """Heartbeats: live workers beat now; half the dead workers beat 10 min ago, half never did."""
    now_ms = time.time() * 1000
    beats = {f"healbench-live-{i}": now_ms for i in range(LIVE_WORKERS)}
    beats.update({f"healbench-dead-{i}": now_ms - 600_000 for i in range(0, dead_workers(stale), 2)})
    client.zadd(keys.heartbeats(), beats)


def clean_redis(client: redis.Redis) -> int:
    keys = list(client.scan_iter(match=f"{NAMESPACE}:*", count=1000))
    if keys:
        client.delete(*keys)
    return len(keys)


# --- profiling ------------------------------------------------------------------------------------

#: The modules whose named statements a heal pass runs: ``heal_once``, ``passes.run_once``, the poison gate.
#: ``statements`` comes first: its names are the bare labels, the others' carry their module's name.
STATEMENT_MODULES = (sql, passes_mod, poison_mod, healer_mod, lookups_mod)
#: Statements that are no module's constant: the driver's own; recognized by a fragment of their SQL.
_DRIVER_LABELS = (
    ("select pg_catalog.version()", "connect"),
    ("SELECT 1", "pool pre-ping"),
)


def statement_labels(dialect: Dialect, modules: tuple[ModuleType, ...] = STATEMENT_MODULES) -> dict[str, str]:
    """Every named ``TextClause`` of ``modules`` by its SQL, as written and as sent to the driver: its name."""
    labels: dict[str, str] = {}
    for module in modules:
        prefix = "" if module is sql else module.__name__.rsplit(".", 1)[-1] + "."
        for name, value in vars(module).items():
            if isinstance(value, TextClause):
                labels.setdefault(value.text, prefix + name)
                labels.setdefault(str(value.compile(dialect=dialect)), prefix + name)
    return labels


LABELS = statement_labels(psycopg_dialect())


def label_of(statement: str, labels: Mapping[str, str] = LABELS) -> str:
    """The statement's name (``RECONCILE_STALE``, ``passes._RECORD``), else a driver label or its first line."""
    if (label := labels.get(statement)) is not None:
        return label
    for fragment, label in _DRIVER_LABELS:
        if fragment in statement:
            return label
    return statement.strip().split("\n")[0][:40]


@dataclass
class Profile:
    """Seconds spent per part of one pass."""

    parts: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    candidates_end: float | None = None
    observe_start: float | None = None
    commit_start: float | None = None

    def add(self, part: str, seconds: float) -> None:
        self.parts[part] += seconds
        self.calls[part] += 1


class Profiler:
    """Hooks into SQLAlchemy, redis-py, the locator and ``runwatch.healer`` (this process only)."""

    def __init__(self, engine: Any) -> None:
        self.current: Profile | None = None
        self.labels = statement_labels(engine.dialect)
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "commit", self._commit)
        self._patch_pipeline()
        self._patch_healer()

    @contextmanager
    def recording(self) -> Iterator[Profile]:
        self.current = Profile()
        try:
            yield self.current
        finally:
            self.current = None

    def _before(self, conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        conn.info["bench_t"] = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        now = time.perf_counter()
        if self.current is None:
            return
        label = label_of(statement, self.labels)
        self.current.add(f"sql {label}", now - conn.info.pop("bench_t", now))
        if label == "HEAL_CANDIDATES":
            self.current.candidates_end = now

    def _commit(self, conn) -> None:  # noqa: ANN001
        if self.current is not None:
            self.current.commit_start = time.perf_counter()

    def _patch_pipeline(self) -> None:
        original = redis.client.Pipeline.execute
        profiler = self

        def execute(pipe, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            commands, start = len(pipe.command_stack), time.perf_counter()
            try:
                return original(pipe, *args, **kwargs)
            finally:
                if profiler.current is not None:
                    profiler.current.add(f"redis pipeline ({commands} cmds)", time.perf_counter() - start)

        redis.client.Pipeline.execute = execute

    def _patch_healer(self) -> None:
        profiler = self
        for name in ("decide", "_write"):
            original = getattr(healer_mod, name)

            def wrapper(*args, __original=original, __name=name, **kwargs):  # noqa: ANN002, ANN003
                start = time.perf_counter()
                try:
                    return __original(*args, **kwargs)
                finally:
                    if profiler.current is not None:
                        profiler.current.add(f"py {__name}()", time.perf_counter() - start)

            setattr(healer_mod, name, wrapper)

        class TimedJson:
            """``runwatch.healer``'s ``json`` with a timed ``dumps``."""

            def __getattr__(self, attr: str) -> Any:
                return getattr(json, attr)

            @staticmethod
            def dumps(*args: Any, **kwargs: Any) -> str:
                start = time.perf_counter()
                try:
                    return json.dumps(*args, **kwargs)
                finally:
                    if profiler.current is not None:
                        profiler.current.add("py json.dumps (rows for SQL)", time.perf_counter() - start)

        healer_mod.json = TimedJson()  # type: ignore[assignment]

    def wrap_locator(self, locator: RedisLocator) -> RedisLocator:
        profiler = self
        original_observe, original_backlog = locator.observe, locator.unapplied_message_ids

        def observe(runs):  # noqa: ANN001, ANN202
            start = time.perf_counter()
            if profiler.current is not None:
                profiler.current.observe_start = start
            try:
                return original_observe(runs)
            finally:
                if profiler.current is not None:
                    profiler.current.add("locator.observe() total", time.perf_counter() - start)

        def unapplied_message_ids():  # noqa: ANN202
            start = time.perf_counter()
            try:
                return original_backlog()
            finally:
                if profiler.current is not None:
                    profiler.current.add("redis XRANGE (unapplied events)", time.perf_counter() - start)

        locator.observe = observe  # type: ignore[method-assign]
        locator.unapplied_message_ids = unapplied_message_ids  # type: ignore[method-assign]
        return locator


@dataclass
class Pass:
    wall_s: float
    result: HealResult
    profile: Profile
    end: float


def timed_pass(
    engine: Any, locator: RedisLocator, policy: ThresholdPolicy, options: HealOptions, profiler: Profiler
) -> Pass:
    with profiler.recording() as profile:
        start = time.perf_counter()
        result = heal_once(engine, locator, policy, options)
        end = time.perf_counter()
    if profile.commit_start is not None:
        profile.add("commit (WAL flush) + release", end - profile.commit_start)
    if profile.candidates_end is not None and profile.observe_start is not None:
        profile.add("py rows -> dicts (SQLAlchemy)", profile.observe_start - profile.candidates_end)
    return Pass(end - start, result, profile, end)


def breakdown(p: Pass) -> list[str]:
    parts = dict(p.profile.parts)
    observe = parts.get("locator.observe() total", 0.0)
    pipe = sum(v for k, v in parts.items() if k.startswith("redis pipeline"))
    if observe:
        parts["py locator.observe() minus pipeline"] = observe - pipe
        del parts["locator.observe() total"]
    write_sql = sum(parts.get(f"sql {k}", 0.0) for k in ("NOTE_SKIPPED", "RECONCILE_STALE", "RECONCILE_POISON"))
    if "py _write()" in parts:
        # NOTE: json.dumps is only called inside _write on a pass without poison pills
        rest = parts.pop("py _write()") - write_sql - parts.get("py json.dumps (rows for SQL)", 0.0)
        parts["py _write() rest: RETURNING rows -> log list"] = rest
    accounted = sum(parts.values())
    parts["other Python (loop, evidence, pool checkout, ...)"] = p.wall_s - accounted
    lines = [f"    {'part':<52}{'ms':>10}{'%':>7}{'calls':>7}"]
    for name, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
        calls = p.profile.calls.get(name, "")
        lines.append(f"    {name:<52}{seconds * 1000:>10.1f}{100 * seconds / p.wall_s:>6.1f}%{calls!s:>7}")
    lines.append(f"    {'total (wall)':<52}{p.wall_s * 1000:>10.1f}")
    return lines


# --- EXPLAIN --------------------------------------------------------------------------------------


def candidate_params(policy: ThresholdPolicy, options: HealOptions) -> dict[str, Any]:
    """Exactly what ``heal_once`` binds to HEAL_CANDIDATES."""
    return {
        "types": list(options.types) if options.types else None,
        "tenants": list(options.tenants) if options.tenants else None,
        "opted_out": policy.opted_out_types(),
        "limit": options.limit,
    }


def explain(engine: Any, params: dict[str, Any]) -> list[str]:
    statement = text("EXPLAIN (ANALYZE, BUFFERS) " + sql.HEAL_CANDIDATES.text.strip())
    with engine.connect() as conn:
        tx = conn.begin()
        try:
            return [row[0] for row in conn.execute(statement, params)]
        finally:
            tx.rollback()  # it ran FOR UPDATE: release the row locks, write nothing


# --- main -----------------------------------------------------------------------------------------


def urls() -> tuple[str, str]:
    """(admin libpq URL on the server's postgres DB, URL of the benchmark DB)."""
    raw = os.environ.get("RUNWATCH_DATABASE_URL") or DEFAULT_SERVER_URL
    url = make_url(raw).set(drivername="postgresql")
    admin = url.set(database="postgres").render_as_string(hide_password=False)
    bench = url.set(database=DB_NAME).render_as_string(hide_password=False)
    return admin, bench


def check_full_pass(engine: Any, p: Pass, stale: int) -> list[str]:
    r = p.result
    errors = []
    if r.locked_out or r.paused:
        errors.append(f"the pass was locked out={r.locked_out} / paused={r.paused!r}")
    if (r.candidates, r.reconciled, sum(r.skipped.values())) != (stale, stale, 0):
        errors.append(
            f"candidates {r.candidates}, reconciled {r.reconciled}, skipped {dict(r.skipped)}; "
            f"expected {stale} reconciled"
        )
    with engine.connect() as conn:
        healed, events, left = conn.execute(
            text(
                # healer_checked_at: set by RECONCILE_STALE, never by the seeding (its reconciled runs have none)
                "SELECT (SELECT count(*) FROM operation_runs WHERE reconciliation_source = 'scheduled_reconciler' "
                "        AND healer_checked_at IS NOT NULL AND reason_code IN "
                "        ('run.stale_queued', 'run.stale_running')), "
                "       (SELECT count(*) FROM run_events WHERE kind = 'reconciled'), "
                "       (SELECT count(*) FROM operation_runs WHERE status IN ('queued', 'running') "
                "        AND stale_at <= now())"
            )
        ).one()
    if (healed, events, left) != (stale, stale, 0):
        errors.append(f"in PostgreSQL: {healed} runs healed, {events} 'reconciled' events, {left} still stale")
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs in the ledger")
    parser.add_argument("--stale", type=int, default=10_000, help="of which stale (reconciled by the full pass)")
    parser.add_argument("--repeat", type=int, default=3, help="passes with nothing stale")
    parser.add_argument("--keep", action="store_true", help=f"keep the {DB_NAME} database")
    parser.add_argument(
        "--no-events", dest="events", action="store_false", help="leave run_events empty (faster seeding, other plans)"
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.stale < 0 or args.repeat < 1:
        parser.error("--runs and --repeat must be >= 1, --stale >= 0")
    command = "python bench/healer.py " + shlex.join(
        ["--runs", str(args.runs), "--stale", str(args.stale), "--repeat", str(args.repeat)]
        + (["--keep"] if args.keep else [])
        + ([] if args.events else ["--no-events"])
    )

    admin_url, db_url = urls()
    client = redis.Redis.from_url(os.environ.get("RUNWATCH_REDIS_URL") or DEFAULT_REDIS_URL)
    keys = Keys(NAMESPACE)
    errors: list[str] = []
    try:
        clean_redis(client)
        log(f"creating {DB_NAME} and migrating it")
        reset_database(admin_url, db_url)  # common: drop, create, migrate
        engine = engine_for(db_url)
        log(f"seeding {args.runs:,} runs, {args.stale:,} of them stale")
        seeded = seed(engine, args.runs, args.stale, events=args.events)
        log(f"seeded in {seeded['total_s']:.1f}s: {seeded['counts']}")
        seed_redis(client, keys, args.stale)

        locator = RedisLocator(client, keys, event_stream=EVENT_STREAM)
        policy = ThresholdPolicy(Settings(database_url=db_url), {})
        options = HealOptions(dry_run=False, limit=max(args.stale, DEFAULT_LIMIT))
        params = candidate_params(policy, options)
        profiler = Profiler(engine)
        profiler.wrap_locator(locator)
        with engine.connect() as conn:
            server = conn.execute(
                text(
                    "SELECT current_setting('server_version'), current_setting('shared_buffers'), "
                    "current_setting('jit')"
                )
            ).one()

        log("EXPLAIN (ANALYZE, BUFFERS) of HEAL_CANDIDATES with every stale run due")
        plan_stale = explain(engine, params)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # NOTE: the EXPLAIN's row locks dirtied every candidate's page: flush them, so that the timed
            # pass starts as after seeding (and pays the full-page writes of a first change after a checkpoint).
            conn.execute(text("CHECKPOINT"))

        log(f"full pass: heal_once(HealOptions(dry_run=False, limit={options.limit}))")
        full = timed_pass(engine, locator, policy, options, profiler)
        log(f"full pass: {full.wall_s:.3f}s, {full.result.as_dict()}")

        def quiet_passes(tag: str) -> list[Pass]:
            passes = []
            for i in range(args.repeat):
                p = timed_pass(engine, locator, policy, options, profiler)
                if p.result.candidates or p.result.reconciled or p.result.paused or p.result.locked_out:
                    errors.append(f"quiet pass {i + 1} ({tag}): {p.result.as_dict()}")
                passes.append(p)
                log(f"quiet pass {i + 1}/{args.repeat} ({tag}): {p.wall_s * 1000:.1f} ms")
            return passes

        quiet = quiet_passes("right after the full pass")
        log("EXPLAIN (ANALYZE, BUFFERS) of HEAL_CANDIDATES with nothing stale")
        plan_quiet = explain(engine, params)
        # NOTE: checked only now: its count may use a plain index scan, which marks the dead index entries
        # it meets (kill_prior_tuple) and would spare the passes above the work the healer left them.
        errors += check_full_pass(engine, full, args.stale)
        log("VACUUM operation_runs (as autovacuum will), then the same again")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM operation_runs"))
        vacuumed = quiet_passes("after VACUUM")
        plan_vacuumed = explain(engine, params)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        removed = clean_redis(client)
        log(f"removed {removed} {NAMESPACE}:* Redis key(s)")
        if not args.keep:
            engine_for(db_url).dispose()
            drop_database(admin_url, DB_NAME)
            log(f"dropped {DB_NAME}")

    full_ok = full.wall_s < FULL_TARGET_S and full.result.reconciled == args.stale
    uses_index = lambda plan: any("operation_runs_stale_at" in line for line in plan)  # noqa: E731

    print(f"\n$ {command}\n")
    print(
        f"{args.runs:,} runs ({', '.join(f'{k} {v:,}' for k, v in sorted(seeded['counts'].items()))}); "
        f"{args.stale:,} stale; {seeded['events']:,} run events\n{os.cpu_count()} CPUs, PostgreSQL {server[0]} "
        f"(shared_buffers {server[1]}, jit {server[2]}); "
        f"operation_runs {seeded['table_size']} + indexes {seeded['indexes_size']} "
        f"(operation_runs_stale_at {seeded['stale_index_size']}); seeded in {seeded['total_s']:.0f} s\n"
    )
    print(f"{'pass':<44}{'candidates':>11}{'reconciled':>11}{'wall':>26}{'target':>10}{'':>6}")
    print(
        f"{'full (every stale run due)':<44}{full.result.candidates:>11,}{full.result.reconciled:>11,}"
        f"{f'{full.wall_s * 1000:,.0f} ms':>26}{'< 5 s':>10}{'ok' if full_ok else 'MISS':>6}"
    )
    for tag, passes in (("right after the full pass", quiet), ("after VACUUM", vacuumed)):
        ms = sorted(p.wall_s * 1000 for p in passes)
        median_ms = statistics.median(ms)
        spread = f"{ms[0]:.1f} / {median_ms:.1f} / {ms[-1]:.1f} ms"
        print(
            f"{f'nothing stale, {tag}':<44}{max(p.result.candidates for p in passes):>11}"
            f"{max(p.result.reconciled for p in passes):>11}{spread:>26}{'< 50 ms':>10}"
            f"{'ok' if median_ms < QUIET_TARGET_MS else 'MISS':>6}"
        )
    print(f"{'':<66}(x{args.repeat}: min / median / max)")

    print(f"\nfull pass: {full.result.as_dict()}")
    print(f"  {full.wall_s * 1000 / max(1, full.result.reconciled):.3f} ms per reconciled run; where the time went:")
    print("\n".join(breakdown(full)))
    for tag, passes in (("right after the full pass", quiet), ("after VACUUM", vacuumed)):
        median_pass = sorted(passes, key=lambda p: p.wall_s)[len(passes) // 2]
        print(f"\nmedian pass with nothing stale, {tag}; where the time went:")
        print("\n".join(breakdown(median_pass)))

    print(f"\nEXPLAIN (ANALYZE, BUFFERS) statements.HEAL_CANDIDATES -- {params}")
    print(f"\n-- {args.stale:,} of {args.runs:,} runs stale (before the full pass; rolled back):")
    print("\n".join(plan_stale))
    print("\n-- nothing stale, right after the full pass (the index still holds the healed runs' dead entries):")
    print("\n".join(plan_quiet))
    print("\n-- nothing stale, after VACUUM operation_runs:")
    print("\n".join(plan_vacuumed))
    if not all(uses_index(plan) for plan in (plan_stale, plan_quiet, plan_vacuumed)):
        print("\nnote: a plan does not use operation_runs_stale_at")

    if errors:
        print("\nFAILED:\n  " + "\n  ".join(errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
