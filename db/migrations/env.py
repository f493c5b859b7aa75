"""Alembic environment of the study database (run by :mod:`db.migrate`, never by hand).

:mod:`db.migrate` hands over an open connection in ``config.attributes["connection"]``,
already inside the transaction that holds the migration lock (PostgreSQL advisory
lock, SQLite ``BEGIN IMMEDIATE``); Alembic then runs inside that transaction, so a
migration and its lock end together and a failed migration leaves nothing behind.

This file imports only Alembic, SQLAlchemy and :mod:`db.schema` (for autogenerate's
comparison with the models).
"""

from __future__ import annotations

from alembic import context

from db.schema import Base

config = context.config
connection = config.attributes.get("connection")

if context.is_offline_mode() or connection is None:
    # Offline SQL scripts and alembic.ini URLs are not supported: the lock and the legacy checks
    # live in db.migrate, and skipping them could migrate a database two processes are opening.
    raise RuntimeError("Run migrations with `python -m db upgrade` (db.migrate), which passes a locked connection.")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things: later migrations' alter_column/drop_column become
    # "create new table, copy, rename" batches there, and plain ALTERs on PostgreSQL.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)

# db.migrate began the transaction: begin_transaction() is then a no-op and the caller commits.
with context.begin_transaction():
    context.run_migrations()
