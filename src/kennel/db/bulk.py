"""Portable bulk statements: an insert that skips rows whose primary key already exists, and
a read of many rows as the driver's plain tuples."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import JSON, Float, Select, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine


def dialect_insert(dialect: str, table: Table) -> Any:
    """The dialect's own INSERT of ``table`` (with ON CONFLICT), for PostgreSQL or SQLite; the
    dialect's module is imported when first used (PostgreSQL's took a tenth of a second of
    every command on a SQLite project)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
    raise NotImplementedError(dialect)  # other databases are not supported as the store


def insert_ignore(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    session.execute(dialect_insert(dialect, table).on_conflict_do_nothing(), rows)


def insert_new(session: Session, table: Table, rows: list[dict[str, Any]], key: str) -> set[Any]:
    """``insert_ignore``, returning the ``key`` of each row it inserted (not those whose key
    was stored already), in batches of multi-row INSERTs with RETURNING."""
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    statement = dialect_insert(dialect, table).on_conflict_do_nothing().returning(table.c[key])
    return set(session.execute(statement, rows).scalars())


def insert_ignore_tuples(
    session: Session, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """``insert_ignore`` of rows given as tuples of ``columns``' values. On SQLite the tuples
    go to the driver's ``executemany`` as they are (each value through its column type's bind
    conversion, e.g. JSON to text, as SQLAlchemy would): building and compiling a parameter
    set per row cost more than the insert itself, a fifth of a large ingest's driver time."""
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "sqlite":
        insert_ignore(session, table, [dict(zip(columns, row, strict=True)) for row in rows])
        return
    binds = [_bind(table.c[name].type, dialect) for name in columns]
    convert = [(i, bind) for i, bind in enumerate(binds) if bind is not None]
    if convert:
        rows = [_converted(row, convert) for row in rows]
    preparer = dialect.identifier_preparer
    statement = (
        f"INSERT INTO {preparer.format_table(table)} "
        f"({', '.join(preparer.quote(name) for name in columns)}) "
        f"VALUES ({', '.join('?' * len(columns))}) ON CONFLICT DO NOTHING"
    )
    connection.exec_driver_sql(statement, list(rows))


def upsert_tuples(
    session: Session, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert rows given as tuples of ``columns``' values (plain values: no conversion), each
    replacing the row with the same primary key (the table's first column) if one exists."""
    if not rows:
        return
    key, rest = columns[0], columns[1:]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt = dialect_insert(dialect, table)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=[key], set_={c: stmt.excluded[c] for c in rest}
            ),
            [dict(zip(columns, row, strict=True)) for row in rows],
        )
        return
    if dialect != "sqlite":  # pragma: no cover - other databases are not supported
        raise NotImplementedError(dialect)
    quote = session.connection().dialect.identifier_preparer.quote
    statement = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
        f"VALUES ({', '.join('?' * len(columns))}) ON CONFLICT ({quote(key)}) DO UPDATE SET "
        + ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in rest)
    )
    session.connection().exec_driver_sql(statement, [tuple(r) for r in rows])


def _bind(column_type: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """The column type's bind conversion, with shortcuts for the values a large insert repeats:
    a float is a float already (SQLite's REAL takes it as it is), and an empty JSON object is
    always the same text (a JSON dump per row was a tenth of an ingest checkpoint)."""
    bind = column_type._cached_bind_processor(dialect)
    if bind is None:
        return None
    if isinstance(column_type, Float):
        return lambda value: value if type(value) is float else bind(value)
    if isinstance(column_type, JSON):
        empty = bind({})
        return lambda value: empty if type(value) is dict and not value else bind(value)
    return bind


def _converted(row: Sequence[Any], convert: list[tuple[int, Any]]) -> tuple[Any, ...]:
    values = list(row)
    for i, bind in convert:
        values[i] = bind(values[i])
    return tuple(values)


def fetch_tuples(session: Session, query: Select[Any]) -> Sequence[Sequence[Any]]:
    """Every row of ``query`` as the driver returns it, in the session's transaction: for a
    read of 100,000 rows, building SQLAlchemy rows costs about as much as the query. Only for
    columns whose values need no conversion on the way out (numbers, text, bytes; not JSON,
    not times). PostgreSQL sends them in its binary format: no text to parse, no hex to decode
    for a bytea."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # an IN over a list is "expanding": rendered here, one parameter per value
        compiled = query.compile(
            dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
        )
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
