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

import pyarrow as pa
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

    def canonical(self) -> str:
        # Written out by hand: dataclasses.astuple deep-copies and was 90% of versioning time.
        return (
            f"{self.uri}\t{self.sha256}\t{self.label}\t{self.split}\t{self.width}\t"
            f"{self.height}\t{self.brightness:.4f}\t{self.contrast:.4f}\t"
            f"{self.sharpness:.4f}\t{self.phash}\t{self.attrs}"
        )

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


# manifest order: by uri, then sha256 (attrgetter: C-level, 4x cheaper than a function)
by_key: Callable[[Row], tuple[str, str]] = attrgetter("uri", "sha256")


def attrs_json(attrs: dict[str, Any]) -> str:
    return json.dumps(attrs, sort_keys=True, separators=(",", ":"))


def version_id(rows: list[Row]) -> str:
    digest = hashlib.sha256()
    for row in sorted(rows, key=by_key):
        digest.update(row.canonical().encode())
        digest.update(b"\n")
    return digest.hexdigest()


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
