"""The monitoring API: bearer tokens, the cursor-signing secret, and indexes for its filters.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = """
-- Bearer tokens of the monitoring API. Only the SHA-256 of the secret is stored; the secret is
-- shown once by `runwatch tokens create`. tenant_ids NULL means every tenant (and runs with no
-- tenant); otherwise the token sees exactly those tenants.
CREATE TABLE api_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    token_hash  text NOT NULL,
    tenant_ids  bigint[],
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CONSTRAINT api_tokens_token_hash_key UNIQUE (token_hash),
    CONSTRAINT api_tokens_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT api_tokens_scope_not_empty CHECK (tenant_ids IS NULL OR cardinality(tenant_ids) > 0)
);

-- Secrets the API needs to agree on across gunicorn workers, hosts and restarts (the cursor
-- HMAC key), unless RUNWATCH_API_SECRET overrides it. Seeded from PostgreSQL's strong random
-- source (gen_random_uuid) so that no process has to write it on first use.
CREATE TABLE api_secrets (
    name        text PRIMARY KEY,
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO api_secrets (name, secret)
VALUES ('cursor', encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text
                                           || clock_timestamp()::text, 'UTF8')), 'hex'));

-- PERF: live runs are few; status queued/running and outcome pending walk this small index
-- newest first instead of every run (status is a key column, checked on the index tuple);
-- with stale_at too, /metrics counts live runs by status and freshness from the index alone.
CREATE INDEX operation_runs_live_created ON operation_runs (created_at DESC, id DESC, status, stale_at)
    WHERE status IN ('queued', 'running');
-- PERF: the freshness filters. Only live runs have a deadline (the trigger clears it on
-- completion), so "stale_at <= now()" alone is likely_stale: the planner then estimates it
-- from stale_at's own statistics instead of multiplying by P(live) as if the two were
-- independent (which made it sort every live run), and stale_at as a key column lets btree
-- skip fresh runs without visiting the heap.
CREATE INDEX operation_runs_deadline_created ON operation_runs (created_at DESC, id DESC, stale_at)
    WHERE stale_at IS NOT NULL;
-- PERF: reconciled runs are rare; serves reconciled=true, freshness reconciled_failed, the
-- reconciliation_source filter, and (index-only) the reconciliations metric.
CREATE INDEX operation_runs_reconciled_created ON operation_runs (created_at DESC, id DESC)
    INCLUDE (reconciliation_source, reason_code) WHERE reconciled_at IS NOT NULL;
-- PERF: a rare operation type would otherwise scan every run before finding a page.
CREATE INDEX operation_runs_type_created ON operation_runs (type, created_at DESC, id DESC);
"""

DOWNGRADE = """
DROP INDEX operation_runs_type_created;
DROP INDEX operation_runs_reconciled_created;
DROP INDEX operation_runs_deadline_created;
DROP INDEX operation_runs_live_created;
DROP TABLE api_secrets;
DROP TABLE api_tokens;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
