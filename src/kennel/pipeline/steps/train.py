"""The final training run: picked by a search (optional), tracked, resumable from its last
checkpoint after the process was killed (a linear probe, which has none, is fitted again)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kennel.config import TrainConfig
from kennel.datasets.versioning import DatasetVersion
from kennel.errors import ConfigError, IntegrityError, NotFoundError, StateError
from kennel.fsutil import is_locked, try_lock
from kennel.package import bundle
from kennel.pipeline.options import BuildOptions
from kennel.pipeline.steps.prepare import BuildPlan
from kennel.progress import Event, Progress
from kennel.train import probe
from kennel.train.checkpoint import discard
from kennel.train.data import ImageSet
from kennel.train.parallel import Parallel, choose_device
from kennel.train.results import EpochStats, FitResult
from kennel.train.studies import SharedStudies
from kennel.train.tracking import Run, RunTracker
from kennel.train.trainer import CHECKPOINT, Trainer
from kennel.train.tune import TrialSummary, search

OWNER = "owner.lock"  # in a run's folder: locked by the process building the run


@dataclass(frozen=True)
class TrainingRun:
    """A tracked final run, about to train."""

    id: str
    config: TrainConfig  # the plan's, with the search's best parameters
    study: str | None  # the search that chose them
    trials: tuple[TrialSummary, ...]  # that search's trials (none when resumed)
    resumed: bool  # continues from the run's last checkpoint

    def shared(self) -> dict[str, object]:
        """What the other ranks of a data-parallel run need to know of it (JSON)."""
        config = self.config.model_dump(mode="json")
        return {"id": self.id, "config": config, "study": self.study, "resumed": self.resumed}

    @classmethod
    def joined(cls, shared: dict[str, Any]) -> TrainingRun:
        config = TrainConfig.model_validate(shared["config"])
        return cls(shared["id"], config, shared["study"], (), resumed=shared["resumed"])


@dataclass(frozen=True)
class TrainedModel:
    run: TrainingRun
    fit: FitResult  # the best epoch's model, and the history that chose it
    data: ImageSet  # the images at the run's input size


def resumable_run(
    tracker: RunTracker,
    runs_root: Path,
    version: DatasetVersion,
    like: Callable[[Run], bool] | None = None,
    busy: list[str] | None = None,
) -> Run | None:
    """The newest final run on ``version`` that was interrupted (or left running by a killed
    process) and can go on: one with a checkpoint on disk, or a linear probe, which writes none
    (it is fitted again, in seconds). With ``like``, only a run it accepts. The ids of runs
    passed over because a live process trains them go to ``busy``."""
    left = [
        run
        for status in ("running", "interrupted")
        for run in tracker.runs(dataset_version=version.id, kind="final", status=status)
    ]
    for run in sorted(left, key=lambda r: r.started_at, reverse=True):
        if like is not None and not like(run):
            continue
        if is_locked(runs_root / run.id / OWNER):
            if busy is not None:
                busy.append(run.id)
            continue  # "running" and still is: another process trains it now
        if probe.fitted(run.params) or (runs_root / run.id / CHECKPOINT).is_file():
            return run
    return None


def still_resumable(tracker: RunTracker, run: Run) -> Run:
    """``run`` as the tracker holds it now, once this process owns it: another process may
    have resumed and finished it between the choice and the claim."""
    now = tracker.get(run.id)
    if now.status not in ("running", "interrupted"):
        raise StateError(f"run {run.id} was resumed by another process and is {now.status} now")
    return now


@contextmanager
def owned(runs_root: Path, run_id: str) -> Iterator[None]:
    """This process's claim on the run for as long as it builds it (a lock that dies with
    the process): a run another process trains now is neither resumed nor trained twice, so
    one run registers at most one model."""
    fd = None
    for _try in range(20):  # another process's look (``is_locked``) holds it for an instant
        fd = try_lock(runs_root / run_id / OWNER)
        if fd is not None:
            break
        time.sleep(0.01)
    if fd is None:
        raise StateError(
            f"run {run_id} is being trained by another process now; wait for it to finish, "
            "or stop it and resume"
        )
    try:
        yield
    finally:
        os.close(fd)


def run_to_resume(
    options: BuildOptions,
    config: TrainConfig,
    version: DatasetVersion,
    warm: str | None,
    *,
    tracker: RunTracker,
    runs_root: Path,
) -> Run | None:
    """The run this build continues (``options.resume``), if any. "newest" (``kennel train
    --resume``): the newest resumable run, whatever it trained; none is an error. "same"
    (``kennel pipeline run``): only a run that trains what this build would (``same_build``),
    else None and the build starts afresh."""
    if options.resume == "off":
        return None
    like = same_build(config, options, warm) if options.resume == "same" else None
    busy: list[str] = []
    run = resumable_run(tracker, runs_root, version, like, busy)
    if run is None and options.resume == "newest" and busy:
        raise StateError(
            f"nothing to resume on {version.ref}: run {busy[0]} is being trained by another "
            "process now"
        )
    if run is None and options.resume == "newest":
        raise NotFoundError(
            f"nothing to resume on {version.ref}: no interrupted final run with a checkpoint "
            "(or a linear probe); train without --resume to start one"
        )
    return run


def same_build(
    config: TrainConfig, options: BuildOptions, warm: str | None
) -> Callable[[Run], bool]:
    """Whether a run trains what a build of ``config`` with ``options`` would train: the same
    warm start and recorded params (``bundle.params``). When the build would pick some of them
    first (a search, or ``--study``), they are not known before it: then the run must have
    been picked the same way (by a search; by that study) and agree on every other key."""
    searched, _ = probe.narrowed(config)
    picked = options.study is not None or (options.searches(config) and not _probe_ignores(config))
    free = set(searched.search.space) if picked else set()
    wanted = _comparable(bundle.params(config), free)

    def like(run: Run) -> bool:
        if run.init_from != warm or _comparable(run.params, free) != wanted:
            return False
        if options.study is not None:
            return run.study == options.study
        return run.study is not None if picked else True

    return like


def _comparable(params: dict[str, Any], free: set[str]) -> dict[str, Any]:
    """``params`` as the run store gives them back (JSON), without the keys in ``free``."""
    kept = {k: v for k, v in params.items() if k not in free}
    loaded: dict[str, Any] = json.loads(json.dumps(kept, default=str))
    return loaded


def start_run(
    plan: BuildPlan,
    options: BuildOptions,
    *,
    resume: Run | None,
    tracker: RunTracker,
    images: Callable[[int], ImageSet],
    runs_root: Path,
    progress: Progress,
    studies: SharedStudies | None = None,
) -> TrainingRun:
    """Resume ``resume``, or take the best trial of a finished shared study
    (``options.study``), or search (when more than one trial or a budget is asked for); then
    start a new tracked run with the best parameters."""
    base = plan.config
    if resume is not None:
        how = (
            "a linear probe, fitted again"
            if probe.fitted(resume.params)
            else "from its last checkpoint"
        )
        progress(Event("build", f"resuming run {resume.id}: {how}"))
        if resume.status != "running":
            tracker.reopen(resume.id)
        config = TrainConfig.model_validate({**resume.params, "search": base.search.model_dump()})
        return TrainingRun(resume.id, config, resume.study, (), resumed=True)
    n_trials = options.trials if options.trials is not None else base.search.trials
    config, study = base, None
    trials: tuple[TrialSummary, ...] = ()
    if options.study is not None:
        if studies is None:
            raise ConfigError("this build has no shared studies to read --study from")
        best, summaries = studies.result(options.study, plan.version.id)
        progress(Event("build", f"best of study {options.study!r}: {best}"))
        config, study, trials = base.model_copy(update=best), options.study, tuple(summaries)
    elif (n_trials > 1 or options.budget_minutes) and _probe_ignores(base):
        keys = ", ".join(sorted(base.search.space)) or "an empty search space"
        progress(Event("build", f"search skipped: a linear probe has no use for {keys}"))
    elif n_trials > 1 or options.budget_minutes:
        searched, dropped = probe.narrowed(base)
        unused = f" (a linear probe has no use for {', '.join(dropped)})" if dropped else ""
        keys = ", ".join(sorted(searched.search.space))
        progress(
            Event(
                "build",
                f"search: {base.search.method} over {keys}, up to {n_trials} trials{unused}",
            )
        )

        def on_trial(t: TrialSummary) -> None:
            progress(
                Event(
                    "tune",
                    t.line(),
                    done=t.trial + 1,
                    total=n_trials,
                )
            )

        found = search(
            searched,
            images,
            plan.splits.train,
            plan.splits.validation,
            tracker=tracker,
            dataset=plan.version.dataset,
            dataset_version=plan.version.id,
            run_root=runs_root,
            trials=n_trials,
            budget_minutes=options.budget_minutes or base.search.budget_minutes,
            init_state=plan.warm.state if plan.warm else None,
            storage=base.search.storage,
            on_trial=on_trial,
        )
        progress(Event("build", f"best: {found.best}"))
        config, study, trials = base.model_copy(update=found.best), found.study, found.trials
    run_id = tracker.start(
        kind="final",
        dataset=plan.version.dataset,
        dataset_version=plan.version.id,
        params=bundle.params(config),
        study=study,
        git_commit=bundle.git_commit(),
        init_from=plan.warm.ref if plan.warm else None,
    )
    return TrainingRun(run_id, config, study, trials, resumed=False)


@contextmanager
def failed_unless_done(tracker: RunTracker, run_id: str, run_dir: Path) -> Iterator[None]:
    """Mark the run ``failed`` if what this wraps raises, ``interrupted`` if it is stopped
    (Ctrl-C, or SIGTERM turned into one by the command line) or finds its checkpoint or images
    damaged, then let that go on. An interrupted run, and one a killed process left
    ``running``, is what ``--resume`` continues from its checkpoint; a failed or completed
    one's checkpoint is removed."""
    try:
        yield
    except (KeyboardInterrupt, IntegrityError):  # bytes put back, it can go on
        tracker.finish(run_id, "interrupted")
        raise
    except BaseException:
        tracker.finish(run_id, "failed")
        discard(run_dir)
        raise
    discard(run_dir)


def train(
    run: TrainingRun,
    plan: BuildPlan,
    *,
    images: Callable[[int], ImageSet],
    tracker: RunTracker,
    runs_root: Path,
    progress: Progress,
    parallel: Parallel | None = None,
) -> TrainedModel:
    """Train ``run`` (from its checkpoint when resumed), logging every epoch to it; with
    ``parallel``, this rank's share of it (rank 0 alone logs)."""
    config = run.config
    where = (parallel or Parallel(device=choose_device(config.device))).describe()
    probing = config.freeze_backbone and config.arch.startswith("efficientnet_lite")
    how = "a linear probe on frozen features" if probing else f"up to {config.epochs} epochs"
    line = f"training {config.arch} at {config.image_size}px, {how} {where} (run {run.id})"
    progress(Event("build", line))

    def on_epoch(stats: EpochStats) -> None:
        tracker.log_stats(run.id, stats)
        progress(
            Event(
                "train",
                f"  epoch {stats.epoch}: train_loss={stats.train_loss:.4f} "
                f"val_loss={stats.val_loss:.4f} val_accuracy={stats.val_accuracy:.4f} "
                f"({stats.images_per_s:.0f} img/s)",
                done=stats.epoch,
                total=1 if probing else config.epochs,
            )
        )

    data = images(config.image_size)
    fit = Trainer(
        config,
        data,
        plan.splits.train,
        plan.splits.validation,
        runs_root / run.id,
        init_state=plan.warm.state if plan.warm else None,
        on_epoch=on_epoch if parallel is None or parallel.leader else None,
        progress=progress,
        parallel=parallel,
    ).fit(resume=run.resumed)
    return TrainedModel(run=run, fit=fit, data=data)


def _probe_ignores(config: TrainConfig) -> bool:
    """A wholly frozen Lite model's classifier is fitted with its own cross-validated strength
    (kennel.train.probe): a search over settings it does not use would train the same model
    once per trial."""
    searched, _ = probe.narrowed(config)
    return probe.fitted(config.model_dump()) and not searched.search.space
