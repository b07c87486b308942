"""The metadata store: one SQLAlchemy schema for SQLite and PostgreSQL, upgraded by Alembic."""

from kennel.db.engine import Database, make_engine, open_engine, upgrade

__all__ = ["Database", "make_engine", "open_engine", "upgrade"]
