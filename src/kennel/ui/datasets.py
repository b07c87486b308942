"""What the Datasets pages show, read through the dataset catalog and the ingest store.

A version's index (``DatasetCatalog.index``: label, split and slice codes, the quality columns,
uri and sha256, the exact-duplicate groups; stored when the version was committed) is read
once and kept. Filters, counts and histograms are numpy over its columns, and a page builds
rows only for the tiles it shows: a 100,000-image version opens in a few tens of milliseconds
(versions never change, so neither an index nor a diff kept here is ever stale)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pyarrow as pa

from kennel.datasets import compare
from kennel.datasets.index import CHANGES_KEPT, VersionIndex
from kennel.datasets.index import SLICE_VALUES as SLICE_VALUES
from kennel.datasets.manifest import SPLITS
from kennel.datasets.versioning import DatasetVersion
from kennel.db.disputes import Dispute
from kennel.db.ingest import IngestRecord, IngestStore
from kennel.errors import ConfigError, NotFoundError, did_you_mean
from kennel.ingest.disputes import listed
from kennel.ingest.validate import QUARANTINED
from kennel.serve.auth import Identity
from kennel.ui.paging import pages_of
from kennel.ui.views import Button, button
from kennel.wiring import Workspace

PER_PAGE = 48  # tiles
QUARANTINE_PAGE = 25
DIFF_ROWS = 50  # rows shown per section of a diff
CHAIN = 10  # ancestors shown
BINS = 20
QUALITY = {
    "brightness": "brightness (mean luma, 0-255)",
    "contrast": "contrast (luma standard deviation)",
    "sharpness": "sharpness (variance of the Laplacian)",
    "side": "size (shorter side, px)",
}


class Indexes:
    """The indexes of the versions opened last (a few; each holds its files' columns), and the
    diffs shown last: versions never change, so neither is ever stale."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._kept: OrderedDict[str, VersionIndex] = OrderedDict()
        self._diffs: OrderedDict[tuple[str, str], DiffView] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, ws: Workspace, version: DatasetVersion) -> VersionIndex:
        key = version.manifest_sha256
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        index = ws.catalog.index(version)
        with self._lock:
            self._kept[key] = index
            while len(self._kept) > self.keep:
                self._kept.popitem(last=False)
        return index

    def diff(self, ws: Workspace, a: DatasetVersion, b: DatasetVersion) -> DiffView:
        key = (a.manifest_sha256, b.manifest_sha256)
        with self._lock:
            if key in self._diffs:
                self._diffs.move_to_end(key)
                return self._diffs[key]
        found = diff_view(a, self.of(ws, a), self.of(ws, b))  # b after a: usually b's parent
        with self._lock:
            self._diffs[key] = found
            while len(self._diffs) > 4 * self.keep:
                self._diffs.popitem(last=False)
        return found


@dataclass(frozen=True)
class Selection:
    label: str = ""
    split: str = ""
    slice: str = ""  # "column=value"

    @property
    def query(self) -> str:
        return urlencode({k: v for k, v in self.__dict__.items() if v})


def selected(index: VersionIndex, sel: Selection) -> np.ndarray:
    """Positions of the rows ``sel`` keeps; a label or value the version lacks keeps none,
    a split or slice column that cannot exist is the request's mistake."""
    keep = np.ones(index.rows, dtype=bool)
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
    pages = pages_of(total, QUARANTINE_PAGE, page, "quarantined files")  # past the last: 404
    offset = (page - 1) * QUARANTINE_PAGE
    files = store.records(run, QUARANTINED, limit=QUARANTINE_PAGE, offset=offset) if run else []
    drawable = store.known({f.sha256 for f in files if f.sha256})
    return Quarantine(kinds, total, files, drawable, page, pages)


@dataclass(frozen=True)
class Disputed:
    """A label dispute as the dataset page shows it, with its Settle button."""

    dispute: Dispute
    settle: Button
    choices: tuple[str, ...]  # the labels it may be settled as
    drawable: bool  # its bytes are in the content store


def disputes(ws: Workspace, who: Identity, name: str) -> list[Disputed]:
    """The dataset's label disputes, unsettled first, each oldest first."""
    store = IngestStore(ws.db)
    found = sorted(listed(store, ws.catalog, name), key=lambda d: d.settled_label is not None)
    kept = store.known({d.sha256 for d in found})
    labels = tuple(ws.project.config.data.labels)
    return [
        Disputed(
            d,
            button(
                "Settle",
                "/actions/settle",
                {"dataset": name, "sha256": d.sha256},
                who=who,
                permission="feedback",
            ),
            labels or d.labels,
            d.sha256 in kept,
        )
        for d in found
    ]


@dataclass(frozen=True)
class File:
    uri: str
    label: str
    split: str


@dataclass(frozen=True)
class DiffView:
    against: DatasetVersion
    counts: dict[str, int]
    added: list[File]
    removed: list[File]
    relabelled: list[tuple[File, File]]
    resplit: list[tuple[File, File]]


def diff_view(against: DatasetVersion, a: VersionIndex, b: VersionIndex) -> DiffView:
    """``kennel data diff``'s counts, each kind's files cut to DIFF_ROWS, compared on the two
    versions' indexes (no manifest is read); against the version ``b`` was made from, the
    changes ``b``'s index kept when it was committed."""
    if b.changes is not None and b.changes_from == against.id and DIFF_ROWS <= CHANGES_KEPT:
        kept = b.changes
        found = compare.Changes(kept.added[:DIFF_ROWS], kept.removed[:DIFF_ROWS],
                                kept.relabelled[:DIFF_ROWS], kept.resplit[:DIFF_ROWS],
                                kept.counts)  # fmt: skip
    else:
        found = compare.changes(a.columns(), b.columns(), limit=DIFF_ROWS)

    def file(index: VersionIndex, row: int) -> File:
        return File(str(index.uri[row].as_py()), index.label_of(row), index.split_of(row))

    return DiffView(
        against,
        found.counts,
        [file(b, j) for j in found.added],
        [file(a, i) for i in found.removed],
        [(file(a, i), file(b, j)) for i, j in found.relabelled],
        [(file(a, i), file(b, j)) for i, j in found.resplit],
    )


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


def tiles(index: VersionIndex, positions: np.ndarray, page: int) -> list[dict[str, Any]]:
    chosen = positions[(page - 1) * PER_PAGE : page * PER_PAGE]
    taken = pa.array(chosen, pa.int64())
    rows = []
    for at, uri, sha in zip(chosen, index.uri.take(taken).to_pylist(),
                            index.sha256.take(taken).to_pylist(), strict=True):  # fmt: skip
        name = uri.replace("\\", "/").rsplit("/", 1)[-1]
        rows.append({"uri": uri, "sha256": sha, "name": name, "label": index.label_of(at),
                     "split": index.split_of(at)})  # fmt: skip
    return rows


def known_dataset(ws: Workspace, name: str) -> None:
    names = ws.catalog.datasets()
    if name not in names:
        raise NotFoundError(f"no dataset {name!r}{did_you_mean(name, names)}")
