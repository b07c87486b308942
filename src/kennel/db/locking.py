"""Serialising a read-modify-write on one thing (an alias, a dataset's newest version), and
leases on long work that one process at a time may do (an ingest run).

A store that reads a value and writes what follows from it (the alias's current version into
the move's ``from``, the dataset's head into the new version's parent) calls ``serialize``
first, in the same transaction: a second transaction on the same key then waits, and reads
the first one's result once it has committed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from kennel.db.engine import connect
from kennel.fsutil import take_lock_file

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


@contextmanager
def lease(engine: Engine, key: str) -> Iterator[bool]:
    """Hold, while the body runs, a lock on ``key`` that no dead process keeps: True when it
    was taken, False when a live process holds it now (the body then must not do the work).

    PostgreSQL: a session advisory lock on a connection of its own, which the server lets go
    when that connection drops (``kill -9`` included). SQLite: ``flock`` on a file beside the
    database, let go by the kernel when the process ends."""
    if engine.dialect.name == "postgresql":
        with connect(engine, engine.connect, f"take the lease {key!r}") as connection:
            args = {"key": key}
            taken = connection.execute(
                text(f"SELECT pg_try_advisory_lock({_NAMESPACE}, hashtext(:key))"), args
            ).scalar()
            connection.commit()
            try:
                yield bool(taken)
            finally:
                if taken:
                    connection.execute(
                        text(f"SELECT pg_advisory_unlock({_NAMESPACE}, hashtext(:key))"), args
                    )
                    connection.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":  # one process's private database
        yield True
        return
    path = Path(f"{database}.locks") / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.lock"
    fd = take_lock_file(path, wait=False)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            path.unlink(missing_ok=True)  # while held: a lease leaves no file behind
            os.close(fd)


def held(engine: Engine, key: str) -> bool:
    """Whether a live process holds the lease on ``key`` now: a look (taken and let go at
    once). A private in-memory database is one process's own: what runs there is live."""
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        return True
    try:
        with lease(engine, key) as taken:
            return not taken
    except OSError:  # a read-only project cannot make the lock file: it cannot tell, say held
        return True
