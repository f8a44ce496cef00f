"""Writes of the dead-letter mirror: the bridge's copy of Dramatiq's dead-letter sets in PostgreSQL.

The bridge reads Redis and hands plain ``MirrorLetter`` values here; this module knows no broker.
Tenant and exception come from the letter's run when the ledger has one (the worker captured the
final exception, redacted; the dead-letter payload only holds the previous attempt's traceback),
else from the letter itself. A letter whose run is not terminal yet is looked up again on later
passes until it is (``settled``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import Connection, text

#: Unsettled mirror rows re-linked to their runs per pass.
DEFAULT_LINK_BATCH = 1000

# The run's own failure record, when it has one: its reconciliation evidence (dead-lettered or
# reconciled), else its last failed attempt. Both were redacted in the worker before shipping.
_FROM_RUN = """
CASE WHEN r.reconciliation_evidence ? 'exception_type' THEN r.reconciliation_evidence ELSE r.last_error END
"""

_INSERT = text(f"""
INSERT INTO dead_letters (queue_name, redis_message_id, message_id, actor_name, exception_type, exception_message,
                          decode_error, dead_at, tenant_id, run_id, settled)
SELECT d.queue_name, d.redis_message_id, d.message_id, d.actor_name,
       COALESCE(e.record ->> 'exception_type', d.exception_type),
       COALESCE(e.record ->> 'exception_message', d.exception_message),
       d.decode_error, to_timestamp(d.dead_at), COALESCE(r.tenant_id, d.tenant_id), r.id,
       COALESCE(r.status = 'completed', false)
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS d(
    queue_name text, redis_message_id text, message_id text, actor_name text, exception_type text,
    exception_message text, decode_error text, dead_at double precision, tenant_id bigint)
LEFT JOIN operation_runs r ON r.message_id = d.message_id
LEFT JOIN LATERAL (SELECT {_FROM_RUN} AS record) e ON true
ON CONFLICT (queue_name, redis_message_id) DO NOTHING
RETURNING id
""")

_LINK = text(f"""
UPDATE dead_letters m
SET run_id = r.id, tenant_id = COALESCE(r.tenant_id, m.tenant_id),
    exception_type = COALESCE(e.record ->> 'exception_type', m.exception_type),
    exception_message = COALESCE(e.record ->> 'exception_message', m.exception_message),
    settled = (r.status = 'completed')
FROM (SELECT id FROM dead_letters WHERE NOT settled ORDER BY id LIMIT :limit) todo,
     operation_runs r, LATERAL (SELECT {_FROM_RUN} AS record) e
WHERE m.id = todo.id AND r.message_id = m.message_id
RETURNING m.id
""")

_IDS_OF_QUEUE = text("SELECT redis_message_id FROM dead_letters WHERE queue_name = :queue")
_QUEUES = text("SELECT DISTINCT queue_name FROM dead_letters ORDER BY queue_name")
_REMOVE = text("""
DELETE FROM dead_letters WHERE queue_name = :queue AND redis_message_id = ANY(CAST(:ids AS text[])) RETURNING id
""")
_REMOVE_QUEUE = text("DELETE FROM dead_letters WHERE queue_name = :queue RETURNING id")


@dataclass(frozen=True, kw_only=True)
class MirrorLetter:
    """One dead letter as Redis holds it; ``message_id`` etc. are ``None`` when it cannot be decoded."""

    queue_name: str
    redis_message_id: str
    dead_at: float  # epoch seconds of the nack
    message_id: str | None = None
    actor_name: str | None = None
    tenant_id: int | None = None
    exception_type: str | None = None
    exception_message: str | None = None  # already redacted by the caller
    decode_error: str | None = None  # already redacted by the caller


def mirrored_queues(conn: Connection) -> list[str]:
    """Queues that have letters in the mirror."""
    return list(conn.execute(_QUEUES).scalars())


def mirrored_ids(conn: Connection, queue: str) -> set[str]:
    """Redis message ids of ``queue``'s letters in the mirror."""
    return set(conn.execute(_IDS_OF_QUEUE, {"queue": queue}).scalars())


def add_letters(conn: Connection, letters: Sequence[MirrorLetter]) -> int:
    """Insert letters not mirrored yet, linked to their runs; returns how many were new."""
    if not letters:
        return 0
    return len(conn.execute(_INSERT, {"rows": json.dumps([asdict(d) for d in letters])}).all())


def remove_letters(conn: Connection, queue: str, redis_message_ids: Iterable[str]) -> int:
    """Forget letters that left Redis (requeued, purged, expired); returns how many rows went."""
    ids = list(redis_message_ids)
    if not ids:
        return 0
    return len(conn.execute(_REMOVE, {"queue": queue, "ids": ids}).all())


def remove_queue(conn: Connection, queue: str) -> int:
    """Forget every letter of a queue whose dead-letter set is gone."""
    return len(conn.execute(_REMOVE_QUEUE, {"queue": queue}).all())


def link_runs(conn: Connection, *, limit: int = DEFAULT_LINK_BATCH) -> int:
    """Take tenant and exception from runs recorded or completed since their letters were mirrored."""
    return len(conn.execute(_LINK, {"limit": limit}).all())
