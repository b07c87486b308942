"""Hyperparameter search with Optuna: grid, random or TPE sampling, median pruning, a budget in
trials or minutes. Every trial is a tracked run linked to the dataset version."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna

from kennel.config import ParamSpace, SearchConfig, TrainConfig
from kennel.errors import ConfigError
from kennel.train.data import ImageSet
from kennel.train.tracking import RunTracker
from kennel.train.trainer import EpochStats, Trainer

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


def suggest(trial: optuna.Trial, space: dict[str, ParamSpace]) -> dict[str, Any]:
    params: dict[str, Any] = {}
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


def search(
    base: TrainConfig,
    images: Callable[[int], ImageSet],
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    *,
    tracker: RunTracker,
    dataset: str,
    dataset_version: str,
    run_root: Any,
    trials: int,
    budget_minutes: float | None,
    init_state: dict[str, Any] | None = None,
    storage: str | None = None,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """Run the study; returns (best params, per-trial summaries, study id)."""
    search_cfg = base.search
    check_space(search_cfg.space, search_cfg.method)
    study_id = uuid.uuid4().hex[:16]
    optuna.logging.set_verbosity(logging.WARNING)
    study = optuna.create_study(
        study_name=f"kennel-{study_id}",
        direction="maximize",
        sampler=sampler(search_cfg, base.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
        storage=storage,
    )
    summaries: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, search_cfg.space)
        update = {**params}
        if search_cfg.trial_epochs is not None and "epochs" not in params:
            update["epochs"] = search_cfg.trial_epochs
        cfg = base.model_copy(update=update)
        run_id = tracker.start(
            kind="trial",
            dataset=dataset,
            dataset_version=dataset_version,
            params=cfg.model_dump(exclude={"search"}),
            study=study_id,
            trial_number=trial.number,
        )
        began = time.perf_counter()

        def on_epoch(stats: EpochStats) -> None:
            tracker.log_stats(run_id, stats)
            trial.report(stats.val_accuracy, stats.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        status, value = "completed", 0.0
        try:
            result = Trainer(
                cfg,
                images(cfg.image_size),
                train_idx,
                val_idx,
                run_root / run_id,
                init_state=init_state,
                on_epoch=on_epoch,
            ).fit()
            value = result.best_val_accuracy
            return value
        except optuna.TrialPruned:
            status = "pruned"
            raise
        except Exception:
            status = "failed"
            raise
        finally:
            summary = {
                "trial": trial.number,
                "run_id": run_id,
                "params": params,
                "status": status,
                "val_accuracy": value,
                "seconds": round(time.perf_counter() - began, 2),
            }
            tracker.finish(run_id, status, {"val_accuracy": value})
            summaries.append(summary)
            if on_trial:
                on_trial(summary)

    n_trials = trials
    if search_cfg.method == "grid":
        size = int(np.prod([len(v.values or []) for v in search_cfg.space.values()]))
        n_trials = min(trials, size)
    study.optimize(
        objective,
        n_trials=n_trials,
        timeout=budget_minutes * 60 if budget_minutes else None,
        catch=(),
    )
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise ConfigError("no tuning trial completed; widen the budget or the search space")
    return dict(study.best_trial.params), summaries, study_id
