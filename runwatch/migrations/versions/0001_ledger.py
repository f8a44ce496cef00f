"""The run ledger: operation runs, their event log, and the lifecycle enforced in the database.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE operation_runs (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id              text NOT NULL,
    type                    text NOT NULL,
    type_label              text,
    queue_name              text NOT NULL,
    actor_name              text NOT NULL,
    status                  text NOT NULL,
    outcome                 text NOT NULL,
    tenant_id               bigint,
    initiator_name          text,
    operator_message        text,
    summary_counts          jsonb NOT NULL DEFAULT '{}',
    failure_summary         jsonb NOT NULL DEFAULT '[]',
    progress_processed      double precision,
    progress_total          double precision,
    attempts                integer NOT NULL DEFAULT 0,
    deliveries              integer NOT NULL DEFAULT 0,
    max_retries             integer,
    time_limit_ms           bigint,
    last_error              jsonb,
    next_retry_at           timestamptz,
    worker_id               text,
    queued_stale_seconds    integer NOT NULL,
    running_stale_seconds   integer NOT NULL,
    threshold_source        text NOT NULL,
    created_at              timestamptz NOT NULL,
    started_at              timestamptz,
    completed_at            timestamptz,
    last_progress_at        timestamptz,
    stale_at                timestamptz,
    reconciled_at           timestamptz,
    reconciliation_source   text,
    reason_code             text,
    reason_message          text,
    reconciliation_evidence jsonb,
    retry_of                bigint REFERENCES operation_runs (id) ON DELETE SET NULL,
    args                    jsonb,
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT operation_runs_message_id_key UNIQUE (message_id),
    CONSTRAINT runwatch_state CHECK (
        (status IN ('queued', 'running') AND outcome = 'pending'
            AND completed_at IS NULL AND reconciled_at IS NULL)
        OR (status = 'completed' AND outcome IN ('succeeded', 'partially_succeeded', 'blocked', 'failed')
            AND completed_at IS NOT NULL AND (reconciled_at IS NULL OR outcome = 'failed'))
    ),
    CONSTRAINT runwatch_reconciliation_complete CHECK (
        (reconciled_at IS NULL AND reconciliation_source IS NULL AND reason_code IS NULL
            AND reason_message IS NULL AND reconciliation_evidence IS NULL)
        OR (reconciled_at IS NOT NULL AND reconciliation_evidence IS NOT NULL
            AND reconciliation_source IN ('failed_callback', 'scheduled_reconciler', 'adapter_reconciler')
            AND reason_code IN ('run.queue_failure_bridge', 'run.infrastructure_timeout_or_abandonment',
                                'run.stale_queued', 'run.stale_running', 'run.adapter_out_of_sync')
            AND reason_message IS NOT NULL)
    ),
    CONSTRAINT runwatch_summary_is_object CHECK (jsonb_typeof(summary_counts) = 'object'),
    CONSTRAINT runwatch_failure_summary_is_array CHECK (jsonb_typeof(failure_summary) = 'array'),
    CONSTRAINT runwatch_tenant_positive CHECK (tenant_id IS NULL OR tenant_id > 0),
    CONSTRAINT runwatch_thresholds_positive CHECK (queued_stale_seconds > 0 AND running_stale_seconds > 0)
);

-- The list endpoint: newest first with a keyset cursor, optionally within one tenant.
CREATE INDEX operation_runs_created ON operation_runs (created_at DESC, id DESC);
CREATE INDEX operation_runs_tenant_created ON operation_runs (tenant_id, created_at DESC, id DESC);
-- Freshness filter and the healer: only live runs have a deadline, so the index stays small.
CREATE INDEX operation_runs_stale_at ON operation_runs (stale_at) WHERE status IN ('queued', 'running');
CREATE INDEX operation_runs_retry_of ON operation_runs (retry_of) WHERE retry_of IS NOT NULL;

CREATE TABLE run_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_uuid  uuid NOT NULL,
    message_id  text NOT NULL,
    kind        text NOT NULL,
    at          timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    late        boolean NOT NULL DEFAULT false,
    details     jsonb NOT NULL DEFAULT '{}',
    CONSTRAINT run_events_event_uuid_key UNIQUE (event_uuid)
);
CREATE INDEX run_events_message ON run_events (message_id, at);

-- Lifecycle guard, the database twin of runwatch/lifecycle.py TRANSITIONS. It also keeps
-- stale_at derived from the row, so every writer (recorder, healer, bridge) agrees on it.
CREATE FUNCTION runwatch_guard_run() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_state text;
    new_state text;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        old_state := OLD.status || '/' || OLD.outcome || '/' || (OLD.reconciled_at IS NOT NULL)::text;
        new_state := NEW.status || '/' || NEW.outcome || '/' || (NEW.reconciled_at IS NOT NULL)::text;
        IF OLD.status = 'completed' AND (
            old_state <> new_state
            OR NEW.completed_at IS DISTINCT FROM OLD.completed_at
            OR NEW.reconciled_at IS DISTINCT FROM OLD.reconciled_at
            OR NEW.reason_code IS DISTINCT FROM OLD.reason_code
            OR NEW.reconciliation_evidence IS DISTINCT FROM OLD.reconciliation_evidence
        ) THEN
            RAISE EXCEPTION 'terminal run % cannot change (% -> %)', OLD.id, old_state, new_state
                USING ERRCODE = 'check_violation', CONSTRAINT = 'runwatch_terminal_immutable';
        END IF;
        IF old_state <> new_state AND (old_state, new_state) NOT IN (
            ('queued/pending/false', 'running/pending/false'),
            ('running/pending/false', 'completed/succeeded/false'),
            ('running/pending/false', 'completed/partially_succeeded/false'),
            ('running/pending/false', 'completed/blocked/false'),
            ('running/pending/false', 'completed/failed/false'),
            ('queued/pending/false', 'completed/blocked/false'),
            ('queued/pending/false', 'completed/failed/true'),
            ('running/pending/false', 'completed/failed/true')
        ) AND NOT (NEW.started_at IS NOT NULL AND (old_state, new_state) IN (
            -- through running in one write (lifecycle.THROUGH_RUNNING): a run that started and
            -- finished between two flushes of the recorder
            ('queued/pending/false', 'completed/succeeded/false'),
            ('queued/pending/false', 'completed/partially_succeeded/false'),
            ('queued/pending/false', 'completed/failed/false')
        )) THEN
            RAISE EXCEPTION 'illegal run transition % -> % for run %', old_state, new_state, OLD.id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'runwatch_legal_transition';
        END IF;
        NEW.updated_at := now();
    END IF;
    NEW.stale_at := CASE NEW.status
        WHEN 'queued' THEN NEW.created_at + make_interval(secs => NEW.queued_stale_seconds)
        WHEN 'running' THEN GREATEST(COALESCE(NEW.last_progress_at, NEW.started_at, NEW.created_at),
                                     NEW.next_retry_at)
                            + make_interval(secs => NEW.running_stale_seconds)
    END;
    RETURN NEW;
END
$$;

CREATE TRIGGER runwatch_guard_run BEFORE INSERT OR UPDATE ON operation_runs
    FOR EACH ROW EXECUTE FUNCTION runwatch_guard_run();
"""

DOWNGRADE = """
DROP TABLE run_events;
DROP TABLE operation_runs;
DROP FUNCTION runwatch_guard_run();
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
