"""Retention: a batched prune of old terminal runs and their events; live runs are never touched.

The age is per outcome (``Settings.retention_days``: ``RUNWATCH_RETENTION_DAYS`` for all,
``RUNWATCH_RETENTION_DAYS_<OUTCOME>`` to keep, say, failures longer). Batches keep each transaction
short so a large first prune never blocks the recorder's writes for long.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from . import passes
from .errors import ConfigError
from .output import JSON, Column, add_format, emit, emit_record
from .passes import PassStatus
from .settings import Settings

DEFAULT_BATCH = 5000

_COUNT = text("""
SELECT count(*) FROM operation_runs
WHERE status = 'completed' AND outcome = :outcome AND completed_at < now() - make_interval(days => :days)
""")
#: One batch: the oldest terminal runs of one outcome, their events with them.
_PRUNE_BATCH = text("""
WITH doomed AS (
    SELECT id, message_id FROM operation_runs
    WHERE status = 'completed' AND outcome = :outcome AND completed_at < now() - make_interval(days => :days)
    ORDER BY completed_at LIMIT :batch FOR UPDATE SKIP LOCKED
), events AS (
    DELETE FROM run_events e USING doomed d WHERE e.message_id = d.message_id
)
DELETE FROM operation_runs r USING doomed d WHERE r.id = d.id AND r.status = 'completed'
""")


def retention_days(env: Mapping[str, str] | None = None) -> dict[str, int]:
    """Days to keep terminal runs, per outcome, from ``env`` (default ``os.environ``)."""
    return dict(Settings.from_env(env).retention_days)


@dataclass
class PruneResult:
    deleted: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    locked_out: bool = False
    duration_seconds: float = 0.0

    @property
    def status(self) -> PassStatus:
        return PassStatus.OK

    def as_dict(self) -> dict[str, Any]:
        return {"deleted": dict(self.deleted), "deleted_total": sum(self.deleted.values()), "dry_run": self.dry_run}


def prune_once(
    engine: Engine,
    days: Mapping[str, int],
    *,
    batch: int = DEFAULT_BATCH,
    dry_run: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> PruneResult:
    """One retention pass: batches of one transaction each, every one under the prune lock (single-flight
    with other prunes, never holding it for long); recorded like every pass (``passes.record``)."""
    started = time.time()
    result = PruneResult(dry_run=dry_run)
    for outcome, keep_days in days.items():
        params = {"outcome": outcome, "days": keep_days, "batch": batch}
        if dry_run:
            with engine.connect() as conn:
                result.deleted[outcome] = conn.execute(_COUNT, params).scalar_one()
            continue
        total = 0
        while True:
            with passes.locked(engine, passes.PRUNE) as conn:
                if conn is None:
                    result.locked_out = True
                    return result
                deleted = conn.execute(_PRUNE_BATCH, params).rowcount
            total += deleted
            if progress and deleted:
                progress(outcome, total)
            if deleted < batch:
                break
        result.deleted[outcome] = total
    result.duration_seconds = time.time() - started
    if not dry_run:
        with passes.locked(engine, passes.PRUNE) as conn:
            if conn is not None:  # NOTE: another prune started meanwhile: it records its own pass
                passes.record(conn, passes.PRUNE.name, started=started, status=result.status, result=result.as_dict())
    return result


#: Columns of ``prune``'s table, one row per outcome (JSON: one object per pass, see ``_prune``).
PRUNE_COLUMNS = (Column("outcome"), Column("older_than_days", "older than (days)"), Column("deleted"))


def register_prune(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("prune", help="delete terminal runs (and their events) past their retention")
    parser.add_argument("--older-than-days", type=int, help="one age for every outcome (default: configuration)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=f"rows per transaction ({DEFAULT_BATCH})")
    parser.add_argument("--dry-run", action="store_true", help="count what would be deleted")
    add_format(parser)
    parser.set_defaults(func=_prune)


def _prune(args: argparse.Namespace) -> int:
    from .db import engine_for
    from .terminal import Progress

    settings = Settings.from_env()
    engine = engine_for(settings.require_database_url())
    days = dict(settings.retention_days)
    if args.older_than_days is not None:
        if args.older_than_days < 1:
            raise ConfigError("--older-than-days must be at least 1")
        days = dict.fromkeys(days, args.older_than_days)
    started = time.monotonic()
    with Progress("prune") as progress:  # terminals only: cron mail gets the summary alone
        result = prune_once(
            engine,
            days,
            batch=args.batch,
            dry_run=args.dry_run,
            progress=lambda outcome, n: progress.update(n, label=f"prune: {outcome} runs deleted"),
        )
    seconds = time.monotonic() - started
    verb = "would delete" if args.dry_run else "deleted"
    if args.format == JSON:
        emit_record(
            {
                "dry_run": result.dry_run,
                "locked_out": result.locked_out,
                "deleted": sum(result.deleted.values()),
                "by_outcome": [
                    {"outcome": o, "older_than_days": days[o], "deleted": n} for o, n in result.deleted.items()
                ],
                "duration_seconds": round(seconds, 3),
            },
            JSON,
        )
        return 0
    if result.locked_out:
        print("prune: another prune is running; nothing done")
        return 0
    rows = [{"outcome": o, "older_than_days": days[o], "deleted": n} for o, n in result.deleted.items()]
    emit(rows, PRUNE_COLUMNS, args.format)
    detail = ", ".join(f"{n} {o} (older than {days[o]} d)" for o, n in result.deleted.items())
    print(f"prune: {verb} {sum(result.deleted.values())} run(s): {detail} in {seconds:.1f} s")
    return 0
