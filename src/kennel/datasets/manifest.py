"""A dataset version's manifest: one row per source file, stored as Parquet in the content store.

The version id is the sha256 of a canonical text form of the rows (sorted, fixed column order,
floats at fixed precision), never of Parquet bytes, so it depends only on content: re-ingesting
identical data yields the identical id whatever library wrote the file.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True, order=True)
class Row:
    uri: str
    sha256: str
    label: str
    split: str
    width: int
    height: int
    brightness: float
    contrast: float
    sharpness: float
    phash: str
    attrs: str  # JSON object of extra source columns (slices), canonical key order

    @property
    def key(self) -> tuple[str, str]:
        return (self.uri, self.sha256)


COLUMNS = [f.name for f in fields(Row)]
SCHEMA = pa.schema(
    [
        ("uri", pa.string()),
        ("sha256", pa.string()),
        ("label", pa.string()),
        ("split", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("brightness", pa.float64()),
        ("contrast", pa.float64()),
        ("sharpness", pa.float64()),
        ("phash", pa.string()),
        ("attrs", pa.string()),
    ]
)


# manifest order: by uri, then sha256 (attrgetter: C-level, 4x cheaper than a function); the
# same order as Arrow's sort of the two columns, since UTF-8 bytes sort as code points do
by_key: Callable[[Row], tuple[str, str]] = attrgetter("uri", "sha256")
MANIFEST_ORDER = [("uri", "ascending"), ("sha256", "ascending")]


def contiguous(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``column`` as one array (a table's column may come in chunks)."""
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def repeated(values: pa.Array) -> pa.Array:
    """The values that occur more than once in ``values``, each once (one hash count: a
    third of a grouping's time on 100,000 sha256 values)."""
    counted = pc.value_counts(values)
    return counted.field("values").filter(pc.greater(counted.field("counts"), 1))


def uris_of(sha256: pa.Array, uri: pa.Array, contents: pa.Array) -> dict[str, list[str]]:
    """The uris of each of ``contents`` (sha256 values), in row order."""
    held = pc.is_in(sha256, value_set=contents)
    found: dict[str, list[str]] = {}
    shas, names = sha256.filter(held).to_pylist(), uri.filter(held).to_pylist()
    for sha, name in zip(shas, names, strict=True):
        found.setdefault(sha, []).append(name)
    return found


def attrs_json(attrs: dict[str, Any]) -> str:
    return json.dumps(attrs, sort_keys=True, separators=(",", ":"))


def version_id(rows: list[Row] | pa.Table) -> str:
    """The sha256 of the rows' canonical text: one line per row in manifest order, its fields
    tab-separated in column order, integers in decimal, floats to 4 decimals as Python's
    ``format(x, ".4f")`` writes them. A table must be in manifest order already (``to_table``
    and ``kennel.datasets.extension`` make it so)."""
    table = rows if isinstance(rows, pa.Table) else to_table(rows)
    fields: list[pa.Array] = []
    for name in COLUMNS:
        column = contiguous(table[name])
        if column.null_count:
            raise ValueError(f"manifest column {name!r} has {column.null_count} empty values")
        if pa.types.is_floating(column.type):  # Arrow writes floats shortest, not to 4 places
            column = fixed4(column)
        # large strings: 64-bit offsets, so the text of a huge version cannot overflow them
        fields.append(column.cast(pa.large_string()))
    text = pa.scalar("", pa.large_string())
    ends, tab = pa.scalar("\n", pa.large_string()), pa.scalar("\t", pa.large_string())
    fields[-1] = pc.binary_join_element_wise(fields[-1], text, ends)  # each line ends in \n
    lines = pc.binary_join_element_wise(*fields, tab)
    # the lines lie end to end in the array's data buffer: hash them there, as one text
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
    start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return hashlib.sha256(memoryview(lines.buffers()[2])[start:end]).hexdigest()


def fixed4(column: pa.Array) -> pa.Array:
    """Each float as ``format(x, ".4f")`` writes it, built as arrays: the digits of the
    integer nearest to x * 10,000, the sign of x (``-0.0000`` for a small negative, as
    Python writes it). Python rounds x's exact binary value; the product carries a rounding
    error of at most half a unit in its last place, so where it lies that close to halfway
    between two integers, or x is not finite or too large for exact integers, that value is
    formatted by Python instead (a formatting per float took a sixth of a 100,000-file
    version's commit)."""
    x = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = x * 10_000.0
        nearest = np.rint(scaled)
        doubtful = ~np.isfinite(scaled) | (np.abs(scaled) >= 2.0**52)
        doubtful |= np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) <= np.abs(scaled) * 1e-14
    units = np.abs(np.where(doubtful, 0.0, nearest)).astype(np.int64)
    whole = pc.cast(pa.array(units // 10_000), pa.string())
    negative = np.signbit(x)
    if negative.any():  # quality figures never are: no sign column to build and join
        whole = pc.binary_join_element_wise(pc.if_else(pa.array(negative), "-", ""), whole, "")
    places = pc.utf8_lpad(pc.cast(pa.array(units % 10_000), pa.string()), 4, "0")
    text = pc.binary_join_element_wise(whole, places, ".")
    if not doubtful.any():
        return text
    # only those are formatted one by one (a quarter of a dataset's brightness values can be)
    exact = [format(v, ".4f") for v in x[doubtful].tolist()]
    return pc.replace_with_mask(text, pa.array(doubtful), pa.array(exact, pa.string()))


def to_table(rows: list[Row]) -> pa.Table:
    """The rows as the manifest's table, in manifest order (by uri, then sha256)."""
    ordered = sorted(rows, key=by_key)
    return pa.Table.from_pydict(
        {name: [getattr(r, name) for r in ordered] for name in COLUMNS}, schema=SCHEMA
    )


def to_parquet(rows: list[Row] | pa.Table) -> bytes:
    table = rows if isinstance(rows, pa.Table) else to_table(rows)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def read_table(data: bytes) -> pa.Table:
    """The manifest as an Arrow table: what a reader that filters, counts or pages through a
    large version uses instead of building one ``Row`` per file (about 5x faster, 4x smaller)."""
    return pq.read_table(io.BytesIO(data), schema=SCHEMA)


def from_parquet(data: bytes) -> list[Row]:
    table = pq.read_table(io.BytesIO(data))
    columns = [table.column(name).to_pylist() for name in COLUMNS]
    return [Row(*values) for values in zip(*columns, strict=True)]
