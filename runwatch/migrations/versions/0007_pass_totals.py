"""Every periodic pass is recorded with its result, its last success and running totals for /metrics.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    -- "ok", "paused" (the healer only observed) or "error": a paused healer is not a healthy one.
    ALTER TABLE maintenance_passes ADD COLUMN status text NOT NULL DEFAULT 'ok';
    -- The last pass that did its work: "healer not passing" alerts on its age.
    ALTER TABLE maintenance_passes ADD COLUMN last_success_at timestamptz;
    -- Running totals (passes by result, the duration histogram's buckets, sum and count): the
    -- counters /metrics exposes, kept in the row because passes run in any process on any host.
    ALTER TABLE maintenance_passes ADD COLUMN totals jsonb NOT NULL DEFAULT '{}';
    UPDATE maintenance_passes SET last_success_at = finished_at;
    """)


def downgrade() -> None:
    op.execute("ALTER TABLE maintenance_passes DROP COLUMN status, DROP COLUMN last_success_at, DROP COLUMN totals;")
