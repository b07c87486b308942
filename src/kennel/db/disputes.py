"""Label disputes: one content offered under two or more labels in a dataset's ingest. No copy
says which label is right, so the content stays out of the dataset, whatever later ingests
offer, until someone settles it (the settlement is audited)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from kennel.db.audit import record
from kennel.db.engine import Database
from kennel.db.locking import serialize
from kennel.db.schema import IngestRecordRow, IngestRunRow, LabelDisputeRow


@dataclass(frozen=True)
class Dispute:
    dataset: str
    sha256: str
    labels: tuple[str, ...]  # every label the content was offered under
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
        run_id=row.run_id,
        seen_at=row.seen_at,
        settled_label=row.settled_label,
        settled_by=row.settled_by,
        settled_at=row.settled_at,
    )


class LabelDisputeStore:
    """The disputes of every dataset; one session per call."""

    db: Database

    def disputes(self, dataset: str) -> dict[str, Dispute]:
        """The dataset's disputes, settled or not, by content."""
        query = select(LabelDisputeRow).where(LabelDisputeRow.dataset == dataset)
        with self.db.session() as s:
            return {r.sha256: _dispute(r) for r in s.scalars(query)}

    def dispute(self, dataset: str, found: Mapping[str, set[str]], run_id: str) -> None:
        """Record each content of ``found`` as offered under its labels (added to the labels a
        dispute of it holds already; a settlement stays)."""
        if not found:
            return
        with self.db.session() as s:
            serialize(s, f"disputes:{dataset}")
            for sha, labels in sorted(found.items()):
                row = s.get(LabelDisputeRow, (dataset, sha))
                if row is None:
                    s.add(
                        LabelDisputeRow(
                            dataset=dataset,
                            sha256=sha,
                            labels=sorted(labels),
                            run_id=run_id,
                            seen_at=datetime.now(UTC),
                        )
                    )
                elif not labels <= set(row.labels):
                    row.labels = sorted(labels | set(row.labels))

    def content_of(self, dataset: str, uri: str) -> str | None:
        """The sha256 a file of one of the dataset's ingests had, the newest run's first."""
        r, run = IngestRecordRow, IngestRunRow
        query = (
            select(r.sha256)
            .join(run, run.id == r.run_id)
            .where(run.dataset == dataset, r.uri == uri, r.sha256.is_not(None))
            .order_by(run.started_at.desc())
            .limit(1)
        )
        with self.db.session() as s:
            return s.scalar(query)

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
