"""The datasets aggregate: dataset names and their immutable versions (entities in, entities out).

Items (one distinct image content each) are written by ``kennel.db.ingest.IngestStore`` in the
same transaction as the ingest records that point at them; ``Item`` is their entity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from kennel.db.audit import record
from kennel.db.disputes import Offer, record_disputes
from kennel.db.engine import Database
from kennel.db.locking import serialize
from kennel.db.schema import DatasetRow, DatasetVersionRow
from kennel.errors import HeadMovedError


@dataclass(frozen=True)
class DatasetVersion:
    dataset: str
    id: str
    seq: int
    parent_id: str | None
    manifest_sha256: str
    ingest_run_id: str | None
    created_at: datetime
    n_rows: int
    counts: dict[str, dict[str, int]]
    summary: dict[str, Any]
    index_sha256: str | None = None  # its kennel.datasets.index file, when committed with one

    @property
    def short(self) -> str:
        return self.id[:12]

    @property
    def ref(self) -> str:
        return f"{self.dataset}@{self.short}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "version": self.id,
            "ref": self.ref,
            "seq": self.seq,
            "parent": self.parent_id,
            "manifest_sha256": self.manifest_sha256,
            "ingest_run": self.ingest_run_id,
            "created_at": self.created_at.isoformat(),
            "rows": self.n_rows,
            "counts": self.counts,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class Item:
    """One distinct image content (by sha256) and its measured properties."""

    sha256: str
    size: int
    format: str
    mode: str
    width: int
    height: int
    brightness: float
    contrast: float
    sharpness: float
    phash: str


def _version(row: DatasetVersionRow) -> DatasetVersion:
    return DatasetVersion(
        dataset=row.dataset,
        id=row.id,
        seq=row.seq,
        parent_id=row.parent_id,
        manifest_sha256=row.manifest_sha256,
        ingest_run_id=row.ingest_run_id,
        created_at=row.created_at,
        n_rows=row.n_rows,
        counts=row.counts,
        summary=row.summary,
        index_sha256=row.index_sha256,
    )


class DatasetStore:
    """Datasets and their versions in the metadata database; one session per call."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def ensure_dataset(self, name: str) -> None:
        """Create dataset ``name`` unless it exists (racing first ingests: one creates it)."""
        with self.db.session() as s:
            serialize(s, f"dataset:{name}")
            if s.get(DatasetRow, name) is None:
                s.add(DatasetRow(name=name, created_at=datetime.now(UTC)))

    def names(self) -> list[str]:
        """Every dataset, by name."""
        with self.db.session() as s:
            return list(s.scalars(select(DatasetRow.name).order_by(DatasetRow.name)))

    def names_with_versions(self) -> list[str]:
        """The datasets that have at least one version."""
        with self.db.session() as s:
            return list(s.scalars(select(DatasetVersionRow.dataset).distinct()))

    def versions(self, dataset: str | None = None) -> list[DatasetVersion]:
        """Versions by dataset, then sequence number; of one dataset when given."""
        query = select(DatasetVersionRow).order_by(DatasetVersionRow.dataset, DatasetVersionRow.seq)
        if dataset is not None:
            query = query.where(DatasetVersionRow.dataset == dataset)
        with self.db.session() as s:
            return [_version(r) for r in s.scalars(query)]

    def version_counts(self) -> dict[str, int]:
        """How many versions each dataset has (datasets without any are left out)."""
        query = select(DatasetVersionRow.dataset, func.count()).group_by(DatasetVersionRow.dataset)
        with self.db.session() as s:
            return {name: int(n) for name, n in s.execute(query)}

    def page(self, dataset: str, *, limit: int, offset: int = 0) -> list[DatasetVersion]:
        """Versions of ``dataset``, newest first: ``limit`` of them after skipping ``offset``."""
        query = (
            select(DatasetVersionRow)
            .where(DatasetVersionRow.dataset == dataset)
            .order_by(DatasetVersionRow.seq.desc())
            .limit(limit)
            .offset(offset)
        )
        with self.db.session() as s:
            return [_version(r) for r in s.scalars(query)]

    def latest(self, dataset: str) -> DatasetVersion | None:
        with self.db.session() as s:
            row = s.scalars(
                select(DatasetVersionRow)
                .where(DatasetVersionRow.dataset == dataset)
                .order_by(DatasetVersionRow.seq.desc())
                .limit(1)
            ).first()
            return _version(row) if row else None

    def get(self, dataset: str, version_id: str) -> DatasetVersion | None:
        with self.db.session() as s:
            row = s.get(DatasetVersionRow, (dataset, version_id))
            return _version(row) if row else None

    def with_seq(self, dataset: str, seq: int) -> list[DatasetVersion]:
        """The version numbered ``seq`` (vN) of ``dataset``: none or one."""
        return self._where(dataset, DatasetVersionRow.seq == seq)

    def with_id_prefix(self, dataset: str, prefix: str) -> list[DatasetVersion]:
        """The versions of ``dataset`` whose id starts with ``prefix``."""
        return self._where(dataset, DatasetVersionRow.id.startswith(prefix, autoescape=True))

    def _where(self, dataset: str, condition: Any) -> list[DatasetVersion]:
        query = select(DatasetVersionRow).where(DatasetVersionRow.dataset == dataset, condition)
        with self.db.session() as s:
            return [_version(r) for r in s.scalars(query)]

    def add_version(
        self,
        dataset: str,
        version_id: str,
        *,
        parent_id: str | None,
        manifest_sha256: str,
        ingest_run_id: str | None,
        n_rows: int,
        counts: dict[str, dict[str, int]],
        summary: dict[str, Any],
        actor: str,
        index_sha256: str | None = None,
        disputes: Mapping[str, Offer] | None = None,
    ) -> DatasetVersion:
        """Append a version numbered after the newest one, audited in the same transaction.
        ``parent_id`` must be the newest version (None: there is none yet); when another was
        committed since, nothing is written and HeadMovedError names the newest. Commits to
        one dataset are serialised, so of two built on the same head one lands and the other
        is told to build again on it. ``disputes``, found by the ingest that made the version,
        are recorded with it (``kennel.db.disputes``): an ingest that builds on it reads them."""
        with self.db.session() as s:
            serialize(s, f"dataset:{dataset}")
            head = s.execute(
                select(DatasetVersionRow.id, DatasetVersionRow.seq)
                .where(DatasetVersionRow.dataset == dataset)
                .order_by(DatasetVersionRow.seq.desc())
                .limit(1)
            ).first()
            if (head.id if head else None) != parent_id:
                newest = head.id if head else None
                raise HeadMovedError(
                    f"dataset {dataset!r} moved on: its newest version is {newest or 'none'}, "
                    f"not {parent_id or 'none'}",
                    newest,
                )
            seq = (head.seq if head else 0) + 1
            row = DatasetVersionRow(
                dataset=dataset,
                id=version_id,
                seq=seq,
                parent_id=parent_id,
                manifest_sha256=manifest_sha256,
                ingest_run_id=ingest_run_id,
                created_at=datetime.now(UTC),
                n_rows=n_rows,
                counts=counts,
                summary=summary,
                index_sha256=index_sha256,
            )
            s.add(row)
            s.flush()
            record(
                s,
                actor=actor,
                action="dataset.version",
                subject=f"{dataset}@{version_id}",
                details={
                    "parent": parent_id,
                    "rows": n_rows,
                    "manifest": manifest_sha256,
                    "ingest_run": ingest_run_id,
                },
            )
            record_disputes(s, dataset, disputes or {}, ingest_run_id or "", actor=actor)
            return _version(row)
