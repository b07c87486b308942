"""The metadata store: one SQLAlchemy schema for SQLite and PostgreSQL, upgraded by Alembic."""

from datetime import UTC, datetime

from kennel.db.engine import Database, make_engine, open_engine, upgrade

__all__ = ["MAX_NUMBER", "Database", "aware", "make_engine", "open_engine", "upgrade"]

# the largest version or sequence number an integer column holds on every backend (PostgreSQL's
# INTEGER): a larger one in a reference names nothing, and is said so before any query
MAX_NUMBER = 2**31 - 1


def aware(at: datetime) -> datetime:
    """A stored time as UTC-aware: SQLite hands back the naive UTC value it was given."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)
