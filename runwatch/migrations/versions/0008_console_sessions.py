"""Console sessions: a browser signs in with a token and keeps only a cookie.

The table stores the SHA-256 of the cookie value, never the value itself, so a database dump
yields no usable session. A session dies with its token (revoked or deleted) and at its expiry.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE console_sessions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_hash text NOT NULL,
    token_id     bigint NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    CONSTRAINT console_sessions_session_hash_key UNIQUE (session_hash)
);
-- Expired sessions are swept by expiry time.
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
"""

DOWNGRADE = "DROP TABLE console_sessions"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
