"""Label disputes: one content offered under two or more labels in a dataset's ingest. No copy
says which label is right, so the content stays out of the dataset, whatever later ingests
offer, until someone settles it. Each dispute found and each settlement is audited
(``dataset.dispute``, ``dataset.settle``), so ``audit verify`` can tell one deleted, added or
settled in the database directly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kennel.db.audit import record
from kennel.db.engine import Database
from kennel.db.locking import serialize
from kennel.db.schema import IngestRecordRow, IngestRunRow, LabelDisputeRow

FILES_KEPT = 20  # the files (uri -> label) a dispute names, at most


@dataclass(frozen=True)
class Offer:
    """One content as one ingest found it: the labels it was offered under, by which files."""

    labels: frozenset[str]
    files: Mapping[str, str] = field(default_factory=dict)  # uri -> label


@dataclass(frozen=True)
class Dispute:
    dataset: str
    sha256: str
    labels: tuple[str, ...]  # every label the content was offered under
    files: dict[str, str]  # some of the files that offered it: uri -> label
    run_id: str  # the ingest run that first saw it
    seen_at: datetime
    settled_label: str | None  # None: still disputed
    settled_by: str | None
    settled_at: datetime | None


def _dispute(row: LabelDisputeRow) -> Dispute:
    return Dispute(
        dataset=row.dataset,
        sha256=row.sha256,
        labels=tuple(row.labels),
        files=dict(row.files or {}),
        run_id=row.run_id,
        seen_at=row.seen_at,
        settled_label=row.settled_label,
        settled_by=row.settled_by,
        settled_at=row.settled_at,
    )


def record_disputes(
    s: Session, dataset: str, found: Mapping[str, Offer], run_id: str, *, actor: str
) -> None:
    """In the caller's transaction (an ingest's version commit, so that an ingest building on
    that version reads them): each content of ``found`` recorded as offered under its labels,
    added to those a dispute of it holds already (a settlement stays), audited where that
    changes what is recorded."""
    if not found:
        return
    serialize(s, f"disputes:{dataset}")
    for sha, offer in sorted(found.items()):
        row = s.get(LabelDisputeRow, (dataset, sha))
        files = dict(sorted(offer.files.items())[:FILES_KEPT])
        details: dict[str, object] = {"run": run_id}
        if row is None:
            row = LabelDisputeRow(
                dataset=dataset,
                sha256=sha,
                labels=sorted(offer.labels),
                files=files,
                run_id=run_id,
                seen_at=datetime.now(UTC),
            )
            s.add(row)
            details["seen_at"] = row.seen_at.isoformat()
        elif offer.labels <= set(row.labels):
            continue
        else:
            row.labels = sorted(offer.labels | set(row.labels))
            row.files = dict(sorted({**files, **(row.files or {})}.items())[:FILES_KEPT])
        # all that ``audit verify`` holds the row to: settling by a file's uri reads ``files``
        details.update(labels=list(row.labels), files=dict(row.files))
        record(s, actor=actor, action="dataset.dispute", subject=f"{dataset}:{sha}",
               details=details)  # fmt: skip


class LabelDisputeStore:
    """The disputes of every dataset; one session per call."""

    db: Database

    def disputes(self, dataset: str) -> dict[str, Dispute]:
        """The dataset's disputes, settled or not, by content."""
        query = select(LabelDisputeRow).where(LabelDisputeRow.dataset == dataset)
        with self.db.session() as s:
            return {r.sha256: _dispute(r) for r in s.scalars(query)}

    def dispute(self, dataset: str, found: Mapping[str, Offer], run_id: str, *, actor: str) -> None:
        """``record_disputes`` in a transaction of its own (an ingest that commits nothing)."""
        if found:
            with self.db.session() as s:
                record_disputes(s, dataset, found, run_id, actor=actor)

    def content_of(self, dataset: str, uri: str) -> str | None:
        """The sha256 a file of one of the dataset's ingests had (the newest run's first), or
        that a dispute names it with (a failed first ingest's records are gone)."""
        r, run = IngestRecordRow, IngestRunRow
        query = (
            select(r.sha256)
            .join(run, run.id == r.run_id)
            .where(run.dataset == dataset, r.uri == uri, r.sha256.is_not(None))
            .order_by(run.started_at.desc())
            .limit(1)
        )
        with self.db.session() as s:
            found = s.scalar(query)
            if found is not None:
                return found
            named = s.scalars(select(LabelDisputeRow).where(LabelDisputeRow.dataset == dataset))
            return next((d.sha256 for d in named if uri in (d.files or {})), None)

    def settle(self, dataset: str, sha256: str, label: str, *, actor: str) -> Dispute | None:
        """Settle the dispute of ``sha256`` in ``dataset`` as ``label`` (again, if it was
        settled otherwise), audited in the same transaction; None where there is none."""
        with self.db.session() as s:
            serialize(s, f"disputes:{dataset}")
            row = s.get(LabelDisputeRow, (dataset, sha256))
            if row is None:
                return None
            before = row.settled_label
            row.settled_label, row.settled_by = label, actor
            row.settled_at = datetime.now(UTC)
            s.flush()
            record(
                s,
                actor=actor,
                action="dataset.settle",
                subject=f"{dataset}:{sha256}",
                details={"label": label, "before": before, "offered": list(row.labels)},
            )
            return _dispute(row)
