"""``runwatch migrate``: Alembic upgrade to head, idempotent and safe to run concurrently."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from .db import engine_for

#: Any constant works; it only has to be the same for every migrating process.
MIGRATION_LOCK_KEY = 0x52554E57  # "RUNW"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(database_url: str, revision: str = "head") -> str | None:
    """Bring the schema to ``revision``; return the revision now current."""
    config = alembic_config()
    with engine_for(database_url).begin() as conn:
        # NOTE: a session-level advisory lock serializes concurrent migrators (compose services,
        # test workers); the second one finds the schema current and does nothing.
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        try:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
