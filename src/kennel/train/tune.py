"""Hyperparameter search with Optuna: grid, random or TPE sampling, median pruning, a budget in
trials or minutes. Every trial is a tracked run linked to the dataset version."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import optuna

from kennel.config import ParamSpace, SearchConfig, TrainConfig
from kennel.errors import ConfigError
from kennel.train.checkpoint import discard
from kennel.train.data import ImageSet
from kennel.train.results import EpochStats
from kennel.train.tracking import RunTracker
from kennel.train.trainer import Trainer

if TYPE_CHECKING:
    import torch

# hyperparameter name -> the value a trial sampled (a number or, from a values: list, a string)
Params = dict[str, optuna.distributions.CategoricalChoiceType]


@dataclass(frozen=True)
class TrialSummary:
    trial: int
    run_id: str
    params: Params
    status: str  # completed, pruned or failed
    val_accuracy: float | None  # a completed trial's; a pruned or failed one has none
    seconds: float

    def line(self) -> str:
        """The trial as one progress line (no accuracy for a trial that did not complete)."""
        value = f" val_accuracy={self.val_accuracy:.4f}" if self.val_accuracy is not None else ""
        return f"  trial {self.trial}: {self.status}{value} {self.params}"

    def as_dict(self) -> dict[str, object]:
        return {
            "trial": self.trial,
            "run_id": self.run_id,
            "params": dict(self.params),
            "status": self.status,
            "val_accuracy": self.val_accuracy,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class SearchResult:
    best: Params  # the best completed trial's parameters
    trials: tuple[TrialSummary, ...]  # every trial, in the order they finished
    study: str


TUNABLE = {
    "arch",
    "image_size",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "label_smoothing",
    "augment",
    "dropout",
    "frozen_blocks",
    "schedule",
}


def check_space(space: dict[str, ParamSpace], method: str) -> None:
    for key, spec in space.items():
        if key not in TUNABLE:
            raise ConfigError(
                f"train.search.space.{key}: not a tunable parameter ({', '.join(sorted(TUNABLE))})"
            )
        if method == "grid" and spec.values is None:
            raise ConfigError(f"train.search.space.{key}: grid search needs a values: list")


def sampler(search: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    if search.method == "grid":
        grid = {k: list(v.values or []) for k, v in search.space.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if search.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def suggest(trial: optuna.Trial, space: dict[str, ParamSpace]) -> Params:
    params: Params = {}
    for key, spec in space.items():
        if spec.values is not None:
            params[key] = trial.suggest_categorical(key, spec.values)
        elif spec.integer:
            params[key] = trial.suggest_int(
                key, int(spec.low or 0), int(spec.high or 0), log=spec.log
            )
        else:
            params[key] = trial.suggest_float(
                key, float(spec.low or 0), float(spec.high or 0), log=spec.log
            )
    return params


def pruner() -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)


def slots(search: SearchConfig, trials: int) -> int:
    """How many trials a search runs: ``trials``, or fewer when a grid has fewer points."""
    if search.method == "grid":
        return min(trials, int(np.prod([len(v.values or []) for v in search.space.values()])))
    return trials


class Objective:
    """One trial: sampled parameters over ``base``, trained as a tracked run of ``study`` (its
    id in the ``run_id`` user attribute), reported to ``on_trial`` as it ends."""

    def __init__(
        self,
        base: TrainConfig,
        images: Callable[[int], ImageSet],
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        *,
        tracker: RunTracker,
        dataset: str,
        dataset_version: str,
        run_root: Path,
        study: str,
        init_state: dict[str, torch.Tensor] | None = None,
        on_trial: Callable[[TrialSummary], None] | None = None,
    ) -> None:
        self.base = base
        self.images = images
        self.train_idx = train_idx
        self.val_idx = val_idx
        self.tracker = tracker
        self.dataset = dataset
        self.dataset_version = dataset_version
        self.run_root = run_root
        self.study = study
        self.init_state = init_state
        self.on_trial = on_trial
        self.summaries: list[TrialSummary] = []

    def __call__(self, trial: optuna.Trial) -> float:
        value: float | None
        search_cfg = self.base.search
        params = suggest(trial, search_cfg.space)
        update: dict[str, object] = {**params}
        if search_cfg.trial_epochs is not None and "epochs" not in params:
            update["epochs"] = search_cfg.trial_epochs
        cfg = self.base.model_copy(update=update)
        run_id = self.tracker.start(
            kind="trial",
            dataset=self.dataset,
            dataset_version=self.dataset_version,
            params=cfg.model_dump(exclude={"search"}),
            study=self.study,
            trial_number=trial.number,
        )
        trial.set_user_attr("run_id", run_id)
        began = time.perf_counter()

        def on_epoch(stats: EpochStats) -> None:
            self.tracker.log_stats(run_id, stats)
            trial.report(stats.val_accuracy, stats.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        # "failed" unless the trial ends one of the two ways it may: whatever else stops it
        # (an error, an interrupt) leaves it recorded as failed
        status, value = "failed", None
        try:
            result = Trainer(
                cfg,
                self.images(cfg.image_size),
                self.train_idx,
                self.val_idx,
                self.run_root / run_id,
                init_state=self.init_state,
                on_epoch=on_epoch,
            ).fit()
            value, status = result.best_val_accuracy, "completed"
            return result.best_val_accuracy
        except optuna.TrialPruned:
            status = "pruned"
            raise
        finally:
            summary = TrialSummary(
                trial=trial.number,
                run_id=run_id,
                params=params,
                status=status,
                val_accuracy=value,
                seconds=round(time.perf_counter() - began, 2),
            )
            self.tracker.finish(run_id, status, {} if value is None else {"val_accuracy": value})
            discard(self.run_root / run_id)  # a trial is never resumed
            self.summaries.append(summary)
            if self.on_trial:
                self.on_trial(summary)


def search(
    base: TrainConfig,
    images: Callable[[int], ImageSet],
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    *,
    tracker: RunTracker,
    dataset: str,
    dataset_version: str,
    run_root: Path,
    trials: int,
    budget_minutes: float | None,
    init_state: dict[str, torch.Tensor] | None = None,
    storage: str | None = None,
    on_trial: Callable[[TrialSummary], None] | None = None,
) -> SearchResult:
    """Run the study in this process: every trial a tracked run, reported to ``on_trial`` as
    it ends."""
    search_cfg = base.search
    check_space(search_cfg.space, search_cfg.method)
    study_id = uuid.uuid4().hex[:16]
    optuna.logging.set_verbosity(logging.WARNING)
    study = optuna.create_study(
        study_name=f"kennel-{study_id}",
        direction="maximize",
        sampler=sampler(search_cfg, base.seed),
        pruner=pruner(),
        storage=storage,
    )
    objective = Objective(
        base,
        images,
        train_idx,
        val_idx,
        tracker=tracker,
        dataset=dataset,
        dataset_version=dataset_version,
        run_root=run_root,
        study=study_id,
        init_state=init_state,
        on_trial=on_trial,
    )
    study.optimize(
        objective,
        n_trials=slots(search_cfg, trials),
        timeout=budget_minutes * 60 if budget_minutes else None,
        catch=(),
    )
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise ConfigError("no tuning trial completed; widen the budget or the search space")
    return SearchResult(dict(study.best_trial.params), tuple(objective.summaries), study_id)
