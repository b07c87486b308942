"""Serialising a read-modify-write on one thing (an alias, a dataset's newest version).

A store that reads a value and writes what follows from it (the alias's current version into
the move's ``from``, the dataset's head into the new version's parent) calls ``serialize``
first, in the same transaction: a second transaction on the same key then waits, and reads
the first one's result once it has committed.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

# The first key of PostgreSQL's two-key advisory locks ("kn"): kennel's keys never meet the
# one-key locks (the migration, the audit chain, model numbering) or another application's.
_NAMESPACE = 0x6B6E


def serialize(session: Session, key: str) -> None:
    """Hold, until ``session``'s transaction ends, a lock that every other transaction
    serialising on ``key`` waits for; call it before reading what the transaction changes.

    PostgreSQL: an advisory lock on the key's hash (two keys that share a hash only wait for
    each other). SQLite has one write lock for the whole database: it is taken now, by a write
    statement that changes nothing, instead of at the first real write, so that every read
    after this is of the newest committed state."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(
            text(f"SELECT pg_advisory_xact_lock({_NAMESPACE}, hashtext(:key))"), {"key": key}
        )
    elif dialect == "sqlite":
        session.execute(text("UPDATE audit_log SET seq = seq WHERE seq < 0"))
