"""Portable bulk statements: an insert that skips rows whose primary key already exists, and
a read of many rows as the driver's plain tuples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignore(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(postgresql.insert(table).on_conflict_do_nothing(), rows)
    elif dialect == "sqlite":
        session.execute(sqlite.insert(table).on_conflict_do_nothing(), rows)
    else:  # pragma: no cover - other databases are not supported as the metadata store
        raise NotImplementedError(dialect)


def fetch_tuples(session: Session, query: Select[Any]) -> Sequence[Sequence[Any]]:
    """Every row of ``query`` as the driver returns it, in the session's transaction: for a
    read of 100,000 rows, building SQLAlchemy rows costs about as much as the query. Only for
    columns whose values need no conversion on the way out (numbers, text, bytes; not JSON,
    not times). PostgreSQL sends them in its binary format: no text to parse, no hex to decode
    for a bytea."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        compiled = query.compile(dialect=connection.dialect)
        driver = connection.connection.driver_connection
        assert driver is not None
        with driver.cursor(binary=True) as cursor:
            cursor.execute(str(compiled), compiled.params)
            rows: Sequence[Sequence[Any]] = cursor.fetchall()
            return rows
    result = connection.execute(query)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()
