"""Monitoring runs as stored: one analysed window of one environment's prediction log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from kennel.db import Database, aware
from kennel.db.audit import record
from kennel.db.schema import MonitorRunRow


@dataclass(frozen=True)
class MonitorRun:
    """One analysed window. ``versions`` lists every model version that served a prediction
    in it, ascending (a window can span a release); ``version`` is the most common of them."""

    id: str
    at: datetime
    environment: str
    since: datetime
    until: datetime
    model: str | None
    version: int | None
    versions: list[int]
    metrics: dict[str, Any]
    report_sha256: str | None


def _run(row: MonitorRunRow) -> MonitorRun:
    return MonitorRun(
        id=row.id,
        at=aware(row.at),
        environment=row.environment,
        since=aware(row.since),
        until=aware(row.until),
        model=row.model,
        version=row.version,
        versions=list(row.versions),
        metrics=dict(row.metrics),
        report_sha256=row.report_sha256,
    )


class MonitorRunStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, run: MonitorRun, *, actor: str, n: int) -> MonitorRun:
        """Store ``run`` (of a window of ``n`` predictions) and audit it as ``monitor.run``."""
        with self.db.session() as s:
            s.add(
                MonitorRunRow(
                    id=run.id,
                    at=run.at,
                    environment=run.environment,
                    since=run.since,
                    until=run.until,
                    model=run.model,
                    version=run.version,
                    versions=list(run.versions),
                    metrics=run.metrics,
                    report_sha256=run.report_sha256,
                )
            )
            record(
                s,
                actor=actor,
                action="monitor.run",
                subject=f"{run.environment}:{run.id}",
                details={"n": n, "drifted": run.metrics.get("drift.drifted")},
            )
        return run

    def get(self, run_id: str) -> MonitorRun | None:
        with self.db.session() as s:
            row = s.get(MonitorRunRow, run_id)
            return _run(row) if row is not None else None

    def between(
        self,
        environment: str | None,
        *,
        since: datetime,
        until: datetime,
        limit: int = 500,
    ) -> list[MonitorRun]:
        """Runs whose window ended in [since, until], of ``environment`` (None: every one),
        oldest first; the newest ``limit`` of them when there are more."""
        query = (
            select(MonitorRunRow)
            .where(MonitorRunRow.until >= since, MonitorRunRow.until <= until)
            .order_by(MonitorRunRow.until.desc(), MonitorRunRow.id)
            .limit(limit)
        )
        if environment is not None:
            query = query.where(MonitorRunRow.environment == environment)
        with self.db.session() as s:
            return [_run(r) for r in reversed(s.scalars(query).all())]

    def latest(self, environment: str | None = None) -> MonitorRun | None:
        """The run whose window ended last (of ``environment``, or of any)."""
        query = select(MonitorRunRow).order_by(MonitorRunRow.until.desc()).limit(1)
        if environment is not None:
            query = query.where(MonitorRunRow.environment == environment)
        with self.db.session() as s:
            row = s.scalars(query).first()
            return _run(row) if row is not None else None

    def raised_at(self, environment: str, at: datetime) -> MonitorRun | None:
        """The newest run of ``environment`` recorded at or before ``at``: the one whose
        verdicts an alert first opened at ``at`` came from (its rules are evaluated right after
        the run is stored)."""
        query = (
            select(MonitorRunRow)
            .where(MonitorRunRow.environment == environment, MonitorRunRow.at <= at)
            .order_by(MonitorRunRow.at.desc())
            .limit(1)
        )
        with self.db.session() as s:
            row = s.scalars(query).first()
            return _run(row) if row is not None else None

    def environments(self) -> list[str]:
        """Every environment a run was recorded for, sorted."""
        with self.db.session() as s:
            return sorted(s.scalars(select(MonitorRunRow.environment).distinct()))

    def for_model(self, model: str, version: int) -> list[MonitorRun]:
        """Every run whose window held a prediction of ``model@version``, oldest first."""
        with self.db.session() as s:
            rows = s.scalars(
                select(MonitorRunRow).where(MonitorRunRow.model == model).order_by(MonitorRunRow.at)
            )
            runs = [_run(r) for r in rows]
        return [r for r in runs if version in r.versions]
