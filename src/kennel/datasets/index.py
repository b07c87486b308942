"""A dataset version's index: what filtering, counting and paging through its files need, as
columns (label, split and slice codes, the quality columns, uri and sha256) plus its groups of
identical files.

It is derived from the manifest alone, so it can be built at any time (``build``); the catalog
builds it once when it commits a version and keeps it beside the manifest in the content store
as an Arrow IPC file (``to_bytes``), which opens in a few milliseconds where reading and
indexing a 100,000-file manifest takes several hundred (Parquet decoding, and the JSON of
every row's slice attributes). It also keeps what changed since the version it was made from
(the first files of each kind of change and their counts), the diff a page shows first."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from kennel.datasets.compare import Changes, Columns, additions, changes
from kennel.datasets.manifest import contiguous, repeated, uris_of

SLICE_VALUES = 20  # a column with more distinct values (a file index) is not a slice
GROUPS = 20  # exact-duplicate groups kept verbatim
QUALITY = ("brightness", "contrast", "sharpness", "side")  # side: the shorter side, px
CHANGES_KEPT = 100  # files of each kind of change kept with the diff from the parent
_SLICE = "slice:"  # prefix of a slice column's name in the stored file
FORMAT = 1

Codes = tuple[tuple[str, ...], np.ndarray]  # distinct values (sorted), each row's position


@dataclass(frozen=True)
class VersionIndex:
    """One version's files as columns, in manifest order (row i is the manifest's row i)."""

    uri: pa.Array
    sha256: pa.Array
    labels: tuple[str, ...]
    label_codes: np.ndarray
    splits: tuple[str, ...]
    split_codes: np.ndarray
    slices: dict[str, Codes]  # column -> (values, code per row)
    quality: dict[str, np.ndarray]
    duplicates: list[tuple[str, list[str]]]  # the first GROUPS groups: (sha256, its uris)
    duplicate_groups: int
    # what changed since the version it was made from (``changes_from``), each kind cut to
    # CHANGES_KEPT files: the diff most asked for, found when the version was committed
    changes_from: str | None = None
    changes: Changes | None = None

    @property
    def rows(self) -> int:
        return len(self.uri)

    def label_of(self, row: int) -> str:
        return self.labels[int(self.label_codes[row])]

    def split_of(self, row: int) -> str:
        return self.splits[int(self.split_codes[row])]

    def columns(self) -> Columns:
        """What ``kennel.datasets.compare`` reads, without the manifest."""

        def decoded(values: tuple[str, ...], codes: np.ndarray) -> pa.Array:
            return pa.array(values, pa.string()).take(pa.array(codes, pa.int32()))

        return Columns(self.uri, self.sha256, decoded(self.labels, self.label_codes),
                       decoded(self.splits, self.split_codes))  # fmt: skip


def _sorted_codes(column: pa.Array | pa.ChunkedArray) -> Codes:
    """Distinct values (sorted) and each row's position among them; a null is ''."""
    encoded = pc.dictionary_encode(pc.fill_null(contiguous(column), ""))
    values = [str(v) for v in encoded.dictionary.to_pylist()]
    order = sorted(range(len(values)), key=values.__getitem__)
    rank = np.empty(len(values), dtype=np.int32)
    rank[order] = np.arange(len(values), dtype=np.int32)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    return tuple(values[i] for i in order), (rank[codes] if len(values) else codes)


def _attributes(attrs: pa.Array) -> pa.Table | None:
    """Every row's attributes (a JSON object of strings) as string columns, parsed by Arrow in
    one pass; None when some value is not a JSON string (then they are parsed one by one)."""
    lines = pc.binary_join_element_wise(attrs, pa.scalar(""), "\n")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    text = lines.buffers()[2][start:end]
    try:
        table = pa_json.read_json(pa.BufferReader(text))
        if all(pa.types.is_string(t) for t in table.schema.types):
            return table
        # inference turned a date-like string into a timestamp (or a value is not a string,
        # which the explicit schema refuses): ask for strings
        strings = pa.schema([(n, pa.string()) for n in table.column_names])
        options = pa_json.ParseOptions(explicit_schema=strings)
        return pa_json.read_json(pa.BufferReader(text), parse_options=options)
    except pa.ArrowInvalid:
        return None


def _attributes_slowly(attrs: pa.Array) -> dict[str, pa.Array]:
    texts, codes = _sorted_codes(attrs)
    parsed = [json.loads(t) if t else {} for t in texts]
    columns: dict[str, pa.Array] = {}
    for key in sorted({k for p in parsed for k in p}):
        per_text = pa.array([str(p[key]) if key in p else "" for p in parsed], pa.string())
        columns[key] = per_text.take(pa.array(codes))
    return columns


def _slices(attrs: pa.Array) -> dict[str, Codes]:
    """Slice columns: attributes with at most SLICE_VALUES values, one of them shared by
    several files (a column whose every value is unique names files, it does not group them)."""
    table = _attributes(attrs) if len(attrs) else None
    columns = (
        {n: table[n] for n in table.column_names}
        if table is not None
        else _attributes_slowly(attrs)
    )
    out: dict[str, Codes] = {}
    for key in sorted(columns):
        column = columns[key]
        head = column.slice(0, 1000)  # a file index shows itself early, and cheaply
        if any(pc.count_distinct(c, mode="all").as_py() > SLICE_VALUES for c in (head, column)):
            continue
        values, codes = _sorted_codes(column)
        counts = np.bincount(codes, minlength=len(values))
        if any(n > 1 for v, n in zip(values, counts, strict=True) if v):
            out[key] = (values, codes)
    return out


def _duplicates(sha256: pa.Array, uri: pa.Array) -> tuple[list[tuple[str, list[str]]], int]:
    shared = repeated(sha256)
    shown = sorted(shared.to_pylist())[:GROUPS]
    groups = uris_of(sha256, uri, pa.array(shown, pa.string()))
    return [(s, sorted(groups[s])) for s in shown], len(shared)


def build(manifest: pa.Table) -> VersionIndex:
    """The index of a manifest table (``kennel.datasets.manifest.read_table``)."""
    uri, sha256 = contiguous(manifest["uri"]), contiguous(manifest["sha256"])
    labels, label_codes = _sorted_codes(manifest["label"])
    splits, split_codes = _sorted_codes(manifest["split"])
    width = manifest["width"].to_numpy()
    height = manifest["height"].to_numpy()
    duplicates, groups = _duplicates(sha256, uri)
    return VersionIndex(
        uri=uri,
        sha256=sha256,
        labels=labels,
        label_codes=label_codes,
        splits=splits,
        split_codes=split_codes,
        slices=_slices(contiguous(manifest["attrs"])),
        quality={
            "brightness": manifest["brightness"].to_numpy(),
            "contrast": manifest["contrast"].to_numpy(),
            "sharpness": manifest["sharpness"].to_numpy(),
            "side": np.minimum(width, height).astype(np.float64),
        },
        duplicates=duplicates,
        duplicate_groups=groups,
    )


def _coded(values: tuple[str, ...], codes: np.ndarray) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(
        pa.array(codes.astype(np.int32), pa.int32()), pa.array(values, pa.string())
    )


def _decoded(column: pa.ChunkedArray) -> Codes:
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    values = tuple(str(v) for v in array.dictionary.to_pylist())
    return values, array.indices.to_numpy(zero_copy_only=False)


def to_bytes(index: VersionIndex) -> bytes:
    """The index as an Arrow IPC file (zstd), its duplicate groups in the schema's metadata."""
    columns: dict[str, pa.Array] = {
        "uri": index.uri,
        "sha256": index.sha256,
        "label": _coded(index.labels, index.label_codes),
        "split": _coded(index.splits, index.split_codes),
        **{k: pa.array(v, pa.float64()) for k, v in index.quality.items()},
        **{_SLICE + k: _coded(values, codes) for k, (values, codes) in index.slices.items()},
    }
    meta = {"format": FORMAT, "duplicates": index.duplicates, "groups": index.duplicate_groups,
            "changes_from": index.changes_from,
            "changes": asdict(index.changes) if index.changes else None}  # fmt: skip
    table = pa.table(columns).replace_schema_metadata({"kennel": json.dumps(meta)})
    sink = io.BytesIO()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue()


def from_bytes(data: bytes) -> VersionIndex:
    """An index written by ``to_bytes``."""
    table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
    meta = json.loads((table.schema.metadata or {})[b"kennel"])
    if meta.get("format") != FORMAT:
        raise ValueError(f"dataset index format {meta.get('format')!r} is not {FORMAT}")
    labels, label_codes = _decoded(table["label"])
    splits, split_codes = _decoded(table["split"])
    return VersionIndex(
        uri=contiguous(table["uri"]),
        sha256=contiguous(table["sha256"]),
        labels=labels,
        label_codes=label_codes,
        splits=splits,
        split_codes=split_codes,
        slices={
            name.removeprefix(_SLICE): _decoded(table[name])
            for name in table.column_names
            if name.startswith(_SLICE)
        },
        quality={k: table[k].to_numpy() for k in QUALITY},
        duplicates=[(sha, list(uris)) for sha, uris in meta["duplicates"]],
        duplicate_groups=int(meta["groups"]),
        changes_from=meta.get("changes_from"),
        changes=_changes(meta["changes"]) if meta.get("changes") else None,
    )


def _changes(found: dict[str, Any]) -> Changes:
    def pairs(kind: str) -> list[tuple[int, int]]:
        return [(int(i), int(j)) for i, j in found[kind]]

    return Changes([int(j) for j in found["added"]], [int(i) for i in found["removed"]],
                   pairs("relabelled"), pairs("resplit"),
                   {k: int(n) for k, n in found["counts"].items()})  # fmt: skip


def since(index: VersionIndex, parent_id: str, parent: VersionIndex) -> VersionIndex:
    """``index`` with what changed since ``parent`` (the version ``parent_id``) kept in it."""
    found = changes(parent.columns(), index.columns(), limit=CHANGES_KEPT)
    return replace(index, changes_from=parent_id, changes=found)


def grown(index: VersionIndex, parent_id: str, added: np.ndarray) -> VersionIndex:
    """``since`` for a version that holds its parent's files unchanged and new ones at rows
    ``added``."""
    return replace(index, changes_from=parent_id, changes=additions(added, limit=CHANGES_KEPT))
