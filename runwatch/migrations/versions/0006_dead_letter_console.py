"""The console's dead letters: a mirror of Dramatiq's dead-letter sets, and the operator actions' audit.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = """
-- A copy of <queue>.XQ/<queue>.XQ.msgs in Redis, kept by the bridge's mirror pass, so that the
-- API (which never talks to the broker) can filter, group, page and tenant-scope dead letters.
-- Exception text is the redacted one the worker captured (the run's evidence), never the payload.
CREATE TABLE dead_letters (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue_name          text NOT NULL,
    redis_message_id    text NOT NULL,
    message_id          text,
    actor_name          text,
    exception_type      text,
    exception_message   text,
    decode_error        text,
    dead_at             timestamptz NOT NULL,
    tenant_id           bigint,
    run_id              bigint REFERENCES operation_runs (id) ON DELETE SET NULL,
    -- true once tenant and exception come from the run's terminal record; until then the mirror
    -- pass looks the run up again (it may be recorded, or reconciled, after the letter appears).
    settled             boolean NOT NULL DEFAULT false,
    mirrored_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT dead_letters_letter_key UNIQUE (queue_name, redis_message_id),
    CONSTRAINT dead_letters_tenant_positive CHECK (tenant_id IS NULL OR tenant_id > 0)
);
-- The list: newest first with a keyset cursor, optionally within the token's tenants.
CREATE INDEX dead_letters_dead ON dead_letters (dead_at DESC, id DESC);
CREATE INDEX dead_letters_tenant_dead ON dead_letters (tenant_id, dead_at DESC, id DESC);
-- The mirror links letters to runs recorded (or reconciled) after the letter was mirrored.
CREATE INDEX dead_letters_unsettled ON dead_letters (id) WHERE NOT settled;
-- Groups and filters by what failed.
CREATE INDEX dead_letters_what ON dead_letters (queue_name, actor_name, exception_type);

-- One row per requeue or purge an operator asked for (the audit). The API writes it pending, with
-- the letters it selected frozen in operator_action_items; the bridge executes it.
CREATE TABLE operator_actions (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind                text NOT NULL,
    token_id            bigint NOT NULL,
    token_name          text NOT NULL,
    tenant_ids          bigint[],
    idempotency_key     text NOT NULL,
    selection           jsonb NOT NULL,
    status              text NOT NULL DEFAULT 'pending',
    matched             integer NOT NULL DEFAULT 0,
    done                integer NOT NULL DEFAULT 0,
    skipped             integer NOT NULL DEFAULT 0,
    requested_at        timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    error               text,
    CONSTRAINT operator_actions_idempotency_key UNIQUE (token_id, idempotency_key),
    CONSTRAINT operator_actions_kind_known CHECK (kind IN ('requeue', 'purge')),
    CONSTRAINT operator_actions_status_known CHECK (status IN ('pending', 'running', 'done', 'failed')),
    CONSTRAINT operator_actions_finished CHECK ((status IN ('done', 'failed')) = (finished_at IS NOT NULL))
);
CREATE INDEX operator_actions_requested ON operator_actions (requested_at DESC, id DESC);
CREATE INDEX operator_actions_open ON operator_actions (id) WHERE status IN ('pending', 'running');

-- Exactly the letters an action selected, and what became of each (NULL result: not done yet).
-- No foreign key to the runs: the audit outlives retention.
CREATE TABLE operator_action_items (
    action_id           bigint NOT NULL REFERENCES operator_actions (id) ON DELETE CASCADE,
    position            integer NOT NULL,
    queue_name          text NOT NULL,
    redis_message_id    text NOT NULL,
    message_id          text,
    run_id              bigint,
    tenant_id           bigint,
    result              text,
    new_run_id          bigint,
    note                text,
    finished_at         timestamptz,
    PRIMARY KEY (action_id, position),
    CONSTRAINT operator_action_items_result_known CHECK (result IN ('requeued', 'purged', 'skipped'))
);
CREATE INDEX operator_action_items_open ON operator_action_items (action_id, position) WHERE result IS NULL;
"""

DOWNGRADE = """
DROP TABLE operator_action_items;
DROP TABLE operator_actions;
DROP TABLE dead_letters;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
