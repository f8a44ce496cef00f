"""Every race-critical SQL statement of the ledger, named, guarded, in one place.

Guards are ``WHERE`` clauses and rank comparisons inside the statement, never a read followed
by a write in Python; a guard that matches nothing is a normal outcome.
"""

from sqlalchemy import text

#: Insert events not seen before (idempotent redelivery from the stream); returns the ids of those
#: already logged (as given), which are duplicates. PERF: a redelivery is rare, so the answer is
#: usually empty, where returning the new ones sent every id back. PERF: ``json_to_recordset`` reads
#: the text as it goes; ``jsonb_to_recordset`` first built the whole batch as jsonb (see UPSERT_RUNS).
INSERT_EVENTS = text("""
WITH e AS (
    SELECT * FROM json_to_recordset(CAST(:events AS json))
        AS e(id text, message_id text, kind text, at double precision, details jsonb)
), added AS (
    INSERT INTO run_events (event_uuid, message_id, kind, at, details)
    SELECT CAST(e.id AS uuid), e.message_id, e.kind, to_timestamp(e.at), e.details FROM e
    ON CONFLICT (event_uuid) DO NOTHING
    RETURNING event_uuid
)
SELECT e.id FROM e WHERE NOT EXISTS (SELECT 1 FROM added a WHERE a.event_uuid = CAST(e.id AS uuid))
""")

#: Mark terminal events that lost the race to an earlier terminal transition.
MARK_LATE = text("UPDATE run_events SET late = true WHERE event_uuid = ANY(CAST(:ids AS uuid[]))")

_RANK = "CASE {0} WHEN 'queued' THEN 1 WHEN 'running' THEN 2 ELSE 3 END"
_BECOMES_TERMINAL = "(r.status <> 'completed' AND EXCLUDED.status = 'completed')"
_NEWER_PROGRESS = "EXCLUDED.last_progress_at >= COALESCE(r.last_progress_at, '-infinity')"
#: A message gets a new Redis id on every enqueue (a retry, leaving the delay queue): the id seen
#: last wins, by when it was seen, not by when its event happened to be applied.
_NEWER_REDIS_ID = (
    "(EXCLUDED.redis_message_id IS NOT NULL"
    " AND EXCLUDED.redis_message_id_at >= COALESCE(r.redis_message_id_at, '-infinity'))"
)

#: What a statement that ends runs returns for /metrics (``runwatch.run_metrics``): who finished how, and when.
_FINISHED_RETURNING = "r.type, r.queue_name, r.outcome, r.created_at, r.started_at, r.completed_at"
_FINISHED_COLUMNS = """type, queue_name, outcome, reconciliation_source AS source, reason_code,
    extract(epoch FROM created_at)::float8 AS created_at, extract(epoch FROM started_at)::float8 AS started_at,
    extract(epoch FROM completed_at)::float8 AS completed_at"""

#: Fold deltas into runs. Monotonic: status only climbs the rank ladder, a terminal row is
#: never touched (the DO UPDATE guard), counters merge, the newest progress wins. PERF: the batch
#: is read as ``json``, not ``jsonb``: PostgreSQL then parses each row's fields once, where the jsonb
#: form first built the whole batch as a jsonb value and then took it apart again (bench/drain.py:
#: ~4 us of PostgreSQL per message less, of ~70).
UPSERT_RUNS = text(f"""
INSERT INTO operation_runs AS r (
    message_id, queue_name, actor_name, type, type_label, tenant_id, initiator_name, created_at,
    max_retries, time_limit_ms, retry_of, args, queued_stale_seconds, running_stale_seconds,
    threshold_source, status, outcome, deliveries, attempts, summary_counts, started_at, worker_id,
    last_progress_at, next_retry_at, progress_processed, progress_total, operator_message, last_error,
    completed_at, failure_summary, reconciled_at, reconciliation_source, reason_code, reason_message,
    reconciliation_evidence, redis_message_id, redis_message_id_at)
SELECT d.message_id, d.queue_name, d.actor_name, d.type, d.type_label, d.tenant_id, d.initiator_name,
    to_timestamp(d.created_at), d.max_retries, d.time_limit_ms,
    (SELECT p.id FROM operation_runs p WHERE p.id = d.retry_of),  -- NOTE: a pruned original is no reason to lose a run
    d.args, d.queued_stale_seconds,
    d.running_stale_seconds, d.threshold_source, d.status, d.outcome, d.deliveries, d.attempts,
    d.summary_counts, to_timestamp(d.started_at), d.worker_id, to_timestamp(d.last_progress_at),
    to_timestamp(d.next_retry_at), d.progress_processed, d.progress_total, d.operator_message, d.last_error,
    to_timestamp(d.completed_at), COALESCE(d.failure_summary, '[]'), to_timestamp(d.reconciled_at),
    d.reconciliation_source, d.reason_code, d.reason_message, d.reconciliation_evidence, d.redis_message_id,
    to_timestamp(d.redis_message_id_at)
FROM json_to_recordset(CAST(:rows AS json)) AS d(
    message_id text, queue_name text, actor_name text, type text, type_label text, tenant_id bigint,
    initiator_name text, created_at double precision, max_retries integer, time_limit_ms bigint,
    retry_of bigint, args jsonb, queued_stale_seconds integer, running_stale_seconds integer,
    threshold_source text, status text, outcome text, deliveries integer, attempts integer,
    summary_counts jsonb, started_at double precision, worker_id text, last_progress_at double precision,
    next_retry_at double precision, progress_processed double precision, progress_total double precision,
    operator_message text, last_error jsonb, completed_at double precision, failure_summary jsonb,
    reconciled_at double precision, reconciliation_source text, reason_code text, reason_message text,
    reconciliation_evidence jsonb, redis_message_id text, redis_message_id_at double precision)
ON CONFLICT (message_id) DO UPDATE SET
    status = CASE WHEN {_RANK.format("EXCLUDED.status")} > {_RANK.format("r.status")}
                  THEN EXCLUDED.status ELSE r.status END,
    outcome = CASE WHEN {_BECOMES_TERMINAL} THEN EXCLUDED.outcome ELSE r.outcome END,
    completed_at = CASE WHEN {_BECOMES_TERMINAL} THEN EXCLUDED.completed_at ELSE r.completed_at END,
    failure_summary = CASE WHEN {_BECOMES_TERMINAL} THEN EXCLUDED.failure_summary
                           ELSE r.failure_summary END,
    reconciled_at = CASE WHEN {_BECOMES_TERMINAL} THEN EXCLUDED.reconciled_at ELSE r.reconciled_at END,
    reconciliation_source = CASE WHEN {_BECOMES_TERMINAL} THEN EXCLUDED.reconciliation_source
                                 ELSE r.reconciliation_source END,
    reason_code = CASE WHEN {_BECOMES_TERMINAL} THEN EXCLUDED.reason_code ELSE r.reason_code END,
    reason_message = CASE WHEN {_BECOMES_TERMINAL} THEN EXCLUDED.reason_message ELSE r.reason_message END,
    reconciliation_evidence = CASE WHEN {_BECOMES_TERMINAL} THEN EXCLUDED.reconciliation_evidence
                                   ELSE r.reconciliation_evidence END,
    created_at = LEAST(r.created_at, EXCLUDED.created_at),
    tenant_id = COALESCE(r.tenant_id, EXCLUDED.tenant_id),
    initiator_name = COALESCE(r.initiator_name, EXCLUDED.initiator_name),
    type_label = COALESCE(r.type_label, EXCLUDED.type_label),
    max_retries = COALESCE(EXCLUDED.max_retries, r.max_retries),
    time_limit_ms = COALESCE(EXCLUDED.time_limit_ms, r.time_limit_ms),
    retry_of = COALESCE(r.retry_of, EXCLUDED.retry_of),
    args = COALESCE(r.args, EXCLUDED.args),
    deliveries = r.deliveries + EXCLUDED.deliveries,
    attempts = GREATEST(r.attempts, EXCLUDED.attempts),
    started_at = LEAST(r.started_at, EXCLUDED.started_at),
    summary_counts = CASE WHEN {_NEWER_PROGRESS} THEN r.summary_counts || EXCLUDED.summary_counts
                          ELSE EXCLUDED.summary_counts || r.summary_counts END,
    worker_id = CASE WHEN {_NEWER_PROGRESS} THEN COALESCE(EXCLUDED.worker_id, r.worker_id)
                     ELSE r.worker_id END,
    progress_processed = CASE WHEN {_NEWER_PROGRESS}
                              THEN COALESCE(EXCLUDED.progress_processed, r.progress_processed)
                              ELSE r.progress_processed END,
    progress_total = CASE WHEN {_NEWER_PROGRESS} THEN COALESCE(EXCLUDED.progress_total, r.progress_total)
                          ELSE r.progress_total END,
    operator_message = CASE WHEN {_NEWER_PROGRESS} THEN COALESCE(EXCLUDED.operator_message, r.operator_message)
                            ELSE r.operator_message END,
    last_error = COALESCE(EXCLUDED.last_error, r.last_error),
    next_retry_at = CASE WHEN {_NEWER_PROGRESS} THEN EXCLUDED.next_retry_at ELSE r.next_retry_at END,
    redis_message_id = CASE WHEN {_NEWER_REDIS_ID} THEN EXCLUDED.redis_message_id ELSE r.redis_message_id END,
    redis_message_id_at = CASE WHEN {_NEWER_REDIS_ID} THEN EXCLUDED.redis_message_id_at
                               ELSE r.redis_message_id_at END,
    last_progress_at = GREATEST(r.last_progress_at, EXCLUDED.last_progress_at)
WHERE r.status <> 'completed'
-- NOTE: a row written here with status completed just ended (a terminal row is never written):
-- what /metrics counts and times, from the row, so a start applied in an earlier batch is known.
RETURNING r.message_id, r.status = 'completed' AS finished, r.type, r.queue_name, r.outcome,
    r.reconciliation_source AS source, r.reason_code, extract(epoch FROM r.created_at)::float8 AS created_at,
    extract(epoch FROM r.started_at)::float8 AS started_at, extract(epoch FROM r.completed_at)::float8 AS completed_at
""")

#: Deliveries that reached the ledger after their run ended (a duplicate delivery, or a start
#: applied by another drainer after the outcome): counted, while nothing else of the run changes.
COUNT_LATE_DELIVERIES = text("""
UPDATE operation_runs AS r SET deliveries = r.deliveries + d.deliveries, attempts = GREATEST(r.attempts, d.attempts)
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS d(message_id text, deliveries integer, attempts integer)
WHERE r.message_id = d.message_id AND r.status = 'completed'
""")

#: Single-flight for periodic passes: transaction-scoped, so a crashed pass can never hold it.
TRY_XACT_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")

#: ... nor a stalled one (a frozen process, a hung broker call between two statements): PostgreSQL
#: ends a session idle in its transaction this long, which frees the lock for the other processes.
PASS_IDLE_TIMEOUT = text("SELECT set_config('idle_in_transaction_session_timeout', :ms, true)")

#: For the healer's transaction only. A bitmap scan never marks the dead index entries a pass
#: leaves behind (each healed run's old stale_at), so every pass until VACUUM would revisit
#: them: ~80 ms instead of ~5 ms at 1M runs. JIT costs ~150 ms on queries that run in < 1 ms.
HEALER_PLANNER_SETTINGS = text("SET LOCAL enable_bitmapscan = off; SET LOCAL jit = off")

#: Live runs past their deadline, oldest deadline first (an index scan on operation_runs_stale_at).
#: SKIP LOCKED: a run a drainer is writing right now is looked at next pass, not waited for.
HEAL_CANDIDATES = text("""
SELECT id, message_id, type, queue_name, status, tenant_id, worker_id, redis_message_id, created_at,
       started_at, last_progress_at, next_retry_at, stale_at, queued_stale_seconds, running_stale_seconds,
       threshold_source, time_limit_ms, attempts, deliveries, now() AS db_now
FROM operation_runs
WHERE status IN ('queued', 'running') AND stale_at <= now()
  AND (CAST(:types AS text[]) IS NULL OR type = ANY(CAST(:types AS text[])))
  AND (CAST(:tenants AS bigint[]) IS NULL OR tenant_id = ANY(CAST(:tenants AS bigint[])))
  AND NOT (type = ANY(CAST(:opted_out AS text[])))
ORDER BY stale_at
LIMIT :limit
FOR UPDATE SKIP LOCKED
""")

#: Reconcile stale runs and log each in the event log. Guarded: only a run still in the status
#: the healer saw, still past its deadline; a run that completed (or progressed) meanwhile keeps
#: its own outcome.
RECONCILE_STALE = text(f"""
WITH done AS (
    UPDATE operation_runs AS r SET
        status = 'completed', outcome = 'failed', completed_at = now(), reconciled_at = now(),
        reconciliation_source = d.source, reason_code = d.reason_code,
        reason_message = d.reason_message, reconciliation_evidence = d.evidence,
        failure_summary = jsonb_build_array(jsonb_build_object('code', d.reason_code, 'message', d.reason_message)),
        healer_checked_at = now(), healer_note = d.evidence
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS d(id bigint, status text, reason_code text, reason_message text, source text, evidence jsonb)
    WHERE r.id = d.id AND r.status = d.status AND r.stale_at <= now()
    RETURNING r.message_id, r.reason_code, r.reconciliation_source, r.reconciliation_evidence, {_FINISHED_RETURNING}
), logged AS (
    -- PERF: the reconciliation event is written by the same statement; the evidence never
    -- travels back to Python and out again.
    INSERT INTO run_events (event_uuid, message_id, kind, at, details)
    SELECT gen_random_uuid(), message_id, 'reconciled', now(),
           jsonb_build_object('source', reconciliation_source, 'reason_code', reason_code,
                              'evidence', reconciliation_evidence)
    FROM done
)
SELECT {_FINISHED_COLUMNS} FROM done
""")


#: Remember why a stale run was left alone (backlog, live worker, grace): "why not healed yet".
NOTE_SKIPPED = text("""
UPDATE operation_runs AS r SET healer_checked_at = now(), healer_note = d.note
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS d(id bigint, note jsonb)
WHERE r.id = d.id AND r.status <> 'completed'
""")

#: Poison pills: live runs delivered again and again without a new attempt (a crash, an OOM
#: kill: Dramatiq does not count redeliveries as retries). The deliveries of each within the
#: window come from the event log, so the evidence can list them.
POISON_CANDIDATES = text("""
SELECT r.id, r.message_id, r.queue_name, r.redis_message_id, r.status, r.attempts, r.deliveries,
       d.starts, d.deliveries_seen
FROM operation_runs r
CROSS JOIN LATERAL (
    SELECT count(*) AS starts,
           jsonb_agg(jsonb_build_object('at', e.at, 'worker_id', COALESCE(e.details->'start', e.details)->>'worker_id',
                                        'attempt', COALESCE(e.details->'start', e.details)->'attempt')
                     ORDER BY e.at) AS deliveries_seen
    FROM run_events e
    -- NOTE: a start folded into its outcome's row (ledger.apply_events) is a delivery too.
    WHERE e.message_id = r.message_id AND (e.kind = 'started' OR e.details ? 'start')
      AND e.at > now() - make_interval(secs => :window)
) d
WHERE r.status = 'running' AND r.deliveries > r.attempts
  AND r.deliveries - r.attempts >= :max_crash
  AND d.starts > :max_crash
ORDER BY r.id
LIMIT :limit
FOR UPDATE OF r SKIP LOCKED
""")

#: One delivery's poison-pill check, for a worker about to process a redelivered message
#: (``workers.poison_gate``, on RabbitMQ, where the healer cannot take a message out of its
#: queue): POISON_CANDIDATES' condition for one run, found by message id; a row when it is one.
#: No lock: it only reads. ``tests/integration/test_poison_gate.py`` keeps the two in step.
POISON_PILL = text("""
SELECT r.id, r.attempts, r.deliveries, d.starts
FROM operation_runs r
CROSS JOIN LATERAL (
    SELECT count(*) AS starts
    FROM run_events e
    WHERE e.message_id = r.message_id AND (e.kind = 'started' OR e.details ? 'start')
      AND e.at > now() - make_interval(secs => :window)
) d
WHERE r.message_id = :message_id AND r.status = 'running' AND r.deliveries > r.attempts
  AND r.deliveries - r.attempts >= :max_crash
  AND d.starts > :max_crash
""")

#: For the poison gate's transaction only: a worker never waits long on the ledger.
LOCAL_STATEMENT_TIMEOUT = text("SELECT set_config('statement_timeout', :ms, true)")

#: Reconcile a poison pill: guarded on the run still running, whatever its deadline.
RECONCILE_POISON = text(f"""
WITH done AS (
    UPDATE operation_runs AS r SET
        status = 'completed', outcome = 'failed', completed_at = now(), reconciled_at = now(),
        reconciliation_source = 'scheduled_reconciler', reason_code = :reason_code,
        reason_message = :reason_message, reconciliation_evidence = CAST(:evidence AS jsonb),
        failure_summary = jsonb_build_array(
            jsonb_build_object('code', 'job.poison_pill', 'message', CAST(:reason_message AS text))),
        healer_checked_at = now(), healer_note = CAST(:evidence AS jsonb)
    WHERE r.id = :id AND r.status = 'running'
    RETURNING r.message_id, r.reason_code, r.reconciliation_source, r.reconciliation_evidence, {_FINISHED_RETURNING}
), logged AS (
    INSERT INTO run_events (event_uuid, message_id, kind, at, details)
    SELECT gen_random_uuid(), message_id, 'reconciled', now(),
           jsonb_build_object('source', 'scheduled_reconciler', 'reason_code', reason_code,
                              'evidence', reconciliation_evidence)
    FROM done
)
SELECT {_FINISHED_COLUMNS} FROM done
""")

#: Add run counter increments (``runwatch.counter_store``): one statement for a batch of fields.
#: NOTE: rows are locked in name order (the ORDER BY), so two adds of overlapping fields queue
#: behind each other instead of deadlocking; GROUP BY merges a name given twice (ON CONFLICT
#: cannot touch one row twice in one statement).
ADD_METRIC_COUNTERS = text("""
INSERT INTO metric_counters AS m (name, value)
SELECT i.name, sum(i.value)
FROM unnest(CAST(:names AS text[]), CAST(:amounts AS float8[])) AS i(name, value)
GROUP BY i.name
ORDER BY i.name
ON CONFLICT (name) DO UPDATE SET value = m.value + EXCLUDED.value
""")
