"""A SQL table or query (any SQLAlchemy URL) giving one row per file."""

from __future__ import annotations

import re
from collections.abc import Sequence

from kennel.display import redact
from kennel.errors import SourceError
from kennel.ingest.sources.base import DEFAULT_MAX_BYTES
from kennel.ingest.sources.table import TableSource


def sql_source(
    url: str,
    *,
    query: str | None,
    table: str | None,
    allowed_roots: Sequence[str] = (),
    max_bytes: int = DEFAULT_MAX_BYTES,
    **columns: str,
) -> TableSource:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    if (query is None) == (table is None):
        raise SourceError("a SQL source needs exactly one of --sql-table or --sql-query")
    if table is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", table):
        raise SourceError(f"invalid SQL table name {table!r}")
    statement = query if query is not None else f"SELECT * FROM {table}"
    shown = redact(url)
    try:
        password = make_url(url).password
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                rows = [dict(r._mapping) for r in connection.execute(text(statement))]
        finally:
            engine.dispose()
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        message = f"{exc.__class__.__name__}: {exc}"
        if password:  # a driver may echo what it was given
            message = message.replace(str(password), "***")
        raise SourceError(f"SQL source {shown}: {message}") from exc
    return TableSource(
        f"sql:{shown} {statement}",
        rows,
        base=None,
        allowed_roots=allowed_roots,
        max_bytes=max_bytes,
        **columns,
    )
