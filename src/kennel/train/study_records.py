"""What a shared study is and how it stands: its spec (the dataset version and settings its
trials start from), each trial as the study holds it, and the whole study's status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from kennel.config import TrainConfig
from kennel.errors import ConfigError

NAME_MAX = 64  # a run row keeps its study's name in 64 characters
TRIALS_MAX = 10_000  # a study's queue is written one trial at a time at creation


def check_study_name(name: str) -> str:
    """A study name fits where runs keep it and prints on one line: else a ConfigError."""
    if not name or len(name) > NAME_MAX or not name.isprintable():
        shown = name if len(name) <= NAME_MAX else f"{name[:24]}...{name[-8:]}"
        raise ConfigError(
            f"study name {shown!r} ({len(name)} characters): give 1 to {NAME_MAX} printable "
            "characters"
        )
    return name


def check_trials(trials: int) -> int:
    """A number of trials a study may queue: else a ConfigError."""
    if not 1 <= trials <= TRIALS_MAX:
        raise ConfigError(f"--trials {trials}: a study runs 1 to {TRIALS_MAX:,} trials")
    return trials


STATUS = {
    TrialState.WAITING: "waiting",
    TrialState.RUNNING: "running",
    TrialState.COMPLETE: "completed",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
}


@dataclass(frozen=True)
class StudySpec:
    """What a shared study searches: trials start from ``config`` on one dataset version."""

    name: str
    dataset: str
    dataset_version: str
    config: TrainConfig
    trials: int  # slots queued at creation (at most the grid's size)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dataset": self.dataset,
            "dataset_version": self.dataset_version,
            "config": self.config.model_dump(mode="json"),
            "trials": self.trials,
        }


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the study holds it."""

    number: int
    status: str  # waiting, running, completed, pruned or failed
    params: dict[str, Any]
    value: float | None
    run_id: str | None  # its tracked kennel run
    worker: str | None  # host:pid of the worker that ran it
    retry_of: int | None  # the failed trial it repeats
    started_at: datetime | None
    finished_at: datetime | None
    seconds: float | None

    @classmethod
    def of(cls, t: FrozenTrial) -> TrialRecord:
        waiting = t.state == TrialState.WAITING  # a retry holds its original's attributes
        seconds = None
        if t.datetime_start and t.datetime_complete:
            seconds = round((t.datetime_complete - t.datetime_start).total_seconds(), 2)
        return cls(
            number=t.number,
            status=STATUS[t.state],
            params=dict(t.params),
            value=t.value if t.state == TrialState.COMPLETE else None,
            run_id=None if waiting else t.user_attrs.get("run_id"),
            worker=None if waiting else t.user_attrs.get("worker"),
            retry_of=t.system_attrs.get("failed_trial"),
            started_at=t.datetime_start,
            finished_at=t.datetime_complete,
            seconds=seconds,
        )


@dataclass(frozen=True)
class StudyStatus:
    spec: StudySpec
    trials: tuple[TrialRecord, ...]

    def count(self, *statuses: str) -> int:
        return sum(t.status in statuses for t in self.trials)

    @property
    def finished(self) -> bool:
        """Nothing queued or running is left."""
        return self.count("waiting", "running") == 0

    @property
    def best(self) -> TrialRecord | None:
        done = [t for t in self.trials if t.value is not None]
        return max(done, key=lambda t: (t.value, -t.number)) if done else None

    def as_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            **self.spec.as_dict(),
            "finished": self.finished,
            "counts": {s: self.count(s) for s in STATUS.values()},
            "best": best.__dict__ if best else None,
            "trials": [t.__dict__ for t in self.trials],
        }


def searched(config: TrainConfig) -> dict[str, Any]:
    """What decides a study's trials: the configuration less the search's operational knobs."""
    out = config.model_dump(mode="json", exclude={"threads", "device"})  # each machine its own
    for knob in ("trials", "budget_minutes", "storage", "heartbeat_s", "grace_s", "retries"):
        out["search"].pop(knob)
    return out
