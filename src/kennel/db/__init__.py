"""The metadata store: one SQLAlchemy schema for SQLite and PostgreSQL, upgraded by Alembic."""

from datetime import UTC, datetime

from kennel.db.engine import Database, make_engine, open_engine, upgrade

__all__ = ["Database", "aware", "make_engine", "open_engine", "upgrade"]


def aware(at: datetime) -> datetime:
    """A stored time as UTC-aware: SQLite hands back the naive UTC value it was given."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)
