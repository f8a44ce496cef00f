"""When the run's Redis message id was observed, so the newest one wins in any order of arrival.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: instant on a large table. NULL (rows from before) loses to any newer id.
    op.execute("ALTER TABLE operation_runs ADD COLUMN redis_message_id_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE operation_runs DROP COLUMN redis_message_id_at")
