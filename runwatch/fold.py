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

``PARSE`` yields ``ordered`` (one row per event, a start folded into a later event expanded
again, duplicates within the batch removed, with its place ``seq`` in its message's order and
the place ``term_seq`` of the message's first terminal event; an invalid event raises
``runwatch_invalid_event``, a ``data_exception``, so the drainer falls back to validating in
Python and rejecting the culprit). ``FOLD`` expects ``nev`` (the rows of ``ordered`` not seen
before) and yields ``folded``: one delta per message.
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
-- record: the log row that carries the event (a folded start lives in its outcome's row);
-- logged: whether the event gets a row of its own (see statements.APPLY_EVENTS).
ev AS MATERIALIZED (
    SELECT DISTINCT ON (id) id, kind, message_id, at, meta, details, ord, {_STAGE} AS stage, record, logged
    FROM (
        SELECT CAST(j->>'id' AS uuid) AS id, j->>'kind' AS kind, j->>'message_id' AS message_id,
               (j->>'at')::float8 AS at, j->'meta' AS meta,
               j - ARRAY['id', 'kind', 'message_id', 'at', 'meta'] AS details, 2 * ord AS ord,
               CAST(j->>'id' AS uuid) AS record,
               j->>'kind' <> '{ev.ENQUEUED}' OR NULLIF(j->'delay_ms', 'null') IS NOT NULL
                   OR j ? 'moved_out_of_delay_queue' AS logged
        FROM raw WHERE invalid IS NULL
        UNION ALL
        -- NOTE: a deterministic id, so a redelivered stream entry dedupes the expanded start too.
        SELECT CAST(md5((j->>'id') || '.started') AS uuid), '{ev.STARTED}', j->>'message_id',
               (j->'start'->>'at')::float8, j->'meta', (j->'start') - 'at', 2 * ord - 1,
               CAST(j->>'id' AS uuid), false
        FROM raw WHERE invalid IS NULL AND jsonb_typeof(j->'start') = 'object'
    ) x
    ORDER BY id, ord
),
-- seq: the event's place in its message's order; term_seq: the place of its first terminal event.
ranked AS MATERIALIZED (
    SELECT ev.*, kind IN ('{ev.COMPLETED}', '{ev.DEAD_LETTERED}') AS terminal,
           row_number() OVER (PARTITION BY message_id ORDER BY at, stage, ord) AS seq
    FROM ev
),
ordered AS (
    SELECT r.*, min(CASE WHEN terminal THEN seq END) OVER (PARTITION BY message_id) AS term_seq FROM ranked r
)"""


def _pick(expr: str, where: str = "true", *, last: bool = False) -> str:
    """The first (or last) non-null text ``expr`` in the message's order, among events ``where``.

    PERF: min/max over "zero-padded seq || value" needs no sort per group, unlike
    ``array_agg(... ORDER BY ...)``, which cost ~40 us per message.
    """
    agg = "max" if last else "min"
    return (
        f"substr({agg}((lpad(seq::text, 7, '0') || ({expr})) COLLATE \"C\")"
        f" FILTER (WHERE ({expr}) IS NOT NULL AND {where}), 8)"
    )


def _meta(key: str) -> str:
    """The first non-null value of metadata ``key`` (as text)."""
    return _pick(f"NULLIF(meta->'{key}', 'null')#>>'{{}}'")


_PRE = "(term_seq IS NULL OR seq <= term_seq)"  # up to and including the first terminal event
_TERMINAL = f"kind IN ('{ev.COMPLETED}', '{ev.DEAD_LETTERED}')"

FOLD = f"""
sums AS (
    SELECT message_id, jsonb_object_agg(s.key, s.value ORDER BY seq) AS summary
    FROM nev, jsonb_each(nev.details->'summary') AS s
    WHERE kind IN ('{ev.PROGRESS}', '{ev.COMPLETED}') AND {_PRE}
    GROUP BY message_id
),
agg AS (
    SELECT message_id,
        {_meta("queue")} AS queue_name, {_meta("actor")} AS actor_name, {_meta("type")} AS type,
        {_meta("label")} AS type_label, {_meta("tenant_id")}::bigint AS tenant_id,
        {_meta("initiator")} AS initiator_name, {_meta("created_at")}::float8 AS created_at,
        {_meta("max_retries")}::integer AS max_retries, {_meta("time_limit_ms")}::bigint AS time_limit_ms,
        {_meta("retry_of")}::bigint AS retry_of, {_pick("NULLIF(meta->'args', 'null')::text")}::jsonb AS args,
        {_meta("queued_stale_seconds")}::integer AS queued_override,
        {_meta("running_stale_seconds")}::integer AS running_override,
        min(term_seq) AS term_seq,
        count(*) FILTER (WHERE kind = '{ev.STARTED}') AS deliveries,
        max(COALESCE((details->>'attempt')::integer, 1)) FILTER (WHERE kind = '{ev.STARTED}') AS started_attempts,
        {_pick("NULLIF(details->>'redis_message_id', '') || '|' || at::text", last=True)} AS redis_id_at,
        bool_or(stage BETWEEN 1 AND 3 AND {_PRE}) AS started,
        min(CASE WHEN kind = '{ev.STARTED}' THEN at
                 WHEN kind IN ('{ev.ATTEMPT_FAILED}', '{ev.COMPLETED}', '{ev.DEAD_LETTERED}')
                 THEN (NULLIF(details->'started_at', 'null')#>>'{{}}')::float8 END) FILTER (WHERE {_PRE}) AS started_at,
        max(COALESCE((details->>'attempt')::integer, 1)) FILTER (WHERE kind = '{ev.ATTEMPT_FAILED}' AND {_PRE})
            AS failed_attempts,
        {_pick("details->>'worker_id'", f"kind = '{ev.STARTED}' AND {_PRE}", last=True)} AS worker_id,
        max(at) FILTER (WHERE kind <> '{ev.ENQUEUED}' AND kind <> '{ev.DEAD_LETTERED}' AND {_PRE})
            AS last_progress_at,
        NULLIF({_pick(
            f"CASE WHEN kind = '{ev.ATTEMPT_FAILED}'"
            " THEN COALESCE(NULLIF(details->'next_retry_at', 'null')#>>'{}', '') ELSE '' END",
            f"stage >= 1 AND kind <> '{ev.PROGRESS}' AND {_PRE}", last=True)}, '')::float8 AS next_retry_at,
        {_pick("NULLIF(details->'progress_processed', 'null')#>>'{}'",
               f"kind IN ('{ev.PROGRESS}', '{ev.COMPLETED}') AND {_PRE}", last=True)}::float8 AS progress_processed,
        {_pick("NULLIF(details->'progress_total', 'null')#>>'{}'",
               f"kind IN ('{ev.PROGRESS}', '{ev.COMPLETED}') AND {_PRE}", last=True)}::float8 AS progress_total,
        {_pick("details->>'operator_message'",
               f"kind IN ('{ev.PROGRESS}', '{ev.COMPLETED}') AND {_PRE}", last=True)} AS operator_message,
        {_pick("(details->'error')::text", f"kind = '{ev.ATTEMPT_FAILED}' AND {_PRE}", last=True)}::jsonb AS last_error
    FROM nev GROUP BY message_id
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
        CASE WHEN t.message_id IS NOT NULL THEN 'completed' WHEN a.started THEN 'running' ELSE 'queued' END AS status,
        CASE WHEN t.kind = '{ev.COMPLETED}' THEN t.details->>'outcome' WHEN t.kind IS NOT NULL THEN 'failed'
             ELSE 'pending' END AS outcome,
        a.deliveries::integer AS deliveries,
        GREATEST(a.started_attempts, a.failed_attempts, 0) AS attempts,
        COALESCE(u.summary, '{{}}') AS summary_counts,
        to_timestamp(a.started_at) AS started_at, a.worker_id, to_timestamp(a.last_progress_at) AS last_progress_at,
        to_timestamp(a.next_retry_at) AS next_retry_at, a.progress_processed, a.progress_total,
        a.operator_message, a.last_error,
        to_timestamp(t.at) AS completed_at,
        COALESCE(NULLIF(t.details->'failure_summary', 'null'), '[]') AS failure_summary,
        CASE WHEN t.kind = '{ev.DEAD_LETTERED}' THEN to_timestamp(t.at) END AS reconciled_at,
        r.source AS reconciliation_source, r.code AS reason_code, r.message AS reason_message,
        CASE WHEN r.code IS NOT NULL THEN COALESCE(NULLIF(t.details->'evidence', 'null'), '{{}}') END
            AS reconciliation_evidence,
        split_part(a.redis_id_at, '|', 1) AS redis_message_id,
        to_timestamp(NULLIF(split_part(a.redis_id_at, '|', 2), '')::float8) AS redis_message_id_at
    FROM agg a
    CROSS JOIN (SELECT CAST(:policy AS jsonb) AS p) pol
    LEFT JOIN nev t ON t.message_id = a.message_id AND t.seq = a.term_seq AND t.{_TERMINAL}
    LEFT JOIN sums u ON u.message_id = a.message_id
    LEFT JOIN reasons r ON t.kind = '{ev.DEAD_LETTERED}' AND r.code = t.details->>'reason_code'
)"""
