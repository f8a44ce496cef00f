"""Run counters in the ledger: /metrics without Redis (RabbitMQ shops).

One row per counter field (``runwatch.counters.field``: finished runs, reconciliations, histogram
buckets and sums, dropped events), added to by ``INSERT ... ON CONFLICT DO UPDATE``. The table is
never pruned: like the Redis hash it replaces, it holds running totals that a pruned ledger cannot
recount.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE metric_counters (
    name  text PRIMARY KEY,
    value double precision NOT NULL DEFAULT 0
)
"""

DOWNGRADE = "DROP TABLE metric_counters"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
