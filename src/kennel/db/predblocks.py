"""A columnar copy of the prediction log, for monitoring windows: each batch the log stores is
also kept as one Arrow IPC block per (environment, model, class list, embedding size), holding
what a window reads (id, time, source, version, latency, the image statistics and pet
judgement, the class probabilities and the embedding) as typed arrays. A window of 100,000
predictions is then a few hundred blobs turned into arrays without a Python object per value,
where reading the typed columns of 100,000 rows made 1.4 million of them.

The rows stay the record: a reader counts the window's rows and uses the blocks only when they
hold exactly that many (rows written before the blocks existed have none; the store then reads
the rows). A block is written in the transaction of the rows it copies, and only for rows that
transaction inserted, so a replayed journal adds no second copy. Feedback is not in the blocks:
it arrives later and is read from its own table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from kennel.db import aware
from kennel.db.predcols import STATS, PredictionColumns

if TYPE_CHECKING:
    import pyarrow as pa

FORMAT = "1"  # the block layout below; a reader skips to the rows for any other
_CLASSES = b"kennel.classes"
_FORMAT = b"kennel.format"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(at: datetime) -> int:
    """A time as integer microseconds since the epoch, UTC (a naive time is UTC here), exact
    at any date (no float on the way)."""
    return (aware(at) - _EPOCH) // _MICROSECOND


@dataclass(frozen=True)
class Block:
    """One stored block: the rows it holds and where they lie in time, for the query that
    picks a window's blocks."""

    environment: str
    model: str
    first_at: datetime
    last_at: datetime
    rows: int
    data: bytes

    def row(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "model": self.model,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "rows": self.rows,
            "data": self.data,
        }


def blocks_of(predictions: Iterable[Any]) -> list[Block]:
    """The blocks of a batch of ``LoggedPrediction`` s, one per group of rows that share their
    environment, model, class list and embedding size."""
    groups: dict[tuple[str, str, tuple[str, ...], int], list[Any]] = {}
    seen: set[str] = set()
    for p in predictions:
        if p.id in seen:  # an id twice in one batch: the database keeps the first
            continue
        seen.add(p.id)
        key = (p.environment, p.model, tuple(p.probabilities), len(p.embedding or b""))
        groups.setdefault(key, []).append(p)
    return [_block(names, size, rows) for (_, _, names, size), rows in groups.items()]


def _numbers(values: Iterable[Any]) -> list[float | None]:
    return [None if v is None else float(v) for v in values]


def _fixed(values: np.ndarray, width: int) -> pa.Array:
    import pyarrow as pa

    return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), width)


def _block(names: tuple[str, ...], size: int, rows: list[Any]) -> Block:
    import pyarrow as pa

    n = len(rows)
    at = [aware(p.at) for p in rows]
    probs = np.array([[float(p.probabilities[c]) for c in names] for p in rows], dtype="<f8")
    columns: dict[str, pa.Array] = {
        "id": pa.array([p.id for p in rows], pa.string()),
        "at": pa.array([micros(t) for t in at], pa.int64()),
        "source": pa.array([p.source for p in rows], pa.string()).dictionary_encode(),
        "version": pa.array([p.version for p in rows], pa.int32()),
        "latency_ms": pa.array(_numbers(p.latency_ms for p in rows), pa.float64()),
        **{k: pa.array(_numbers(p.quality.get(k) for p in rows), pa.float64()) for k in STATS},
    }
    if names:
        columns["probs"] = _fixed(probs, len(names))
    if size:
        embedding = np.frombuffer(b"".join(p.embedding for p in rows), dtype="<f2")
        columns["embedding"] = _fixed(embedding, size // 2)
    table = pa.table(columns).replace_schema_metadata(
        {_CLASSES: json.dumps(list(names)).encode(), _FORMAT: FORMAT.encode()}
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    first = rows[0]
    return Block(first.environment, first.model, min(at), max(at), n, sink.getvalue().to_pybytes())


@dataclass
class _Part:
    table: pa.Table
    classes: list[str]
    keep: np.ndarray | None = None  # the rows of the window, where not all of them
    rows: int = 0

    def column(self, name: str) -> np.ndarray:
        values = self.table[name].combine_chunks().to_numpy(zero_copy_only=False)
        return np.asarray(values if self.keep is None else values[self.keep])

    def matrix(self, name: str, width: int, dtype: str) -> np.ndarray:
        values = self.table[name].combine_chunks().values.to_numpy()
        matrix = values.astype(dtype, copy=False).reshape(self.table.num_rows, width)
        return np.asarray(matrix if self.keep is None else matrix[self.keep])

    def sources(self) -> np.ndarray:
        column = self.table["source"].combine_chunks()
        names = np.array(column.dictionary.to_pylist(), dtype=object)
        codes = column.indices.to_numpy()
        return np.asarray(names[codes if self.keep is None else codes[self.keep]])


_REQUIRED = ("id", "at", "source", "version", "latency_ms", *STATS)


def _read(data: bytes) -> _Part | None:
    """The block, or None for one this reader cannot use (another format, damaged bytes):
    the window is then read from the rows."""
    import pyarrow as pa

    try:
        table = pa.ipc.open_stream(data).read_all()
        meta = table.schema.metadata or {}
        if meta.get(_FORMAT) != FORMAT.encode() or not set(_REQUIRED) <= set(table.column_names):
            return None
        classes = json.loads(meta[_CLASSES])
    except (pa.ArrowException, OSError, ValueError, KeyError):  # JSON's errors: ValueError
        return None
    if not isinstance(classes, list) or (classes and "probs" not in table.column_names):
        return None
    return _Part(table, [str(c) for c in classes], rows=table.num_rows)


def window_of(
    blobs: Iterable[bytes], *, since: datetime, until: datetime, version: int | None, rows: int
) -> PredictionColumns | None:
    """The window [since, until) (of one model version where ``version`` is given) from the
    blocks that overlap it, oldest first, without feedback (``truth`` all None); None unless
    the blocks hold exactly ``rows`` rows of it, the count the rows themselves gave."""
    lo, hi = micros(since), micros(until)
    parts: list[_Part] = []
    for data in blobs:
        part = _read(data)
        if part is None:
            return None
        at = part.table["at"].to_numpy()
        keep = (at >= lo) & (at < hi)
        if version is not None:
            keep &= part.table["version"].to_numpy() == version
        if not keep.all():
            part.keep, part.rows = keep, int(keep.sum())
        if part.rows:
            parts.append(part)
    if sum(p.rows for p in parts) != rows:
        return None
    return _assemble(parts)


def _concatenate(parts: Sequence[_Part], of: Any) -> np.ndarray:
    return np.concatenate([of(p) for p in parts]) if parts else np.zeros(0)


def _order(at: np.ndarray, ids: np.ndarray) -> Any:
    """Oldest first, ties by id: the order the rows are read in (``ORDER BY at, id``)."""
    if bool(np.all(at[1:] > at[:-1])):  # blocks come oldest first, a batch mostly in order
        return slice(None)
    return np.lexsort((ids.astype(str), at))


def _assemble(parts: Sequence[_Part]) -> PredictionColumns | None:
    at = _concatenate(parts, lambda p: p.column("at"))
    ids = _concatenate(parts, lambda p: p.column("id"))
    n = len(at)
    if len(set(ids.tolist())) != n:  # a block copied a row twice: the rows decide
        return None
    order = _order(at, ids)
    classes = sorted({c for p in parts for c in p.classes})
    position = {c: j for j, c in enumerate(classes)}
    probabilities = np.zeros((n, len(classes)), dtype=np.float64)
    sizes = set()
    start = 0
    for p in parts:
        if p.classes:
            columns = [position[c] for c in p.classes]
            probabilities[start : start + p.rows, columns] = p.matrix("probs", len(columns), "<f8")
        sizes.add(p.table["embedding"].type.list_size if "embedding" in p.table.column_names else 0)
        start += p.rows
    if len(sizes) == 1 and 0 not in sizes:
        (width,) = sizes
        embedding = _concatenate(parts, lambda p: p.matrix("embedding", width, "<f2"))[order]
    else:  # none logged, or of mixed sizes: as kennel.db.predcols reads such a window
        embedding = np.zeros((n, 0), dtype=np.float32)

    def column(name: str) -> np.ndarray:
        return np.asarray(_concatenate(parts, lambda p: p.column(name))[order])

    return PredictionColumns(
        ids=ids[order].tolist(),
        sources=_concatenate(parts, _Part.sources)[order].tolist(),
        versions=column("version").tolist(),
        truth=[None] * n,
        latency_ms=column("latency_ms").astype(np.float64),
        stats={k: column(k).astype(np.float64) for k in STATS},
        classes=classes,
        probabilities=probabilities[order],
        embedding=embedding,
    )
