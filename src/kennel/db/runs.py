"""The runs aggregate: tracked training runs (tuning trials and final trainings) and their
per-epoch metrics (entities in, entities out)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select

from kennel.db import Database, aware
from kennel.db.audit import record
from kennel.db.locking import held, lease
from kennel.db.schema import RunMetricRow, RunRow


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


@dataclass(frozen=True)
class RunMetric:
    """One value of one metric of a run at one epoch."""

    run_id: str
    epoch: int
    name: str
    value: float


@dataclass(frozen=True)
class Study:
    """One hyperparameter search, seen through its runs: the trials it tried and the final
    run trained with the best of them (runs share the study id)."""

    id: str
    dataset: str
    dataset_version: str
    started_at: datetime
    finished_at: datetime | None  # of its newest finished run; None: none finished
    trials: int
    statuses: dict[str, int]  # trial status (running | completed | pruned | failed) -> trials
    final_run: str | None


@dataclass(frozen=True)
class TrialValue:
    run_id: str
    trial: int | None
    status: str
    best: float | None


def _run(r: RunRow) -> Run:
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


class RunStore:
    """Runs and their metrics in the metadata database; one session per call."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def start(
        self,
        *,
        kind: str,
        dataset: str,
        dataset_version: str,
        params: dict[str, Any],
        study: str | None,
        trial_number: int | None,
        git_commit: str | None,
        init_from: str | None,
        actor: str,
        run_id: str | None = None,
    ) -> Run:
        """A new running run (with ``run_id``, or a fresh id), audited as ``run.start.<kind>``
        in the same transaction."""
        run_id = run_id or uuid.uuid4().hex
        with self.db.session() as s:
            row = RunRow(
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
            s.add(row)
            s.flush()
            record(
                s,
                actor=actor,
                action=f"run.start.{kind}",
                subject=run_id,
                details={"dataset_version": dataset_version, "study": study, "trial": trial_number},
            )
            return _run(row)

    def claim(self, run_id: str) -> AbstractContextManager[bool]:
        """Held by the process that runs ``run_id``, for as long as it runs it (taken before
        the run is written): a ``running`` run that no live process holds (``kill -9``, a
        lost machine) reads as ``interrupted``, which is what ``--resume`` continues."""
        return lease(self.db.engine, f"run:{run_id}")

    def _settled(self, runs: Sequence[Run], status: str | None = None) -> list[Run]:
        """``runs`` with each running one no live process holds read as interrupted; with
        ``status``, only the runs that have it then."""
        out = [replace(r, status=self._status(r.id, r.status)) for r in runs]
        return [r for r in out if status is None or r.status == status]

    def log_metrics(self, metrics: list[RunMetric]) -> None:
        """Store each metric, replacing a value logged before for the same run, epoch and name."""
        with self.db.session() as s:
            for m in metrics:
                s.merge(RunMetricRow(run_id=m.run_id, epoch=m.epoch, name=m.name, value=m.value))

    def finish(self, run_id: str, status: str, metrics: dict[str, Any]) -> Run:
        """End a run with ``status``, its duration measured and ``metrics`` merged into its own;
        audited as ``run.<status>`` in the same transaction."""
        with self.db.session() as s:
            row = s.get(RunRow, run_id)
            assert row is not None
            row.status = status
            row.finished_at = datetime.now(UTC)
            row.duration_s = (row.finished_at - aware(row.started_at)).total_seconds()
            row.metrics = {**row.metrics, **metrics}
            record(
                s,
                actor="kennel",
                action=f"run.{status}",
                subject=run_id,
                details={"kind": row.kind},
            )
            return _run(row)

    def ids_starting(self, prefix: str, limit: int = 5) -> list[str]:
        """Up to ``limit`` run ids that begin with ``prefix``, oldest first."""
        query = select(RunRow.id).where(RunRow.id.startswith(prefix, autoescape=True))
        with self.db.session() as s:
            return list(s.scalars(query.order_by(RunRow.started_at).limit(limit)))

    def reopen(self, run_id: str) -> None:
        """An interrupted run running again (``--resume``); audited as ``run.resumed``."""
        with self.db.session() as s:
            row = s.get(RunRow, run_id)
            assert row is not None
            row.status, row.finished_at, row.duration_s = "running", None, None
            record(s, actor="kennel", action="run.resumed", subject=run_id,
                   details={"kind": row.kind})  # fmt: skip

    def get(self, run_id: str) -> Run | None:
        with self.db.session() as s:
            row = s.get(RunRow, run_id)
            run = _run(row) if row else None
        return self._settled([run])[0] if run else None

    def metrics(self, run_id: str) -> list[RunMetric]:
        """Every metric value of the run, by epoch then name."""
        query = (
            select(RunMetricRow)
            .where(RunMetricRow.run_id == run_id)
            .order_by(RunMetricRow.epoch, RunMetricRow.name)
        )
        with self.db.session() as s:
            return [RunMetric(r.run_id, r.epoch, r.name, r.value) for r in s.scalars(query)]

    def page(
        self,
        *,
        limit: int,
        offset: int = 0,
        study: str | None = None,
        kind: str | None = None,
        status: str | None = None,
    ) -> list[Run]:
        """Runs newest first, narrowed by the filters given: ``limit`` after ``offset``."""
        query = _narrow(select(RunRow), study, kind, status)
        query = query.order_by(RunRow.started_at.desc(), RunRow.id)
        if status not in _UNSETTLED:  # the status stored is the status read
            with self.db.session() as s:
                return [_run(r) for r in s.scalars(query.limit(limit).offset(offset))]
        with self.db.session() as s:  # running or interrupted: a few rows, each looked at
            runs = [_run(r) for r in s.scalars(query)]
        return self._settled(runs, status)[offset : offset + limit]

    def count(
        self, *, study: str | None = None, kind: str | None = None, status: str | None = None
    ) -> int:
        """How many runs the same filters as ``page`` select."""
        if status in _UNSETTLED:
            return len(self.page(limit=2**62, study=study, kind=kind, status=status))
        query = _narrow(select(func.count()).select_from(RunRow), study, kind, status)
        with self.db.session() as s:
            return int(s.scalar(query) or 0)

    def studies(self, *, limit: int, offset: int = 0) -> list[Study]:
        """Studies newest first (by their first run): ``limit`` after skipping ``offset``."""
        first = func.min(RunRow.started_at)
        ids_query = (
            select(RunRow.study, first)
            .where(RunRow.study.is_not(None))
            .group_by(RunRow.study)
            .order_by(first.desc(), RunRow.study)
            .limit(limit)
            .offset(offset)
        )
        with self.db.session() as s:
            ids = [study for study, _ in s.execute(ids_query) if study is not None]
            groups: Sequence[Any] = s.execute(
                select(
                    RunRow.study,
                    RunRow.kind,
                    RunRow.status,
                    func.count(),
                    func.min(RunRow.started_at),
                    func.max(RunRow.finished_at),
                    func.min(RunRow.dataset),
                    func.min(RunRow.dataset_version),
                )
                .where(RunRow.study.in_(ids))
                .group_by(RunRow.study, RunRow.kind, RunRow.status)
            ).all()
            finals = dict(
                s.execute(
                    select(RunRow.study, func.max(RunRow.id))
                    .where(RunRow.study.in_(ids), RunRow.kind == "final")
                    .group_by(RunRow.study)
                ).all()
            )
            running = s.execute(
                select(RunRow.study, RunRow.id).where(
                    RunRow.study.in_(ids), RunRow.kind == "trial", RunRow.status == "running"
                )
            ).all()
        began: dict[str, datetime] = {}
        ended: dict[str, datetime] = {}
        data: dict[str, tuple[str, str]] = {}
        counts: dict[str, dict[str, int]] = {study: {} for study in ids}
        for study, kind, status, n, first, last, dataset, version in groups:
            key = str(study)
            began[key] = min(first, began.get(key, first))
            if last is not None:
                ended[key] = max(last, ended.get(key, last))
            data.setdefault(key, (dataset, version))
            if kind == "trial":
                counts[key][status] = counts[key].get(status, 0) + int(n)
        for study, run_id in running:  # a trial no live process holds: interrupted
            if self._status(run_id, "running") == "interrupted":
                tally = counts[str(study)]
                tally["running"] -= 1
                tally["interrupted"] = tally.get("interrupted", 0) + 1
                if not tally["running"]:
                    del tally["running"]
        return [
            Study(
                id=study,
                dataset=data[study][0],
                dataset_version=data[study][1],
                started_at=began[study],
                finished_at=ended.get(study),
                trials=sum(counts[study].values()),
                statuses=dict(sorted(counts[study].items())),
                final_run=finals.get(study),
            )
            for study in ids
            if study in data
        ]

    def trial_values(self, study: str, name: str) -> list[TrialValue]:
        """Each trial of the study by number: its status and the highest per-epoch value of
        metric ``name`` (a pruned trial's best before it was stopped; None: none logged).
        One query, no run loaded whole: a study of 1,000 trials is one chart."""
        best = func.max(RunMetricRow.value)
        query = (
            select(RunRow.id, RunRow.trial_number, RunRow.status, best)
            .outerjoin(
                RunMetricRow, (RunMetricRow.run_id == RunRow.id) & (RunMetricRow.name == name)
            )
            .where(RunRow.study == study, RunRow.kind == "trial")
            .group_by(RunRow.id, RunRow.trial_number, RunRow.status)
            .order_by(RunRow.trial_number, RunRow.id)
        )
        with self.db.session() as s:
            rows = list(s.execute(query))
        return [
            TrialValue(run_id, trial, self._status(run_id, status), _float(value))
            for run_id, trial, status, value in rows
        ]

    def _status(self, run_id: str, stored: str) -> str:
        if stored == "running" and not held(self.db.engine, f"run:{run_id}"):
            return "interrupted"
        return stored

    def count_studies(self) -> int:
        query = select(func.count(func.distinct(RunRow.study))).where(RunRow.study.is_not(None))
        with self.db.session() as s:
            return int(s.scalar(query) or 0)

    def runs(
        self,
        *,
        study: str | None = None,
        dataset_version: str | None = None,
        kind: str | None = None,
        status: str | None = None,
    ) -> list[Run]:
        """Runs by start time, narrowed by whichever filters are given."""
        query = select(RunRow).order_by(RunRow.started_at)
        if study is not None:
            query = query.where(RunRow.study == study)
        if dataset_version is not None:
            query = query.where(RunRow.dataset_version == dataset_version)
        if kind is not None:
            query = query.where(RunRow.kind == kind)
        if status is not None:
            query = query.where(RunRow.status.in_(_stored(status)))
        with self.db.session() as s:
            runs = [_run(r) for r in s.scalars(query)]
        return self._settled(runs, status)


def _narrow(
    query: Select[Any], study: str | None, kind: str | None, status: str | None
) -> Select[Any]:
    if study is not None:
        query = query.where(RunRow.study == study)
    if kind is not None:
        query = query.where(RunRow.kind == kind)
    if status is not None:
        query = query.where(RunRow.status.in_(_stored(status)))
    return query


# Statuses a run may read as though another is stored: a running run no process holds is
# interrupted, so a look for either reads both.
_UNSETTLED = ("running", "interrupted")


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _stored(status: str) -> tuple[str, ...]:
    return _UNSETTLED if status in _UNSETTLED else (status,)
