"""Shared studies: one Optuna study that workers on any number of machines work on together
through the metadata PostgreSQL database.

A study is created with a fixed number of queued trials (its slots). A worker only ever pops a
queued trial, never adds one of its own, so a study runs exactly that many trials however many
workers join. A running trial beats every ``heartbeat_s``; a worker that dies leaves a trial
that stops beating, and the next worker to look (every worker looks before each trial and while
it waits) fails it, fails its tracked run, and queues a copy with the same parameters, which
any worker then runs: none is lost, none runs twice at once. A trial that raises is failed and
queued again the same way; ``retries`` bounds both.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from kennel.config import SearchConfig, TrainConfig
from kennel.db import studies as store
from kennel.errors import AlreadyExistsError, MetadataError, NotFoundError, TrainingError
from kennel.train.study_records import (
    StudySpec,
    StudyStatus,
    TrialRecord,
    check_study_name,
    searched,
)
from kennel.train.tracking import RunTracker
from kennel.train.tune import TrialSummary, pruner, slots

SPEC = "kennel"  # the study's user attribute holding its StudySpec; set once all slots exist


class _NoQueuedTrial(Exception):
    """A worker asked for a trial and none was queued."""


class _QueueStorage(optuna.storages.RDBStorage):
    """Creates trials only from a template (a queued slot, a retry): ``Study.ask`` outside the
    queue raises instead of adding a trial the study never asked for. (Optuna's cache calls
    ``_create_new_trial`` for every trial it creates.)"""

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> Any:
        if template_trial is None:
            raise _NoQueuedTrial
        return super()._create_new_trial(study_id, template_trial)


class _TakenOverNote(logging.Filter):
    """Optuna logs a trial whose objective raised with the traceback; when what it raised is
    Optuna refusing to record a step of a trial another worker has already failed (this one
    was silent past the grace period), that is one line saying so."""

    def __init__(self, current: list[int]) -> None:
        super().__init__()
        self.current = current  # the trial this worker runs now, if any

    def filter(self, record: logging.LogRecord) -> bool:
        raised = record.exc_info[1] if record.exc_info else None
        if isinstance(raised, optuna.exceptions.UpdateFinishedTrialError):
            number = self.current[0] if self.current else "?"
            record.msg = (
                f"trial {number} was already finished by another worker (this one was silent "
                "past the grace period): its result here is dropped"
            )
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


@contextmanager
def _taken_over_noted(current: list[int]) -> Iterator[None]:
    note = _TakenOverNote(current)
    optimize_log = logging.getLogger("optuna.study._optimize")  # where failed trials are logged
    optimize_log.addFilter(note)
    try:
        yield
    finally:
        optimize_log.removeFilter(note)


def worker_sampler(search: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    """A grid is shuffled alike on every worker (a slot's number picks its point); random and
    TPE draw on each worker's own entropy, TPE lying about running trials so that concurrent
    workers do not pick the same point."""
    if search.method == "grid":
        grid = {k: list(v.values or []) for k, v in search.space.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if search.method == "random":
        return optuna.samplers.RandomSampler()
    return optuna.samplers.TPESampler(constant_liar=True)


class SharedStudies:
    """A project's shared studies; connects on first use."""

    def __init__(self, metadata_url: str, search: SearchConfig) -> None:
        self.metadata_url = metadata_url
        self.search = search  # heartbeat, grace and retries of this machine's kennel.yaml
        self._storage: _QueueStorage | None = None
        self._tracker: RunTracker | None = None  # while this process works on a study

    @property
    def url(self) -> str:
        return store.storage_url(self.metadata_url, self.search.storage)

    def probe(self) -> bool:
        """Whether a study was ever started here. ConfigError for a store that cannot be
        shared (SQLite), MetadataError naming it (password hidden) when it cannot be reached."""
        return store.has_studies(self.url)

    def _open(self, *, create: bool) -> _QueueStorage:
        if self._storage is not None:
            return self._storage
        url = self.url
        optuna.logging.set_verbosity(logging.WARNING)
        if create:
            with store.creating(url):
                self._storage = self._connect(url, create=True)
        elif not store.has_studies(url):
            raise NotFoundError(
                f"no study was ever started at {store.shown(url)}: run kennel tune start"
            )
        else:
            self._storage = self._connect(url, create=False)
        return self._storage

    def _connect(self, url: str, *, create: bool) -> _QueueStorage:
        with warnings.catch_warnings():  # heartbeats and retries are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _QueueStorage(
                url,
                engine_kwargs={"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}},
                heartbeat_interval=self.search.heartbeat_s,
                grace_period=self.search.grace_s,
                heartbeat_stale_trial_callback=self._lost,
                skip_table_creation=not create,
            )

    def _retry(self, study: optuna.Study, trial: FrozenTrial) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            again = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=self.search.retries)
        again(study, trial)

    def _lost(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """A trial whose worker stopped beating: its run failed, the trial queued again."""
        if self._tracker is not None:
            self._fail_runs(self._tracker, study.study_name, [trial.number])
        self._retry(study, trial)

    def _load(self, name: str, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
        check_study_name(name)
        storage = self._open(create=False)
        try:
            return optuna.load_study(
                study_name=name, storage=storage, sampler=sampler, pruner=pruner()
            )
        except KeyError as exc:
            raise NotFoundError(
                f"study {name!r} not found at {store.shown(self.url)}: start it with "
                "kennel tune start"
            ) from exc

    def spec(self, name: str) -> StudySpec:
        return self._spec(self._load(name), name)

    def _spec(self, study: optuna.Study, name: str) -> StudySpec:
        attrs = study.user_attrs.get(SPEC)
        if attrs is None:
            raise NotFoundError(
                f"study {name!r} was not fully created: run kennel tune start again"
            )
        return StudySpec(
            name=name,
            dataset=attrs["dataset"],
            dataset_version=attrs["dataset_version"],
            config=TrainConfig.model_validate(attrs["config"]),
            trials=attrs["trials"],
        )

    def create(self, spec: StudySpec) -> StudyStatus:
        """The study with ``spec.trials`` trials queued; creating it again tops its queue up to
        that many and changes nothing else. AlreadyExistsError when the name is taken by a
        study of another dataset version or configuration."""
        wanted = slots(spec.config.search, spec.trials)
        storage = self._open(create=True)
        study = optuna.create_study(
            study_name=spec.name, storage=storage, direction="maximize", load_if_exists=True
        )
        held = study.user_attrs.get(SPEC)
        if held is not None:
            same = StudySpec(**{**held, "config": TrainConfig.model_validate(held["config"])})
            if (same.dataset_version, searched(same.config)) != (
                spec.dataset_version,
                searched(spec.config),
            ):
                raise AlreadyExistsError(
                    f"study {spec.name!r} already searches {same.dataset}@"
                    f"{same.dataset_version[:12]} with other settings: choose another --study"
                )
            wanted = max(wanted, same.trials)
        elif store.drop_waiting(storage.engine, study._study_id, wanted):
            # an interrupted creation queued more than this one asks for: exactly ``wanted``
            study = optuna.load_study(study_name=spec.name, storage=storage)
        queued = study.get_trials(deepcopy=False)
        retries = sum("failed_trial" in t.system_attrs for t in queued)
        for _ in range(wanted - (len(queued) - retries)):
            study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING))
        # written last: a study without it was interrupted while being created
        study.set_user_attr(SPEC, {**spec.as_dict(), "trials": wanted})
        return self.status(spec.name)

    def status(self, name: str) -> StudyStatus:
        study = self._load(name)
        return StudyStatus(
            self._spec(study, name), tuple(TrialRecord.of(t) for t in study.get_trials())
        )

    def work(
        self,
        name: str,
        objective: Callable[[optuna.Trial], float],
        *,
        tracker: RunTracker,
        worker: str,
        limit: int | None = None,
        on_wait: Callable[[StudyStatus], None] | None = None,
    ) -> int:
        """Run queued trials of ``name`` until none is queued or running (or ``limit`` ran);
        while other workers' trials run, wait, and take over any that stops beating. Returns
        how many trials this worker ran."""
        spec = self.spec(name)
        study = self._load(name, worker_sampler(spec.config.search, spec.config.seed))
        current: list[int] = []  # the trial this worker runs now, if any

        def run(trial: optuna.Trial) -> float:
            current[:] = [trial.number]
            trial.set_user_attr("worker", worker)
            return objective(trial)

        def after(study: optuna.Study, trial: FrozenTrial) -> None:
            if trial.state == TrialState.FAIL:  # it raised: queue it again (bounded)
                self._retry(study, trial)

        self._tracker = tracker
        with _taken_over_noted(current):
            ran = 0
            while limit is None or ran < limit:
                current.clear()
                try:
                    study.optimize(run, n_trials=1, catch=(Exception,), callbacks=[after])
                except _NoQueuedTrial:
                    status = self.status(name)
                    if status.finished:
                        break
                    if on_wait:
                        on_wait(status)
                    time.sleep(self.search.heartbeat_s)
                    continue
                except KeyboardInterrupt:
                    self._requeue(study, current)
                    raise
                except Exception as exc:
                    if not self._taken_over(name, current):
                        if isinstance(exc, optuna.exceptions.StorageInternalError):
                            where = store.shown(self.url)
                            raise MetadataError(f"study store at {where}: {exc}") from exc
                        raise
                    # this worker was silent past the grace period (stopped, swapping, cut
                    # off) and another failed its trial and queued it again: this result is
                    # not the study's (one line in the log, see _TakenOverNote)
                    self._fail_runs(tracker, name, current)
                    continue
                ran += 1
            return ran

    def _taken_over(self, name: str, numbers: Sequence[int]) -> bool:
        """Whether the trial this worker ran was failed by another (Optuna then refuses to
        record its end: the error that brought us here)."""
        return any(t.number in numbers and t.status == "failed" for t in self.status(name).trials)

    @staticmethod
    def _fail_runs(tracker: RunTracker, name: str, numbers: Sequence[int]) -> None:
        for run in tracker.runs(study=name, kind="trial"):
            if run.trial_number in numbers and run.status != "failed":
                tracker.finish(run.id, "failed")

    def _requeue(self, study: optuna.Study, numbers: Sequence[int]) -> None:
        """An interrupted worker gives its trial back to the queue."""
        for trial in study.get_trials(deepcopy=True, states=(TrialState.FAIL,)):
            if trial.number in numbers:
                self._retry(study, trial)

    def result(self, name: str, dataset_version: str) -> tuple[dict[str, Any], list[TrialSummary]]:
        """A finished study's best parameters and its trials, for the build that trains them."""
        status = self.status(name)
        if status.spec.dataset_version != dataset_version:
            raise TrainingError(
                f"study {name!r} searched {status.spec.dataset}@"
                f"{status.spec.dataset_version[:12]}, not version {dataset_version[:12]}"
            )
        if not status.finished:
            left = status.count("waiting", "running")
            raise TrainingError(f"study {name!r} has {left} trial(s) left: run kennel tune worker")
        best = status.best
        if best is None:
            raise TrainingError(f"no trial of study {name!r} completed")
        summaries = [
            TrialSummary(
                trial=t.number,
                run_id=t.run_id or "",
                params=t.params,
                status=t.status,
                val_accuracy=t.value,
                seconds=t.seconds or 0.0,
            )
            for t in status.trials
        ]
        return best.params, summaries

    def close(self) -> None:
        if self._storage is not None:
            self._storage.engine.dispose()
            self._storage = None
