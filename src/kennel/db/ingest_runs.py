"""An ingest run's life: started (audited), found again to resume by the fingerprint of what it
lists, claimed by the one process doing it, closed as done or failed, or abandoned once a later
run of its source is done and it can no longer be resumed. ``kennel.db.ingest`` adds the
per-file records and items a run checkpoints."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select

from kennel.db.audit import record
from kennel.db.engine import Database
from kennel.db.locking import lease, serialize
from kennel.db.schema import DatasetRow, DatasetVersionRow, IngestRecordRow, IngestRunRow

RUNNING = "running"
ABANDONED = "abandoned"  # unfinished, superseded by a later run of its source: never resumed


@dataclass(frozen=True)
class IngestRun:
    id: str
    dataset: str
    source: str
    fingerprint: str
    parent_version: str | None
    status: str  # running | done | failed | abandoned
    started_at: datetime
    finished_at: datetime | None
    version_id: str | None
    summary: dict[str, Any]


def _run(row: IngestRunRow) -> IngestRun:
    return IngestRun(
        id=row.id,
        dataset=row.dataset,
        source=row.source,
        fingerprint=row.fingerprint,
        parent_version=row.parent_version,
        status=row.status,
        started_at=row.started_at,
        finished_at=row.finished_at,
        version_id=row.version_id,
        summary=row.summary,
    )


class IngestRunStore:
    """Ingest runs; one session per call."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def claim(self, fingerprint: str) -> AbstractContextManager[bool]:
        """Whether this process may do the run of ``fingerprint`` (True), held while the body
        runs; False while a live process does it (one that died holds nothing: resume)."""
        return lease(self.db.engine, f"ingest:{fingerprint}")

    def running(self, fingerprint: str) -> IngestRun | None:
        """The newest unfinished run with this fingerprint (the one to resume), if any."""
        with self.db.session() as s:
            row = s.scalars(
                select(IngestRunRow)
                .where(IngestRunRow.fingerprint == fingerprint, IngestRunRow.status == RUNNING)
                .order_by(IngestRunRow.started_at.desc())
            ).first()
            return _run(row) if row else None

    def supersede(self, dataset: str, source: str, by: str) -> list[str]:
        """Once run ``by`` of ``source`` into ``dataset`` is done, an interrupted earlier run
        of that source which listed other files (the folder, or kennel.yaml's rules, changed
        since) would stay 'running' with its records forever: it ends as ``abandoned``, its
        per-file records deleted (the content it stored stays, shared by address), audited as
        ``ingest.abandoned``. One whose process is alive (it holds its claim) is left to
        finish. Returns the ids abandoned."""
        with self.db.session() as s:
            stale = s.execute(
                select(IngestRunRow.id, IngestRunRow.fingerprint).where(
                    IngestRunRow.dataset == dataset,
                    IngestRunRow.source == source,
                    IngestRunRow.status == RUNNING,
                    IngestRunRow.id != by,
                )
            ).all()
        abandoned = []
        for run_id, fingerprint in stale:
            with self.claim(fingerprint) as free, self.db.session() as s:
                run = s.get(IngestRunRow, run_id)
                if not free or run is None or run.status != RUNNING:
                    continue
                s.execute(delete(IngestRecordRow).where(IngestRecordRow.run_id == run_id))
                run.status, run.finished_at = ABANDONED, datetime.now(UTC)
                run.summary = {**run.summary, "superseded_by": by}
                record(s, actor="kennel", action=f"ingest.{ABANDONED}",
                       subject=f"{dataset}:{run_id}", details={"superseded_by": by})  # fmt: skip
                abandoned.append(run_id)
        return abandoned

    def get(self, run_id: str) -> IngestRun | None:
        with self.db.session() as s:
            row = s.get(IngestRunRow, run_id)
            return _run(row) if row else None

    def start(
        self,
        run_id: str,
        *,
        dataset: str,
        source: str,
        fingerprint: str,
        parent_version: str | None,
        files: int,
        actor: str,
    ) -> IngestRun:
        """A new running run, audited as ``ingest.start`` in the same transaction."""
        with self.db.session() as s:
            row = IngestRunRow(
                id=run_id,
                dataset=dataset,
                source=source,
                fingerprint=fingerprint,
                parent_version=parent_version,
                status=RUNNING,
                started_at=datetime.now(UTC),
                summary={"files": files},
            )
            s.add(row)
            s.flush()
            record(
                s,
                actor=actor,
                action="ingest.start",
                subject=f"{dataset}:{run_id}",
                details={"source": source, "files": files},
            )
            return _run(row)

    def forget_first_failure(self, run_id: str) -> bool:
        """A failed run that was its dataset's first (no version, no other run) is removed with
        its records and the dataset row it created, so a failed first ingest leaves no empty
        dataset behind; the audit trail keeps its ``ingest.start``/``ingest.failed``."""
        with self.db.session() as s:
            run = s.get(IngestRunRow, run_id)
            if run is None:
                return False
            dataset = run.dataset
            serialize(s, f"dataset:{dataset}")  # against a racing ingest into the same dataset
            has_version = s.scalar(select(func.count()).where(DatasetVersionRow.dataset == dataset))
            other_runs = s.scalar(
                select(func.count()).where(
                    IngestRunRow.dataset == dataset, IngestRunRow.id != run_id
                )
            )
            if has_version or other_runs:
                return False
            s.execute(delete(IngestRecordRow).where(IngestRecordRow.run_id == run_id))
            s.execute(delete(IngestRunRow).where(IngestRunRow.id == run_id))
            s.execute(delete(DatasetRow).where(DatasetRow.name == dataset))
            return True

    def close(
        self, run_id: str, status: str, version_id: str | None, summary: dict[str, Any]
    ) -> IngestRun:
        """Finish a run (``done`` or ``failed``) with ``summary`` merged into its own, audited
        as ``ingest.<status>`` in the same transaction."""
        with self.db.session() as s:
            run = s.get(IngestRunRow, run_id)
            assert run is not None
            run.status = status
            run.finished_at = datetime.now(UTC)
            run.version_id = version_id
            run.summary = {**run.summary, **summary}
            record(
                s,
                actor="kennel",
                action=f"ingest.{status}",
                subject=f"{run.dataset}:{run_id}",
                details={"version": version_id, "quarantined": summary.get("quarantined", {})},
            )
            return _run(run)
