"""Dataset versions: the catalog that stores, resolves, lists and compares them (metadata DB +
content store). A version's child is built from it by ``kennel.datasets.extension``."""

from __future__ import annotations

import re
import threading
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from kennel.datasets import compare
from kennel.datasets import index as version_index
from kennel.datasets.manifest import (
    Row,
    from_parquet,
    read_table,
    to_parquet,
    to_table,
    version_id,
)
from kennel.db import MAX_NUMBER, Database
from kennel.db.datasets import DatasetStore
from kennel.db.datasets import DatasetVersion as DatasetVersion
from kennel.db.disputes import Offer
from kennel.errors import (
    AmbiguousRefError,
    ConfigError,
    HeadMovedError,
    NotFoundError,
    StateError,
    did_you_mean,
)
from kennel.storage import ContentStore

if TYPE_CHECKING:
    import numpy as np

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
SAMPLE = 20  # how many duplicate groups / pairs a summary keeps verbatim
TABLE_CACHE_BYTES = 256 * 2**20  # manifests kept decoded by a long-lived catalog (the dashboard)
INDEXES_KEPT = 4  # indexes kept opened (an append reads its parent's twice)


def counts(manifest: pa.Table) -> dict[str, dict[str, int]]:
    """Files per label and split of a manifest table."""
    table: dict[str, Counter[str]] = defaultdict(Counter)
    counted = manifest.group_by(["label", "split"], use_threads=False).aggregate([("uri", "count")])
    for row in counted.to_pylist():
        table[row["label"]][row["split"]] += int(row["uri_count"])
    return {label: dict(sorted(c.items())) for label, c in sorted(table.items())}


def contents_unique(version: DatasetVersion) -> bool:
    """Whether no two files of ``version`` are known to share their bytes: an ingest's commit
    counts the exact-duplicate groups of the whole version in its summary (reading the stored
    index to learn the same took longer than counting them again). False: not known."""
    return version.summary.get("exact_duplicate_groups") == 0


def check_name(name: str) -> str:
    if not _NAME.match(name):
        said = repr(name) if len(name) <= 60 else f"{name[:40]!r}... ({len(name)} characters)"
        raise ConfigError(
            f"invalid dataset name {said}: use letters, digits, '.', '_' or '-' (max 128)"
        )
    return name


@dataclass(frozen=True)
class Diff:
    a: DatasetVersion
    b: DatasetVersion
    added: list[Row]
    removed: list[Row]
    relabelled: list[tuple[Row, Row]]
    resplit: list[tuple[Row, Row]]
    # files per kind of change; more than the lists hold when the diff was cut to a limit
    counts: dict[str, int] = field(default_factory=dict)


class DatasetCatalog:
    """Dataset versions in the metadata DB, their manifests in the content store."""

    def __init__(
        self, db: Database, content: ContentStore, *, cache_bytes: int = TABLE_CACHE_BYTES
    ) -> None:
        self.db = db
        self.content = content
        self.store = DatasetStore(db)
        self.cache_bytes = cache_bytes
        self._tables: OrderedDict[str, pa.Table] = OrderedDict()
        self._indexes: OrderedDict[str, version_index.VersionIndex] = OrderedDict()
        self._lock = threading.Lock()

    def ensure_dataset(self, name: str) -> None:
        check_name(name)
        self.store.ensure_dataset(name)

    def datasets(self) -> list[str]:
        return self.store.names()

    def versions(self, dataset: str | None = None) -> list[DatasetVersion]:
        return self.store.versions(dataset)

    def latest(self, dataset: str) -> DatasetVersion | None:
        return self.store.latest(dataset)

    def resolve(self, ref: str) -> DatasetVersion:
        """``NAME``, ``NAME@latest``, ``NAME@v3`` (sequence) or ``NAME@<id prefix>`` (>= 4 hex)."""
        name, at, version = ref.partition("@")
        check_name(name)
        if at and not version:  # malformed: bad input (exit 2), as a model ref's is
            raise ConfigError(
                f"no version after '@' in {ref!r}: use {name}, {name}@latest, {name}@vN or "
                f"{name}@<id prefix of at least 4 hex digits>"
            )
        if version in ("", "latest"):
            found = self.latest(name)
            if found is None:
                names = self.store.names_with_versions()
                raise NotFoundError(
                    f"dataset {name!r} has no versions{did_you_mean(name, names)}"
                    + ("" if names else " (no dataset yet: kennel data ingest)")
                )
            return found
        if re.fullmatch(r"v[0-9]+", version):
            seq = int(version[1:])
            matches = self.store.with_seq(name, seq) if seq <= MAX_NUMBER else []
        elif re.fullmatch(r"[0-9a-fA-F]{4,64}", version):  # as copied from anywhere
            matches = self.store.with_id_prefix(name, version.lower())
        else:
            raise ConfigError(
                f"bad version {version!r} in {ref!r}: use vN, latest, or an id prefix of at "
                "least 4 hex digits"
            )
        if not matches:
            raise NotFoundError(f"dataset version {ref!r} not found")
        if len(matches) > 1:
            raise AmbiguousRefError(f"{ref!r} matches {len(matches)} versions; give more digits")
        return matches[0]

    def rows(self, version: DatasetVersion) -> list[Row]:
        return from_parquet(self.content.get(version.manifest_sha256))

    def table(self, version: DatasetVersion) -> pa.Table:
        """The version's manifest as an Arrow table (rows in manifest order). Recently read
        manifests stay decoded, up to ``cache_bytes``: a manifest is addressed by its content,
        so a kept one can never be stale."""
        digest = version.manifest_sha256
        with self._lock:
            if digest in self._tables:
                self._tables.move_to_end(digest)
                return self._tables[digest]
        table = read_table(self.content.get(digest))  # hash-verified
        with self._lock:
            self._tables[digest] = table
            while len(self._tables) > 1 and (
                sum(t.nbytes for t in self._tables.values()) > self.cache_bytes
            ):
                self._tables.popitem(last=False)
        return table

    def index(self, version: DatasetVersion) -> version_index.VersionIndex:
        """The version's index: the one stored when it was committed, else (a version committed
        before indexes were stored) built from its manifest now."""
        digest = version.index_sha256
        if digest is None:
            return version_index.build(self.table(version))
        with self._lock:  # addressed by content: a kept one is never stale
            if digest in self._indexes:
                self._indexes.move_to_end(digest)
                return self._indexes[digest]
        index = version_index.from_bytes(self.content.get(digest))
        with self._lock:
            self._indexes[digest] = index
            while len(self._indexes) > INDEXES_KEPT:
                self._indexes.popitem(last=False)
        return index

    def commit(
        self,
        dataset: str,
        rows: list[Row] | pa.Table,
        *,
        parent: DatasetVersion | None,
        ingest_run_id: str | None,
        summary: dict[str, Any],
        actor: str,
        added: np.ndarray | None = None,
        disputes: Mapping[str, Offer] | None = None,
    ) -> tuple[DatasetVersion, bool]:
        """Store ``rows`` (or a manifest table, in manifest order) as a version of ``dataset``;
        (version, False) when it already exists. HeadMovedError when ``parent`` is no longer
        the dataset's newest version. ``added``: the rows new to ``parent``, when the caller
        knows that every other row is the parent's, unchanged (an extension). ``disputes``:
        label disputes the ingest found, recorded with a new version (none when it exists)."""
        table = rows if isinstance(rows, pa.Table) else to_table(rows)
        vid: str | None = None
        if added is not None and not len(added):
            # the parent's rows again (unchanged data ingested again): an existing version,
            # found by its id before anything is written
            vid = version_id(table)
            existing = self.store.get(dataset, vid)
            if existing is not None:
                return _not_older(existing, self.latest(dataset), parent), False
        # otherwise the manifest's file and index are made while its id is computed: Arrow's
        # kernels let go of the GIL, so the three share the cores (a third off a
        # 100,000-file version's commit); made for nothing when the id names a version that
        # exists already, as it rarely does
        with ThreadPoolExecutor(2, thread_name_prefix="kennel-commit") as pool:
            written = pool.submit(to_parquet, table)
            built = pool.submit(version_index.build, table)
            if vid is None:
                vid = version_id(table)
                existing = self.store.get(dataset, vid)
                if existing is not None:
                    return _not_older(existing, self.latest(dataset), parent), False
            manifest = self.content.put(written.result())
            index = built.result()
        if parent is not None and added is not None:
            index = version_index.grown(index, parent.id, added)
        elif parent is not None:
            index = version_index.since(index, parent.id, self.index(parent))
        index_sha256 = self.content.put(version_index.to_bytes(index))
        version = self.store.add_version(
            dataset,
            vid,
            parent_id=parent.id if parent else None,
            manifest_sha256=manifest,
            index_sha256=index_sha256,
            ingest_run_id=ingest_run_id,
            n_rows=table.num_rows,
            counts=counts(table),
            summary=summary,
            actor=actor,
            disputes=disputes,
        )
        return version, True

    def diff(self, a: DatasetVersion, b: DatasetVersion, *, limit: int | None = None) -> Diff:
        """Files (by uri and content) added, removed, relabelled or moved to another split,
        each list in file order and cut to ``limit`` (``counts`` has the full numbers).
        Compared as Arrow columns (``kennel.datasets.compare``); a ``Row`` is built only for
        what is returned."""
        table_a, table_b = self.table(a), self.table(b)
        found = compare.changes(compare.of_table(table_a), compare.of_table(table_b), limit=limit)
        return Diff(
            a=a,
            b=b,
            added=_rows(table_b, found.added),
            removed=_rows(table_a, found.removed),
            relabelled=_pairs(table_a, table_b, found.relabelled),
            resplit=_pairs(table_a, table_b, found.resplit),
            counts=found.counts,
        )


def _rows(table: pa.Table, positions: Sequence[int]) -> list[Row]:
    return [Row(**values) for values in table.take(pa.array(positions, pa.int64())).to_pylist()]


def _pairs(
    table_a: pa.Table, table_b: pa.Table, positions: Sequence[tuple[int, int]]
) -> list[tuple[Row, Row]]:
    rows_a = _rows(table_a, [i for i, _ in positions])
    rows_b = _rows(table_b, [j for _, j in positions])
    return list(zip(rows_a, rows_b, strict=True))


def _not_older(
    existing: DatasetVersion, head: DatasetVersion | None, parent: DatasetVersion | None
) -> DatasetVersion:
    """``existing``, the version whose content a commit would make, when it is the dataset's
    newest, ``head`` (nothing changed); StateError for an older one. A version is its content, so
    the newest cannot become it again (files put back after a version withdrew or rewrote
    them): said, where it was "unchanged" while the dataset's newest still lacked them. Built on
    a ``parent`` that is no longer the newest (another ingest committed meanwhile), it is
    HeadMovedError: the caller builds again on the newest, as for a new version."""
    if head is None or existing.id == head.id:
        return existing
    if parent is not None and parent.id != head.id:
        raise HeadMovedError(
            f"dataset {existing.dataset!r} moved on: its newest version is {head.id}, "
            f"not {parent.id}",
            head.id,
        )
    raise StateError(
        f"these files make {existing.ref} (v{existing.seq}) again, an older version of "
        f"{existing.dataset!r} whose newest is v{head.seq}: a version is its content, so none "
        f"newer is made. Use {existing.dataset}@v{existing.seq} where this data is meant "
        f"(train -d {existing.dataset}@v{existing.seq})"
    )
