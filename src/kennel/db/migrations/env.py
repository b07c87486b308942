"""Alembic environment: kennel always passes its own connection (see kennel.db.engine.upgrade)."""

from __future__ import annotations

from alembic import context

from kennel.db.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - offline SQL generation is not supported
    raise RuntimeError("kennel migrations run through kennel.db.engine.upgrade()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
