"""What the Datasets pages show, read through the dataset catalog and the ingest store.

A version's manifest is read once as columns (``DatasetCatalog.table``) and turned into an
``Index``: label, split and slice codes, the quality columns and the exact-duplicate groups.
Filters, counts and histograms are numpy over those columns, and a page builds rows only for
the tiles it shows: a 100,000-image version costs about a second the first time it is opened
and milliseconds after (versions never change, so an index is never stale)."""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kennel.datasets.manifest import SPLITS, Row
from kennel.datasets.versioning import DatasetVersion, Diff
from kennel.db.ingest import IngestRecord, IngestStore
from kennel.errors import ConfigError, NotFoundError, did_you_mean
from kennel.ingest.validate import QUARANTINED
from kennel.wiring import Workspace

SLICE_VALUES = 20  # a column with more distinct values (a file index) is not a slice
PER_PAGE = 48  # tiles
QUARANTINE_PAGE = 25
DIFF_ROWS = 50  # rows shown per section of a diff
CHAIN = 10  # ancestors shown
GROUPS = 20  # exact-duplicate groups shown
BINS = 20
QUALITY = {
    "brightness": "brightness (mean luma, 0-255)",
    "contrast": "contrast (luma standard deviation)",
    "sharpness": "sharpness (variance of the Laplacian)",
    "side": "size (shorter side, px)",
}


@dataclass(frozen=True)
class Index:
    """A version's manifest as columns, for filtering and counting."""

    table: pa.Table
    labels: tuple[str, ...]
    label_codes: np.ndarray
    splits: tuple[str, ...]
    split_codes: np.ndarray
    slices: dict[str, tuple[tuple[str, ...], np.ndarray]]  # column -> (values, code per row)
    quality: dict[str, np.ndarray]
    duplicates: list[tuple[str, list[str]]]  # the first GROUPS (sha256, its uris) groups
    duplicate_groups: int


def _codes(column: pa.ChunkedArray) -> tuple[tuple[str, ...], np.ndarray]:
    """Distinct values (sorted) and each row's position among them."""
    encoded = pc.dictionary_encode(column).combine_chunks()
    values = [str(v) for v in encoded.dictionary.to_pylist()]
    order = sorted(range(len(values)), key=values.__getitem__)
    rank = np.empty(len(values), dtype=np.int32)
    rank[order] = np.arange(len(values), dtype=np.int32)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    return tuple(values[i] for i in order), rank[codes] if len(values) else codes


def _slices(table: pa.Table) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """Slice columns: source columns with at most SLICE_VALUES values, one of them shared by
    several files (a column whose every value is unique names files, it does not group them).
    Each distinct attrs text is parsed once, however many rows share it."""
    texts, codes = _codes(table["attrs"])
    parsed = [json.loads(t) for t in texts]
    out: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    for key in sorted({k for p in parsed for k in p}):
        per_text = [str(p.get(key, "")) for p in parsed]
        values = tuple(sorted(set(per_text)))
        if len(values) > SLICE_VALUES:
            continue
        position = {v: i for i, v in enumerate(values)}
        rows = np.array([position[v] for v in per_text], np.int32)[codes]
        counts = np.bincount(rows, minlength=len(values))
        if any(n > 1 for v, n in zip(values, counts, strict=True) if v):
            out[key] = (values, rows)
    return out


def build_index(table: pa.Table) -> Index:
    labels, label_codes = _codes(table["label"])
    splits, split_codes = _codes(table["split"])
    width = table["width"].to_numpy()
    height = table["height"].to_numpy()
    counted = table.group_by("sha256").aggregate([("uri", "count")])
    repeated = counted.filter(pc.greater(counted["uri_count"], 1))
    shown = sorted(repeated["sha256"].to_pylist())[:GROUPS]
    members = table.filter(pc.is_in(table["sha256"], value_set=pa.array(shown, pa.string())))
    groups: dict[str, list[str]] = {s: [] for s in shown}
    for sha, uri in zip(members["sha256"].to_pylist(), members["uri"].to_pylist(), strict=True):
        groups[sha].append(uri)
    return Index(
        table=table,
        labels=labels,
        label_codes=label_codes,
        splits=splits,
        split_codes=split_codes,
        slices=_slices(table),
        quality={
            "brightness": table["brightness"].to_numpy(),
            "contrast": table["contrast"].to_numpy(),
            "sharpness": table["sharpness"].to_numpy(),
            "side": np.minimum(width, height),
        },
        duplicates=[(s, sorted(groups[s])) for s in shown],
        duplicate_groups=repeated.num_rows,
    )


class Indexes:
    """The indexes of the versions opened last (a few; each holds its manifest's columns)."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._kept: OrderedDict[str, Index] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, ws: Workspace, version: DatasetVersion) -> Index:
        key = version.manifest_sha256
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        index = build_index(ws.catalog.table(version))
        with self._lock:
            self._kept[key] = index
            while len(self._kept) > self.keep:
                self._kept.popitem(last=False)
        return index


@dataclass(frozen=True)
class Selection:
    label: str = ""
    split: str = ""
    slice: str = ""  # "column=value"

    @property
    def query(self) -> str:
        return urlencode({k: v for k, v in self.__dict__.items() if v})


def selected(index: Index, sel: Selection) -> np.ndarray:
    """Positions of the rows ``sel`` keeps; a label or value the version lacks keeps none,
    a split or slice column that cannot exist is the request's mistake."""
    keep = np.ones(index.table.num_rows, dtype=bool)
    if sel.label:
        code = index.labels.index(sel.label) if sel.label in index.labels else -1
        keep &= index.label_codes == code
    if sel.split:
        if sel.split not in SPLITS:
            raise ConfigError(f"no split {sel.split!r}: use {', '.join(SPLITS)}")
        code = index.splits.index(sel.split) if sel.split in index.splits else -1
        keep &= index.split_codes == code
    if sel.slice:
        column, eq, value = sel.slice.partition("=")
        if not eq or column not in index.slices:
            known = ", ".join(index.slices) or "none"
            raise ConfigError(
                f"bad slice {sel.slice!r}: use COLUMN=VALUE with a slice column ({known})"
                + did_you_mean(column, index.slices)
            )
        values, codes = index.slices[column]
        keep &= codes == (values.index(value) if value in values else -1)
    return np.flatnonzero(keep)


def bins(values: np.ndarray, count: int = BINS) -> list[tuple[float, float, int]]:
    if values.size == 0:
        return []
    counts, edges = np.histogram(values.astype(np.float64), bins=count)
    return [(float(edges[i]), float(edges[i + 1]), int(n)) for i, n in enumerate(counts)]


@dataclass(frozen=True)
class Quarantine:
    kinds: dict[str, int]  # reason kind -> files, as the ingest summarised them
    total: int
    files: list[IngestRecord]
    drawable: set[str]  # sha256 of the files whose bytes were kept (label conflicts)
    page: int
    pages: int


def quarantine(ws: Workspace, version: DatasetVersion, page: int) -> Quarantine:
    kinds = {str(k): int(n) for k, n in version.summary.get("quarantined", {}).items()}
    run = version.ingest_run_id
    store = IngestStore(ws.db)
    total = store.count(run, QUARANTINED) if run else 0
    pages = max(1, math.ceil(total / QUARANTINE_PAGE))
    offset = (min(page, pages) - 1) * QUARANTINE_PAGE
    files = store.records(run, QUARANTINED, limit=QUARANTINE_PAGE, offset=offset) if run else []
    drawable = store.known({f.sha256 for f in files if f.sha256})
    return Quarantine(kinds, total, files, drawable, min(page, pages), pages)


@dataclass(frozen=True)
class DiffView:
    against: DatasetVersion
    counts: dict[str, int]
    added: list[Row]
    removed: list[Row]
    relabelled: list[tuple[Row, Row]]
    resplit: list[tuple[Row, Row]]


def diff_view(d: Diff) -> DiffView:
    """``kennel data diff``'s result, each section cut to DIFF_ROWS rows."""
    return DiffView(d.a, d.counts, d.added, d.removed, d.relabelled, d.resplit)


def resolve(ws: Workspace, dataset: str, spec: str) -> DatasetVersion:
    """``spec`` (vN, an id prefix, latest, or a whole NAME@... ref) as a version."""
    return ws.catalog.resolve(spec if "@" in spec else f"{dataset}@{spec}")


def ancestry(ws: Workspace, version: DatasetVersion) -> tuple[list[DatasetVersion], bool]:
    """The version's parents, nearest first, at most CHAIN; and whether there are more."""
    chain: list[DatasetVersion] = []
    cursor = version
    while cursor.parent_id is not None and len(chain) <= CHAIN:
        parent = ws.catalog.store.get(cursor.dataset, cursor.parent_id)
        if parent is None:
            break
        chain.append(parent)
        cursor = parent
    return chain[:CHAIN], len(chain) > CHAIN


def tiles(index: Index, positions: np.ndarray, page: int) -> list[dict[str, Any]]:
    chosen = positions[(page - 1) * PER_PAGE : page * PER_PAGE]
    columns = ["uri", "sha256", "label", "split", "width", "height"]
    rows: list[dict[str, Any]] = index.table.select(columns).take(pa.array(chosen)).to_pylist()
    for row in rows:
        row["name"] = row["uri"].replace("\\", "/").rsplit("/", 1)[-1]
    return rows


def known_dataset(ws: Workspace, name: str) -> None:
    names = ws.catalog.datasets()
    if name not in names:
        raise NotFoundError(f"no dataset {name!r}{did_you_mean(name, names)}")
