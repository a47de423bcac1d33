"""Alembic environment: the connection is always handed in by `tandem.db.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from tandem.db.schema import METADATA

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through `tandem db upgrade` (tandem.db.migrate)")

context.configure(connection=connection, target_metadata=METADATA)
with context.begin_transaction():
    context.run_migrations()
