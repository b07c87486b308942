"""Opening a SQLite database only to read it, for what promises to change nothing (a
``--sql-query`` source, ``kennel batch-read``): ``mode=ro``, so a mistyped path is an error,
never a new empty database file. That holds for a URL giving a ``file:`` URI of its own
(``?uri=true``) too, whose own ``mode`` (absent, or ``rwc``) would otherwise be obeyed."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlencode, urlsplit

from sqlalchemy.engine.url import URL

# Query keys SQLAlchemy's pysqlite dialect takes as arguments of connect(), not of the URI.
_DRIVER_KEYS = frozenset(
    {"uri", "timeout", "isolation_level", "detect_types", "check_same_thread", "cached_statements"}
)


def sqlite_file(url: URL) -> Path:
    """The file a SQLite URL names, as a plain path or as a ``file:`` URI of its own."""
    database = url.database or ""
    if url.query.get("uri"):  # file:/a%20b.db, file:///a.db, file://localhost/a.db, file:a.db
        database = unquote(urlsplit(database).path)
    return Path(database).resolve()


def read_only_uri(url: URL) -> str:
    """The ``file:`` URI that opens the SQLite database ``url`` names read-only."""
    if not url.query.get("uri"):
        return f"{sqlite_file(url).as_uri()}?mode=ro"
    params = {k: v for k, v in url.query.items() if k not in _DRIVER_KEYS}
    params["mode"] = "ro"  # whatever the URL asked for: reading never creates nor writes
    return f"{url.database}?{urlencode(params, doseq=True)}"


def connect_read_only(url: URL) -> sqlite3.Connection:
    """A connection to ``url``'s SQLite file that cannot write it, nor create it."""
    return sqlite3.connect(read_only_uri(url), uri=True, check_same_thread=False)
