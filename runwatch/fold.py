"""Fold run events into row deltas, in PostgreSQL: SQL fragments of the drain statement.

PERF: the drainer hands PostgreSQL the raw JSON of a batch; parsing, validating, expanding and
folding happen in one statement (``statements.APPLY_EVENTS``), so no event is decoded, folded
and encoded again in Python (that was ~360 us of drainer CPU per message).

The fold is order-insensitive: events are ordered by (time, stage, arrival) and every rule
depends on that order only, so producer and worker events racing each other give the same row:

- metadata (queue, type, tenant, ...): the first non-null value wins;
- the first terminal event (completed, dead-lettered) decides the outcome; a later one is
  stored, marked ``late``, and changes nothing;
- events up to the terminal one set progress, errors, the retry time; every ``started`` event
  (even one after the outcome: a duplicate delivery) counts as a delivery.

``PARSE`` yields ``ev`` (one row per event, a start folded into a later event expanded again,
duplicates within the batch removed; an invalid event raises ``runwatch_invalid_event``, a
``data_exception``, so the drainer falls back to validating in Python and rejecting the culprit).
``FOLD`` expects ``nev`` (the new events) and yields ``folded``: one delta per message.
"""

from __future__ import annotations

from . import events as ev
from .lifecycle import Outcome
from .reasons import CATALOGUE

_KINDS = ", ".join(f"'{k}'" for k in sorted(ev.KINDS))
_OUTCOMES = ", ".join(f"'{o.value}'" for o in Outcome if o is not Outcome.PENDING)
_REASONS = ", ".join(f"('{r.code}', '{r.message}', '{r.source.value}')" for r in CATALOGUE.values())
_EPOCH = "BETWEEN 946684800 AND 7258118400"  # events.validate: the years 2000-2200
_STAGE = (
    f"CASE kind WHEN '{ev.ENQUEUED}' THEN 0 WHEN '{ev.STARTED}' THEN 1 WHEN '{ev.PROGRESS}' THEN 2 "
    f"WHEN '{ev.ATTEMPT_FAILED}' THEN 3 ELSE 4 END"
)


def _epoch(expr: str) -> str:
    return f"(CASE WHEN jsonb_typeof({expr}) = 'number' THEN ({expr})::float8 {_EPOCH} ELSE false END)"


def _positive_int_or_null(expr: str) -> str:
    return (
        f"(jsonb_typeof({expr}) IS NULL OR jsonb_typeof({expr}) = 'null' OR (jsonb_typeof({expr}) = 'number'"
        f" AND ({expr})::text ~ '^[0-9]+$' AND ({expr})::numeric >= 1))"
    )


#: The twin of ``events.validate`` (a test feeds both the same bad events).
_VALID = f"""(
    jsonb_typeof(j) = 'object' AND j ?& ARRAY['id', 'kind', 'message_id', 'at', 'meta']
    AND jsonb_typeof(j->'id') = 'string' AND jsonb_typeof(j->'message_id') = 'string'
    AND j->>'kind' IN ({_KINDS}) AND {_epoch("j->'at'")}
    AND jsonb_typeof(j->'meta') = 'object' AND j->'meta' ?& ARRAY['queue', 'actor', 'type', 'created_at']
    AND {_epoch("j->'meta'->'created_at'")}
    AND {_positive_int_or_null("j->'meta'->'tenant_id'")} AND {_positive_int_or_null("j->'meta'->'retry_of'")}
    AND (NOT j ? 'start' OR jsonb_typeof(j->'start') = 'null'
         OR (jsonb_typeof(j->'start') = 'object' AND {_epoch("j->'start'->'at'")}))
    AND (NOT j ? 'summary' OR (jsonb_typeof(j->'summary') = 'object' AND NOT EXISTS (
         SELECT FROM jsonb_each(j->'summary') s
         WHERE jsonb_typeof(s.value) <> 'number' OR (s.value)::numeric < 0)))
    AND (j->>'kind' <> '{ev.COMPLETED}' OR j->>'outcome' IN ({_OUTCOMES}))
    AND (j->>'kind' <> '{ev.DEAD_LETTERED}' OR j->>'reason_code' IN (SELECT code FROM reasons))
)"""

PARSE = f"""
reasons (code, message, source) AS (VALUES {_REASONS}),
raw AS MATERIALIZED (
    SELECT e.j, e.ord, CASE WHEN NOT {_VALID} THEN runwatch_invalid_event(e.ord) END AS invalid
    FROM jsonb_array_elements(CAST(:batch AS jsonb)) WITH ORDINALITY AS e(j, ord)
),
ev AS MATERIALIZED (
    SELECT DISTINCT ON (id) id, kind, message_id, at, meta, details, ord, {_STAGE} AS stage
    FROM (
        SELECT CAST(j->>'id' AS uuid) AS id, j->>'kind' AS kind, j->>'message_id' AS message_id,
               (j->>'at')::float8 AS at, j->'meta' AS meta,
               j - ARRAY['id', 'kind', 'message_id', 'at', 'meta', 'start'] AS details, 2 * ord AS ord
        FROM raw
        UNION ALL
        -- NOTE: a deterministic id, so a redelivered stream entry dedupes the expanded start too.
        SELECT CAST(md5((j->>'id') || '.started') AS uuid), '{ev.STARTED}', j->>'message_id',
               (j->'start'->>'at')::float8, j->'meta', (j->'start') - 'at', 2 * ord - 1
        FROM raw WHERE jsonb_typeof(j->'start') = 'object'
    ) x
    ORDER BY id, ord
),
-- Terminal events after the message's first one in this batch are late (first terminal wins).
ranked AS (
    SELECT ev.*, kind IN ('{ev.COMPLETED}', '{ev.DEAD_LETTERED}') AS terminal,
           row_number() OVER (PARTITION BY message_id, kind IN ('{ev.COMPLETED}', '{ev.DEAD_LETTERED}')
                              ORDER BY at, stage, ord) AS rank
    FROM ev
)"""

_LAST = "ORDER BY at DESC, stage DESC, ord DESC"
_FIRST = "ORDER BY at, stage, ord"


def _meta(key: str, cast: str = "") -> str:
    """The first non-null value of metadata ``key`` (arrival-order-insensitive)."""
    value = f"NULLIF(meta->'{key}', 'null')"
    typed = f"({value}#>>'{{}}'){cast}" if cast else f"({value}#>>'{{}}')"
    return f"(array_agg({typed} {_FIRST}) FILTER (WHERE {value} IS NOT NULL))[1]"


FOLD = f"""
term AS (
    SELECT DISTINCT ON (message_id) message_id, kind, at, stage, ord, details
    FROM nev WHERE kind IN ('{ev.COMPLETED}', '{ev.DEAD_LETTERED}') ORDER BY message_id, at, stage, ord
),
-- Events up to and including the first terminal one: the ones that shape the row.
pre AS (
    SELECT n.* FROM nev n LEFT JOIN term t ON t.message_id = n.message_id
    WHERE t.message_id IS NULL OR (n.at, n.stage, n.ord) <= (t.at, t.stage, t.ord)
),
sums AS (
    SELECT message_id, jsonb_object_agg(s.key, s.value ORDER BY at, stage, ord) AS summary
    FROM pre, jsonb_each(pre.details->'summary') AS s
    WHERE kind IN ('{ev.PROGRESS}', '{ev.COMPLETED}') AND jsonb_typeof(pre.details->'summary') = 'object'
    GROUP BY message_id
),
everything AS (
    SELECT message_id,
        {_meta("queue")} AS queue_name, {_meta("actor")} AS actor_name, {_meta("type")} AS type,
        {_meta("label")} AS type_label, {_meta("tenant_id", "::bigint")} AS tenant_id,
        {_meta("initiator")} AS initiator_name, {_meta("created_at", "::float8")} AS created_at,
        {_meta("max_retries", "::integer")} AS max_retries, {_meta("time_limit_ms", "::bigint")} AS time_limit_ms,
        {_meta("retry_of", "::bigint")} AS retry_of,
        (array_agg(NULLIF(meta->'args', 'null') {_FIRST}) FILTER (WHERE NULLIF(meta->'args', 'null') IS NOT NULL))[1]
            AS args,
        {_meta("queued_stale_seconds", "::integer")} AS queued_override,
        {_meta("running_stale_seconds", "::integer")} AS running_override,
        count(*) FILTER (WHERE kind = '{ev.STARTED}') AS deliveries,
        max(COALESCE((details->>'attempt')::integer, 1)) FILTER (WHERE kind = '{ev.STARTED}') AS started_attempts,
        (array_agg(at {_LAST}) FILTER (WHERE NULLIF(details->>'redis_message_id', '') IS NOT NULL))[1]
            AS redis_message_id_at,
        (array_agg(details->>'redis_message_id' {_LAST})
            FILTER (WHERE NULLIF(details->>'redis_message_id', '') IS NOT NULL))[1] AS redis_message_id
    FROM nev GROUP BY message_id
),
shaped AS (
    SELECT message_id,
        bool_or(stage BETWEEN 1 AND 3) AS started,
        min(CASE WHEN kind = '{ev.STARTED}' THEN at
                 WHEN kind IN ('{ev.ATTEMPT_FAILED}', '{ev.COMPLETED}', '{ev.DEAD_LETTERED}')
                 THEN (NULLIF(details->'started_at', 'null')#>>'{{}}')::float8 END) AS started_at,
        max(COALESCE((details->>'attempt')::integer, 1)) FILTER (WHERE kind = '{ev.ATTEMPT_FAILED}') AS failed_attempts,
        (array_agg(details->>'worker_id' {_LAST}) FILTER (WHERE kind = '{ev.STARTED}'))[1] AS worker_id,
        max(at) FILTER (WHERE kind <> '{ev.ENQUEUED}' AND kind <> '{ev.DEAD_LETTERED}') AS last_progress_at,
        (array_agg(CASE WHEN kind = '{ev.ATTEMPT_FAILED}'
                        THEN (NULLIF(details->'next_retry_at', 'null')#>>'{{}}')::float8 END {_LAST})
            FILTER (WHERE stage >= 1 AND kind <> '{ev.PROGRESS}'))[1] AS next_retry_at,
        (array_agg(NULLIF(details->'progress_processed', 'null')#>>'{{}}' {_LAST})
            FILTER (WHERE NULLIF(details->'progress_processed', 'null') IS NOT NULL
                    AND kind IN ('{ev.PROGRESS}', '{ev.COMPLETED}')))[1]::float8 AS progress_processed,
        (array_agg(NULLIF(details->'progress_total', 'null')#>>'{{}}' {_LAST})
            FILTER (WHERE NULLIF(details->'progress_total', 'null') IS NOT NULL
                    AND kind IN ('{ev.PROGRESS}', '{ev.COMPLETED}')))[1]::float8 AS progress_total,
        (array_agg(details->>'operator_message' {_LAST})
            FILTER (WHERE details->>'operator_message' IS NOT NULL
                    AND kind IN ('{ev.PROGRESS}', '{ev.COMPLETED}')))[1] AS operator_message,
        (array_agg(details->'error' {_LAST}) FILTER (WHERE kind = '{ev.ATTEMPT_FAILED}'))[1] AS last_error
    FROM pre GROUP BY message_id
),
folded AS (
    SELECT a.message_id, a.queue_name, a.actor_name, a.type, a.type_label, a.tenant_id, a.initiator_name,
        to_timestamp(a.created_at) AS created_at, a.max_retries, a.time_limit_ms, a.retry_of, a.args,
        COALESCE(a.queued_override, (pol.p->'types'->a.type->>'queued')::integer, (pol.p->>'queued')::integer)
            AS queued_stale_seconds,
        COALESCE(a.running_override, (pol.p->'types'->a.type->>'running')::integer, (pol.p->>'running')::integer)
            AS running_stale_seconds,
        CASE WHEN a.queued_override IS NOT NULL OR a.running_override IS NOT NULL THEN 'actor'
             WHEN pol.p->'types'->a.type->'queued' IS NOT NULL OR pol.p->'types'->a.type->'running' IS NOT NULL
             THEN 'config' ELSE 'default' END AS threshold_source,
        CASE WHEN t.message_id IS NOT NULL THEN 'completed' WHEN s.started THEN 'running' ELSE 'queued' END AS status,
        CASE WHEN t.kind = '{ev.COMPLETED}' THEN t.details->>'outcome' WHEN t.kind IS NOT NULL THEN 'failed'
             ELSE 'pending' END AS outcome,
        a.deliveries::integer AS deliveries,
        GREATEST(a.started_attempts, s.failed_attempts, 0) AS attempts,
        COALESCE(u.summary, '{{}}') AS summary_counts,
        to_timestamp(s.started_at) AS started_at, s.worker_id, to_timestamp(s.last_progress_at) AS last_progress_at,
        to_timestamp(s.next_retry_at) AS next_retry_at, s.progress_processed, s.progress_total,
        s.operator_message, s.last_error,
        to_timestamp(t.at) AS completed_at,
        COALESCE(NULLIF(t.details->'failure_summary', 'null'), '[]') AS failure_summary,
        CASE WHEN t.kind = '{ev.DEAD_LETTERED}' THEN to_timestamp(t.at) END AS reconciled_at,
        r.source AS reconciliation_source, r.code AS reason_code, r.message AS reason_message,
        CASE WHEN r.code IS NOT NULL THEN COALESCE(NULLIF(t.details->'evidence', 'null'), '{{}}') END
            AS reconciliation_evidence,
        a.redis_message_id, to_timestamp(a.redis_message_id_at) AS redis_message_id_at
    FROM everything a
    JOIN shaped s ON s.message_id = a.message_id
    CROSS JOIN (SELECT CAST(:policy AS jsonb) AS p) pol
    LEFT JOIN term t ON t.message_id = a.message_id
    LEFT JOIN sums u ON u.message_id = a.message_id
    LEFT JOIN reasons r ON t.kind = '{ev.DEAD_LETTERED}' AND r.code = t.details->>'reason_code'
)"""
