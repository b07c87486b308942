"""A SQL table or query (any SQLAlchemy URL) giving one row per file, read without changing
anything: a source is read, never written.

``--sql-query`` runs only where kennel can hold the query itself to reading. On SQLite the file
is opened read-only (a missing one is not created) with ``query_only`` on, and an authorizer
lets through only reading (no ``ATTACH``, no ``PRAGMA`` that sets something). On PostgreSQL
the query runs in a read-only transaction, through a server-side cursor: the rows stream in
batches, and a cursor takes nothing but a ``SELECT`` or ``VALUES``. Elsewhere (MySQL, MariaDB,
...) a query is refused; ``--sql-table`` names a table, whose ``SELECT *`` is kennel's own.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from kennel.db.readonly import connect_read_only
from kennel.display import redact
from kennel.errors import SourceError
from kennel.ingest.sources.base import DEFAULT_MAX_BYTES
from kennel.ingest.sources.table import TableSource

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection

BATCH = 1000  # rows fetched from a server-side cursor at a time
# What a SELECT needs of SQLite's authorizer, and the one setting SQLAlchemy reads on connect.
_SQLITE_READS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
_SQLITE_PRAGMAS = frozenset({"read_uncommitted"})


def sql_source(
    url: str,
    *,
    query: str | None,
    table: str | None,
    allowed_roots: Sequence[str] = (),
    max_bytes: int = DEFAULT_MAX_BYTES,
    uri_column: str = "uri",
    label_column: str = "label",
    require_labels: bool = True,
) -> TableSource:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ResourceClosedError, SQLAlchemyError

    if (query is None) == (table is None):
        raise SourceError("a SQL source needs exactly one of --sql-table or --sql-query")
    if table is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", table):
        raise SourceError(f"invalid SQL table name {table!r}")
    statement = query if query is not None else f"SELECT * FROM {table}"
    shown = redact(url)
    password: str | None = None
    try:
        parsed = make_url(url)
        password = parsed.password
        if query is not None and not _holds_to_reading(parsed):
            raise SourceError(
                f"SQL source {shown}: --sql-query runs only on SQLite and PostgreSQL, where it "
                f"is held to reading; on {parsed.drivername} name a table with --sql-table"
            )
        with _connected(parsed) as connection:
            result = connection.execution_options(stream_results=True, yield_per=BATCH).execute(
                text(statement)
            )
            return TableSource(
                f"sql:{shown} {statement}",
                (dict(row._mapping) for row in result),
                base=None,
                allowed_roots=allowed_roots,
                uri_column=uri_column,
                label_column=label_column,
                max_bytes=max_bytes,
                require_labels=require_labels,
            )
    except ResourceClosedError as exc:  # a statement that returns no rows (REINDEX, ...)
        raise SourceError(
            f"SQL source {shown}: the query returns no rows; it must be a SELECT giving "
            f"{uri_column} and {label_column}"
        ) from exc
    except (SQLAlchemyError, ValueError, ImportError, sqlite3.Error) as exc:
        # the driver's own error: SQLAlchemy's wrapper adds the statement and a web link
        cause = getattr(exc, "orig", None) or exc
        message = f"{cause.__class__.__name__}: {cause}"
        if str(cause) == "not authorized":  # SQLite's authorizer, which holds it to reading
            message = f"the query may only read (a SELECT); SQLite refused it ({message})"
        if password:  # a driver may echo what it was given
            message = message.replace(str(password), "***")
        raise SourceError(f"SQL source {shown}: {' '.join(message.split())}") from exc


def _is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.get_driver_name() == "pysqlite"


def _holds_to_reading(url: URL) -> bool:
    """Whether a query given on ``url`` can be held to reading (see the module's docstring)."""
    return _is_sqlite(url) or url.get_backend_name() == "postgresql"


@contextmanager
def _connected(url: URL) -> Iterator[Connection]:
    """A connection that reads: in a read-only transaction on PostgreSQL, to a read-only
    SQLite database; closed (its transaction rolled back) when the block ends."""
    from sqlalchemy import create_engine

    options: dict[str, Any] = {}
    if _is_sqlite(url):
        options["creator"] = lambda: _sqlite_reader(url)
    engine = create_engine(url, **options)
    try:
        with engine.connect() as connection:
            if url.get_backend_name() == "postgresql":
                connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            yield connection
    finally:
        engine.dispose()


def _sqlite_reader(url: URL) -> sqlite3.Connection:
    if not url.database or url.database == ":memory:":
        connection = sqlite3.connect(":memory:")
    else:  # mode=ro, a file: URI of the URL's own too: a missing file is not created
        connection = connect_read_only(url)
    connection.execute("PRAGMA query_only = ON")
    connection.set_authorizer(_sqlite_authorizer)
    return connection


def _sqlite_authorizer(
    action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None
) -> int:
    if action in _SQLITE_READS or action == sqlite3.SQLITE_TRANSACTION:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and arg1 in _SQLITE_PRAGMAS and arg2 is None:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY  # ATTACH, DETACH, writes, schema changes, PRAGMA settings
