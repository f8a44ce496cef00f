"""Alembic environment: online migrations only, on the connection ``runwatch.migrate`` hands in."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
