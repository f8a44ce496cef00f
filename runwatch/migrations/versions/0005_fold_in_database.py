"""The drain statement folds events in PostgreSQL: a way for it to refuse an invalid event.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = """
-- Raised by statements.APPLY_EVENTS for an event that fails validation (fold._VALID): a
-- data_exception, so the drainer validates that batch in Python and rejects the culprit with its
-- reason, applying the rest.
CREATE FUNCTION runwatch_invalid_event(event_index bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'run event % of the batch failed validation', event_index
        USING ERRCODE = 'data_exception';
END
$$;
"""

DOWNGRADE = "DROP FUNCTION runwatch_invalid_event(bigint);"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
