"""Pattern 4, offline predictions: score a folder, manifest or dataset version as a scheduled job
and write the predictions, with the model version and time, into a shared table that
applications read. Re-runs are idempotent: a row is keyed by (uri, input sha256, model,
version), so scoring the same inputs with the same model inserts nothing new."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from kennel.errors import ConfigError, MetadataError
from kennel.imaging import ImageRejected
from kennel.progress import Event, Progress, silent
from kennel.serve.runtime import Predictor

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_CHUNK = 64


def predictions_table(name: str) -> Table:
    if not _TABLE.match(name):
        raise ConfigError(f"invalid table name {name!r}: letters, digits and '_' (max 63)")
    return Table(
        name,
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
    )


@dataclass(frozen=True)
class BatchReport:
    table: str
    model: str
    version: int
    inputs: int
    inserted: int
    already_scored: int
    errors: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.inputs / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "images_per_second": round(self.images_per_second, 1)}


def _insert_ignore(engine: Engine, table: Table, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    dialect = engine.dialect.name
    if dialect == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing()  # type: ignore[assignment]
    else:
        raise ConfigError(f"batch scoring supports PostgreSQL and SQLite, not {dialect}")
    with engine.begin() as connection:
        # RETURNING counts what was really inserted (rowcount is unreliable for executemany)
        return len(connection.execute(statement.returning(table.c.uri), rows).all())


def score(
    predictor: Predictor,
    inputs: Iterable[tuple[str, bytes | str]],
    *,
    db_url: str,
    table: str,
    progress: Progress = silent,
    total: int | None = None,
) -> BatchReport:
    """Score ``(uri, bytes or read-error)`` pairs and upsert them into ``table`` at ``db_url``."""
    began = time.perf_counter()
    target = predictions_table(table)
    engine = create_engine(db_url)
    try:
        target.metadata.create_all(engine)  # a user's shared table, not kennel's own schema
        seen = inserted = errors = 0
        chunk: list[tuple[str, bytes | str]] = []

        def flush() -> None:
            nonlocal inserted, errors
            rows, good, prepared = [], [], []
            now = datetime.now(UTC)
            for uri, data in chunk:
                digest = hashlib.sha256(data).hexdigest() if isinstance(data, bytes) else ""
                key = {
                    "uri": uri,
                    "input_sha256": digest,
                    "model": predictor.name,
                    "version": predictor.version,
                    "scored_at": now,
                }
                try:
                    if not isinstance(data, bytes):
                        raise ImageRejected(data)
                    prepared.append(predictor.prepare(data))
                    good.append(key)
                except ImageRejected as exc:
                    errors += 1
                    rows.append(
                        {
                            **key,
                            "label": None,
                            "confidence": None,
                            "probabilities": None,
                            "error": str(exc),
                        }
                    )
            for key, p in zip(good, predictor.predict_prepared(prepared), strict=True):
                rows.append(
                    {
                        **key,
                        "label": p.label,
                        "confidence": p.confidence,
                        "probabilities": json.dumps(p.probabilities, sort_keys=True),
                        "error": None,
                    }
                )
            inserted += _insert_ignore(engine, target, rows)
            chunk.clear()

        for item in inputs:
            chunk.append(item)
            seen += 1
            if len(chunk) >= _CHUNK:
                flush()
                progress(Event("score", done=seen, total=total))
        if chunk:
            flush()
        progress(Event("score", done=seen, total=seen))
    except SQLAlchemyError as exc:
        raise MetadataError(f"batch scoring into {table}: {exc.__class__.__name__}: {exc}") from exc
    finally:
        engine.dispose()
    return BatchReport(
        table,
        predictor.name,
        predictor.version,
        seen,
        inserted,
        seen - inserted,
        errors,
        time.perf_counter() - began,
    )


def read(db_url: str, table: str, uri: str) -> list[dict[str, Any]]:
    """The example reader: every stored prediction for one input, newest model first."""
    target = predictions_table(table)
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            rows = (
                connection.execute(
                    select(target).where(target.c.uri == uri).order_by(target.c.version.desc())
                )
                .mappings()
                .all()
            )
    except SQLAlchemyError as exc:
        raise MetadataError(f"reading {table}: {exc.__class__.__name__}: {exc}") from exc
    finally:
        engine.dispose()
    return [
        {
            **dict(r),
            "scored_at": r["scored_at"].isoformat(),
            "probabilities": json.loads(r["probabilities"]) if r["probabilities"] else None,
        }
        for r in rows
    ]
