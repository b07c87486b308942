"""Tracked runs in the metadata store: params, per-epoch metrics, status and duration."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from kennel.db import Database, aware
from kennel.db.audit import record
from kennel.db.schema import RunMetricRow, RunRow
from kennel.train.trainer import EpochStats


@dataclass(frozen=True)
class Run:
    id: str
    kind: str
    study: str | None
    trial_number: int | None
    dataset: str
    dataset_version: str
    params: dict[str, Any]
    status: str
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    metrics: dict[str, Any]
    git_commit: str | None
    init_from: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


def _entity(r: RunRow) -> Run:
    return Run(
        r.id,
        r.kind,
        r.study,
        r.trial_number,
        r.dataset,
        r.dataset_version,
        r.params,
        r.status,
        r.started_at,
        r.finished_at,
        r.duration_s,
        r.metrics,
        r.git_commit,
        r.init_from,
    )


class RunTracker:
    def __init__(self, db: Database) -> None:
        self.db = db

    def start(
        self,
        *,
        kind: str,
        dataset: str,
        dataset_version: str,
        params: dict[str, Any],
        study: str | None = None,
        trial_number: int | None = None,
        git_commit: str | None = None,
        init_from: str | None = None,
        actor: str = "kennel",
    ) -> str:
        run_id = uuid.uuid4().hex
        with self.db.session() as s:
            s.add(
                RunRow(
                    id=run_id,
                    kind=kind,
                    study=study,
                    trial_number=trial_number,
                    dataset=dataset,
                    dataset_version=dataset_version,
                    params=params,
                    status="running",
                    started_at=datetime.now(UTC),
                    metrics={},
                    git_commit=git_commit,
                    init_from=init_from,
                )
            )
            s.flush()
            record(
                s,
                actor=actor,
                action=f"run.start.{kind}",
                subject=run_id,
                details={"dataset_version": dataset_version, "study": study, "trial": trial_number},
            )
        return run_id

    def log_epoch(self, run_id: str, epoch: int, values: dict[str, float]) -> None:
        with self.db.session() as s:
            for name, value in values.items():
                s.merge(RunMetricRow(run_id=run_id, epoch=epoch, name=name, value=float(value)))

    def log_stats(self, run_id: str, stats: EpochStats) -> None:
        self.log_epoch(
            run_id,
            stats.epoch,
            {
                "train_loss": stats.train_loss,
                "val_loss": stats.val_loss,
                "val_accuracy": stats.val_accuracy,
                "images_per_s": stats.images_per_s,
                "lr": stats.lr,
            },
        )

    def finish(self, run_id: str, status: str, metrics: dict[str, Any] | None = None) -> None:
        with self.db.session() as s:
            row = s.get(RunRow, run_id)
            assert row is not None
            row.status = status
            row.finished_at = datetime.now(UTC)
            row.duration_s = (row.finished_at - aware(row.started_at)).total_seconds()
            row.metrics = {**row.metrics, **(metrics or {})}
            record(
                s,
                actor="kennel",
                action=f"run.{status}",
                subject=run_id,
                details={"kind": row.kind},
            )

    def get(self, run_id: str) -> Run:
        with self.db.session() as s:
            row = s.get(RunRow, run_id)
            if row is None:
                from kennel.errors import NotFoundError

                raise NotFoundError(f"run {run_id!r} not found")
            return _entity(row)

    def epochs(self, run_id: str) -> dict[int, dict[str, float]]:
        with self.db.session() as s:
            rows = s.scalars(select(RunMetricRow).where(RunMetricRow.run_id == run_id))
            out: dict[int, dict[str, float]] = {}
            for r in rows:
                out.setdefault(r.epoch, {})[r.name] = r.value
        return dict(sorted(out.items()))

    def runs(
        self,
        *,
        study: str | None = None,
        dataset_version: str | None = None,
        kind: str | None = None,
        status: str | None = None,
    ) -> list[Run]:
        query = select(RunRow).order_by(RunRow.started_at)
        if study is not None:
            query = query.where(RunRow.study == study)
        if dataset_version is not None:
            query = query.where(RunRow.dataset_version == dataset_version)
        if kind is not None:
            query = query.where(RunRow.kind == kind)
        if status is not None:
            query = query.where(RunRow.status == status)
        with self.db.session() as s:
            return [_entity(r) for r in s.scalars(query)]
