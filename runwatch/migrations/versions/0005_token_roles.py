"""Token roles: ``viewer`` reads, ``operator`` may also act (requeue, purge).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = """
-- NOTE: a constant default is instant on PostgreSQL 11+; every existing token stays read-only.
ALTER TABLE api_tokens ADD COLUMN role text NOT NULL DEFAULT 'viewer',
    ADD CONSTRAINT api_tokens_role_known CHECK (role IN ('viewer', 'operator'));
"""

DOWNGRADE = "ALTER TABLE api_tokens DROP COLUMN role"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
