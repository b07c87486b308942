"""Offline predictions in a shared table that applications read (pattern 4), at any database
URL: not kennel's own schema, so the table is created here on first use, not by a migration.
A score is keyed by (uri, input sha256, model, version): storing it again inserts nothing.
A table made before the pet judgement existed gets its two columns added on first use.

The shared database is often kennel's own metadata database: kennel's tables (and Alembic's
version table) are refused by name, and any other existing table without the key columns is
refused before a column is added to it, so batch scoring never alters a table it does not own.
Reading (``batch-read``) opens a SQLite file read-only: a mistyped path is an error naming it,
never a new empty database."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    inspect,
    select,
    text,
)
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import SQLAlchemyError

from kennel.db import aware
from kennel.db.bulk import dialect_insert
from kennel.db.engine import CONNECT_TIMEOUT_S, connect, database_url, where
from kennel.db.readonly import connect_read_only, sqlite_file
from kennel.errors import ConfigError, MetadataError, NotFoundError
from kennel.retry import first_line

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
_KEY = ("uri", "input_sha256", "model", "version")


def kennel_tables() -> frozenset[str]:
    """The tables kennel's schema owns (from its metadata) and Alembic's version table,
    lower-cased: SQLite matches table names without regard to case."""
    from alembic.runtime.migration import MigrationContext

    from kennel.db.schema import Base

    version_table = MigrationContext.configure(dialect_name="sqlite").version_table
    return frozenset(name.lower() for name in [*Base.metadata.tables, version_table])


def check_table_name(name: str) -> str:
    """``name`` if it may hold predictions: a plain identifier, not one of kennel's tables."""
    if not _TABLE.match(name):
        raise ConfigError(f"invalid table name {name!r}: letters, digits and '_' (max 63)")
    if name.lower() in kennel_tables():
        raise ConfigError(
            f"table {name!r} is one of kennel's own tables; choose another name for predictions"
        )
    return name


@dataclass(frozen=True)
class Score:
    """One input scored by one model version: a label and probabilities, or an error."""

    uri: str
    input_sha256: str  # "" when the input could not be read
    model: str
    version: int
    label: str | None
    confidence: float | None
    probabilities: dict[str, float] | None
    error: str | None
    scored_at: datetime
    pet: bool | None = None  # False: no cat or dog there at all (out of distribution)
    pet_score: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "scored_at": self.scored_at.isoformat()}


def predictions_table(name: str) -> Table:
    return Table(
        check_table_name(name),
        MetaData(),
        Column("uri", Text, primary_key=True),
        Column("input_sha256", String(64), primary_key=True),
        Column("model", String(128), primary_key=True),
        Column("version", Integer, primary_key=True),
        Column("label", String(128), nullable=True),
        Column("confidence", Float, nullable=True),
        Column("probabilities", Text, nullable=True),  # JSON
        Column("error", Text, nullable=True),
        Column("scored_at", DateTime(timezone=True), nullable=False),
        Column("pet", Boolean, nullable=True),
        Column("pet_score", Float, nullable=True),
    )


_ADDED = {"pet": "BOOLEAN", "pet_score": "FLOAT"}  # columns newer than the first tables


def _row(score: Score) -> dict[str, Any]:
    probabilities = score.probabilities
    return {
        **score.__dict__,
        "probabilities": None
        if probabilities is None
        else json.dumps(probabilities, sort_keys=True),
    }


def _sqlite_reader(url: URL) -> Callable[[], Any]:
    """Connections that only read the SQLite file at ``url``; one that does not exist is a
    NotFoundError naming it (``mode=ro`` would refuse it too, as a database unreachable)."""
    path = sqlite_file(url)
    if not path.is_file():
        raise NotFoundError(f"no SQLite database at {path}")
    return lambda: connect_read_only(url)


class ScoreTable:
    """The table ``name`` at ``url``; close it when done (it holds an engine). ``read_only``:
    for a reader, which must change nothing (on SQLite, not even create the file)."""

    def __init__(self, url: str, name: str, *, read_only: bool = False) -> None:
        self.name = name
        self.table = predictions_table(name)
        parsed = database_url(url, "the scores' database URL (--db)")
        server = parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query
        timeout = {"connect_timeout": CONNECT_TIMEOUT_S} if server else {}
        reader: dict[str, Any] = {}
        if read_only and parsed.get_backend_name() == "sqlite":
            reader["creator"] = _sqlite_reader(parsed)
        self.engine = create_engine(parsed, connect_args=timeout, **reader)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ScoreTable:
        """Connected once (retried while the server is unreachable), else one line naming the
        database as host:port/name."""
        try:
            connect(
                self.engine, self.engine.connect, "open the scores' database", "database"
            ).close()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def create(self) -> None:
        """Create the table unless it exists; add the columns an older one lacks."""
        try:
            self.table.metadata.create_all(self.engine)
            have = {c["name"] for c in inspect(self.engine).get_columns(self.name)}
            missing = [c for c in _KEY if c not in have]
            if missing:  # someone else's table: leave it as it is
                raise ConfigError(
                    f"table {self.name!r} at {where(self.engine.url)} exists and is not a "
                    f"predictions table (no column {', '.join(missing)}); choose another name"
                )
            if not self._keyed():  # re-runs would add every score again, and it is not ours
                raise ConfigError(
                    f"table {self.name!r} at {where(self.engine.url)} exists without "
                    f"({', '.join(_KEY)}) as its primary key or a unique constraint, so "
                    "scores could not be stored once each; choose another name"
                )
            with self.engine.begin() as connection:
                for column, kind in _ADDED.items():
                    if column not in have:  # the name is checked by _TABLE, the rest is ours
                        connection.execute(
                            text(f'ALTER TABLE "{self.name}" ADD COLUMN {column} {kind}')
                        )
        except SQLAlchemyError as exc:
            raise self._error("batch scoring into", exc) from exc

    def _keyed(self) -> bool:
        """Whether the table's primary key, a unique constraint or a unique index is the key
        of a score (what makes a re-run insert nothing new)."""
        found = inspect(self.engine)
        key = set(_KEY)
        keys: list[set[str | None]] = [
            set(found.get_pk_constraint(self.name).get("constrained_columns") or [])
        ]
        keys += [set(u["column_names"]) for u in found.get_unique_constraints(self.name)]
        keys += [set(i["column_names"]) for i in found.get_indexes(self.name) if i.get("unique")]
        return any(columns == key for columns in keys)

    def add_new(self, scores: Sequence[Score]) -> int:
        """Insert the scores whose key is not stored yet; returns how many were inserted."""
        if not scores:
            return 0
        dialect = self.engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise ConfigError(f"batch scoring supports PostgreSQL and SQLite, not {dialect}")
        statement = dialect_insert(dialect, self.table).on_conflict_do_nothing()
        try:
            with self.engine.begin() as connection:
                # RETURNING counts what was really inserted (rowcount is unreliable for
                # executemany)
                returning = statement.returning(self.table.c.uri)
                return len(connection.execute(returning, [_row(s) for s in scores]).all())
        except SQLAlchemyError as exc:
            raise self._error("batch scoring into", exc) from exc

    def for_uri(self, uri: str) -> list[Score]:
        """Every score of one input, newest model version first."""
        t = self.table
        try:
            if not inspect(self.engine).has_table(self.name):
                raise NotFoundError(f"no table {self.name} at {where(self.engine.url)}")
            with self.engine.connect() as connection:
                rows = connection.execute(
                    select(t).where(t.c.uri == uri).order_by(t.c.version.desc())
                ).all()
        except SQLAlchemyError as exc:
            raise self._error("reading", exc) from exc
        return [
            Score(
                uri=r.uri,
                input_sha256=r.input_sha256,
                model=r.model,
                version=r.version,
                label=r.label,
                confidence=r.confidence,
                probabilities=json.loads(r.probabilities) if r.probabilities else None,
                error=r.error,
                scored_at=aware(r.scored_at),
                pet=r.pet,
                pet_score=r.pet_score,
            )
            for r in rows
        ]

    def _error(self, doing: str, exc: SQLAlchemyError) -> MetadataError:
        # one line: a driver's message may carry the whole statement and its parameters
        return MetadataError(f"{doing} {self.name}: {exc.__class__.__name__}: {first_line(exc)}")
