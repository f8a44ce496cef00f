"""A delayed send is not stale before its eta: a queued run's deadline starts at its eta.

``send_with_options(delay=...)`` records the eta in ``next_retry_at`` (``fold._enqueued``), and
this trigger, fired after ``runwatch_guard_run`` (same-event triggers fire in name order), moves a
queued run's ``stale_at`` to ``eta + queued_stale_seconds``. Without it a job delayed longer than
its queued threshold was likely stale while it waited as asked; on Redis the healer found it in
the delay queue, but on RabbitMQ a delayed message waits unacknowledged in a worker's prefetch,
where queue counts cannot see it, and the run was failed. The ``WHEN`` clause keeps every other
write free of a second trigger call.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE FUNCTION runwatch_queued_from_eta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.stale_at := GREATEST(NEW.created_at, NEW.next_retry_at) + make_interval(secs => NEW.queued_stale_seconds);
    RETURN NEW;
END
$$;

CREATE TRIGGER runwatch_queued_from_eta BEFORE INSERT OR UPDATE ON operation_runs
    FOR EACH ROW WHEN (NEW.status = 'queued' AND NEW.next_retry_at IS NOT NULL)
    EXECUTE FUNCTION runwatch_queued_from_eta();
"""

DOWNGRADE = """
DROP TRIGGER runwatch_queued_from_eta ON operation_runs;
DROP FUNCTION runwatch_queued_from_eta();
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
