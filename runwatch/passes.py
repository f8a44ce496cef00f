"""Periodic single-flight passes (healer, dead-letter bridge, retention): one lock, one record, one loop.

Like River's maintenance services, every pass has the same shape: ``run_once`` takes the pass's
transaction-scoped advisory lock (one pass at a time across every process and host; the others
return at once, ``locked_out``), bounds how long the pass may sit idle in its transaction, runs
the body and records the pass in ``maintenance_passes``: its result, its status (``ok``,
``paused``, ``error``), its last success and running totals (passes by result, a duration
histogram) that ``/metrics`` exposes. The lock keys live here, in one registry.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, text

from . import statements as sql


@dataclass(frozen=True)
class PassKind:
    """A periodic pass: its name (the ``pass`` label in /metrics) and its advisory lock key."""

    name: str
    lock_key: int


HEALER = PassKind("healer", 0x52574845)  # "RWHE"
BRIDGE = PassKind("bridge", 0x52574442)  # "RWDB"
PRUNE = PassKind("prune", 0x52575052)  # "RWPR"
MIRROR = PassKind("dead_letter_mirror", 0x5257444D)  # "RWDM": the console's dead-letter mirror
ACTIONS = PassKind("operator_actions", 0x52574441)  # "RWDA": operators' requeues and purges
#: Every pass by name; the keys are any constants, the same in every process, and distinct.
REGISTRY: Mapping[str, PassKind] = {kind.name: kind for kind in (HEALER, BRIDGE, PRUNE, MIRROR, ACTIONS)}

#: A pass stalled this long between two statements loses its session, and the lock with it.
DEFAULT_IDLE_TIMEOUT_SECONDS = 30.0
#: Buckets of ``runwatch_pass_duration_seconds``: passes take milliseconds, a large prune minutes.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class PassStatus(StrEnum):
    OK = "ok"
    PAUSED = "paused"  # the pass only observed (the healer during an outage grace, or catching up)
    ERROR = "error"  # the pass failed (a database or broker error); recorded when the database answers
    LOCKED_OUT = "locked_out"  # another process was running the pass: this one did nothing (not recorded)


class PassResult(Protocol):
    """What every ``*_once`` returns (HealResult, AdapterResult, PruneResult)."""

    locked_out: bool
    dry_run: bool
    duration_seconds: float

    @property
    def status(self) -> PassStatus: ...

    def as_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=PassResult)

_RECORD = text("""
INSERT INTO maintenance_passes AS m
    (name, started_at, finished_at, duration_ms, result, status, last_success_at, totals)
VALUES (:name, to_timestamp(:started), now(), :duration_ms, CAST(:result AS jsonb), :status,
        CASE WHEN CAST(:status AS text) = 'ok' THEN now() END, CAST(:increments AS jsonb))
ON CONFLICT (name) DO UPDATE SET started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at,
    duration_ms = EXCLUDED.duration_ms, result = EXCLUDED.result, status = EXCLUDED.status,
    last_success_at = COALESCE(EXCLUDED.last_success_at, m.last_success_at),
    -- NOTE: an atomic merge-add: key by key, old total + this pass's increment.
    totals = (SELECT jsonb_object_agg(
                  k, COALESCE((m.totals->>k)::float8, 0) + COALESCE((EXCLUDED.totals->>k)::float8, 0))
              FROM jsonb_object_keys(m.totals || EXCLUDED.totals) AS k)
""")
_LAST = text("SELECT * FROM maintenance_passes WHERE name = :name")
_ALL = text("""
SELECT name, status, extract(epoch FROM finished_at)::float8 AS finished_at, duration_ms,
       extract(epoch FROM last_success_at)::float8 AS last_success_at,
       extract(epoch FROM now() - finished_at)::float8 AS age_seconds, result, totals
FROM maintenance_passes ORDER BY name
""")


def bucket_of(duration_seconds: float) -> str:
    """The key of the histogram bucket a duration falls in (non-cumulative; the reader adds up)."""
    return next((f"{b:g}" for b in DURATION_BUCKETS if duration_seconds <= b), "+Inf")


def increments(status: PassStatus, duration_seconds: float) -> dict[str, float]:
    return {
        f"passes.{status.value}": 1,
        f"duration.le.{bucket_of(duration_seconds)}": 1,
        "duration.sum": duration_seconds,
        "duration.count": 1,
    }


def record(conn: Connection, name: str, *, started: float, status: PassStatus, result: Mapping[str, Any]) -> None:
    """Record one pass of ``name`` (the caller holds the pass's lock, or the row is its own)."""
    duration = max(time.time() - started, 0.0)
    conn.execute(
        _RECORD,
        {
            "name": name,
            "started": started,
            "duration_ms": duration * 1000,
            "result": json.dumps(dict(result), default=str),
            "status": status.value,
            "increments": json.dumps(increments(status, duration)),
        },
    )


def last(conn: Connection, name: str) -> dict[str, Any] | None:
    row = conn.execute(_LAST, {"name": name}).mappings().first()
    return dict(row) if row else None


def every(conn: Connection) -> list[dict[str, Any]]:
    """Every recorded pass, times as epoch seconds (the /metrics exporters' read)."""
    return [dict(r) for r in conn.execute(_ALL).mappings()]


@contextlib.contextmanager
def locked(
    engine: Engine, kind: PassKind, *, idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS
) -> Iterator[Connection | None]:
    """A transaction holding ``kind``'s lock, or None when another process holds it."""
    with engine.begin() as conn:
        if not conn.execute(sql.TRY_XACT_LOCK, {"key": kind.lock_key}).scalar():
            yield None
            return
        conn.execute(sql.PASS_IDLE_TIMEOUT, {"ms": str(int(idle_timeout_seconds * 1000))})
        yield conn


def run_once(
    engine: Engine,
    kind: PassKind,
    body: Callable[[Connection, R], None],
    result: R,
    *,
    idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS,
) -> R:
    """One single-flight pass in one transaction: ``body(conn, result)`` fills ``result``; a dry run is not recorded."""
    started = time.time()
    with locked(engine, kind, idle_timeout_seconds=idle_timeout_seconds) as conn:
        if conn is None:
            result.locked_out = True
            return result
        body(conn, result)
        result.duration_seconds = time.time() - started
        if not result.dry_run:
            record(conn, kind.name, started=started, status=result.status, result=result.as_dict())
    return result


def record_error(engine: Engine, kind: PassKind, exc: BaseException, *, started: float) -> None:
    """Best effort: record a failed pass (its work rolled back), unless another process runs the pass now."""
    with contextlib.suppress(Exception), locked(engine, kind) as conn:
        if conn is not None:
            error = {"error": type(exc).__name__}
            record(conn, kind.name, started=started, status=PassStatus.ERROR, result=error)


def loop(step: Callable[[], Any], *, interval_seconds: float, stop: threading.Event, jitter: bool = True) -> None:
    """Call ``step`` every ``interval_seconds`` until ``stop``; with ``jitter``, first wait a random part
    of an interval so that processes started together do not all wake together."""
    if jitter and stop.wait(random.uniform(0, interval_seconds)):
        return
    while not stop.is_set():
        step()
        stop.wait(interval_seconds)
