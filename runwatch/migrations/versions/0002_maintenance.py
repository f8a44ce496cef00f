"""Maintenance bookkeeping: last pass of each periodic job, the message's Redis id, healer notes.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    -- One row per periodic job (bridge scan, healer, prune): when it last ran and what it found;
    -- read by `runwatch` commands and by the API's metrics (lag, last pass, duration).
    CREATE TABLE maintenance_passes (
        name         text PRIMARY KEY,
        started_at   timestamptz NOT NULL,
        finished_at  timestamptz NOT NULL,
        duration_ms  double precision NOT NULL,
        result       jsonb NOT NULL DEFAULT '{}'
    );
    -- The id under which Redis holds the current delivery (new on every enqueue): lets the healer
    -- look the message up in <queue>.msgs / .DQ.msgs with one HEXISTS instead of a scan.
    ALTER TABLE operation_runs ADD COLUMN redis_message_id text;
    -- What the healer found the last time it looked at a live run and left it alone (backlog,
    -- live worker, outage grace): the answer to "why not healed yet".
    ALTER TABLE operation_runs ADD COLUMN healer_checked_at timestamptz;
    ALTER TABLE operation_runs ADD COLUMN healer_note jsonb;
    -- Poison-pill detection looks only at live runs delivered more often than attempted.
    CREATE INDEX operation_runs_redelivered ON operation_runs (id) WHERE status = 'running' AND deliveries > attempts;
    -- Every progress report and every healed run leaves a dead stale_at index entry; vacuum at
    -- 2 % dead rows rather than the default 20 % so the healer's index scan stays short.
    ALTER TABLE operation_runs SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
    -- Retention prunes the oldest terminal runs first.
    CREATE INDEX operation_runs_completed_at ON operation_runs (completed_at) WHERE status = 'completed';
    """)


def downgrade() -> None:
    op.execute(
        "DROP TABLE maintenance_passes; ALTER TABLE operation_runs DROP COLUMN redis_message_id, "
        "DROP COLUMN healer_checked_at, DROP COLUMN healer_note;"
    )
