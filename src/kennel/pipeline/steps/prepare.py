"""The build's inputs: a dataset version's rows in label order and splits, the training
configuration, the weights of a warm start, and the images at the sizes training asks for."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import safetensors.torch
import torch

from kennel.config import TrainConfig
from kennel.datasets.manifest import Row
from kennel.datasets.versioning import DatasetVersion
from kennel.errors import TrainingError
from kennel.progress import Progress, counter
from kennel.registry.store import ModelRegistry
from kennel.storage import ContentStore
from kennel.train.data import ImageSet, build_image_set, column, holdout
from kennel.train.tracking import RunTracker


@dataclass(frozen=True)
class Splits:
    """Row indices: validation is the version's own or carved from train; test is untouched."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class WarmStart:
    ref: str  # the registered model version the weights come from
    state: dict[str, torch.Tensor]
    arch: str
    image_size: int


@dataclass(frozen=True)
class BuildPlan:
    version: DatasetVersion
    rows: list[Row]
    classes: list[str]  # kennel.yaml's label order first, then any other label present
    splits: Splits
    config: TrainConfig  # what a final run trains with, before a search picks its parameters
    warm: WarmStart | None = None

    def warm_started(self, warm: WarmStart) -> BuildPlan:
        """A warm start trains the source model's architecture at its input size."""
        config = self.config.model_copy(update={"arch": warm.arch, "image_size": warm.image_size})
        return replace(self, config=config, warm=warm)


def label_order(rows: list[Row], labels: list[str]) -> list[str]:
    present = sorted({r.label for r in rows})
    configured = [c for c in labels if c in present]
    return configured + [c for c in present if c not in configured]


def split(rows: list[Row], ref: str, validation_share: float, seed: int) -> Splits:
    splits = np.array([r.split for r in rows])
    test = np.flatnonzero(splits == "test")
    validation = np.flatnonzero(splits == "validation")
    if len(validation) == 0:
        validation = holdout(rows, validation_share, seed)
    train = np.setdiff1d(np.flatnonzero(splits == "train"), validation)
    if len(train) == 0 or len(test) == 0:
        raise TrainingError(f"{ref} needs images in both its train and test splits")
    return Splits(train=train, validation=validation, test=test)


def plan(
    version: DatasetVersion, rows: list[Row], config: TrainConfig, labels: list[str]
) -> BuildPlan:
    """What to train on and with: fails before any image is read when the data cannot make a
    model (fewer than two labels, an empty train or test split)."""
    # in content order: the same files give the same model whatever they are named (the seeded
    # shuffle draws from this order; retraining on production images, named by random
    # prediction ids, gave another model, and another night's accuracy, each run)
    rows = sorted(rows, key=lambda r: (r.sha256, r.uri))
    classes = label_order(rows, labels)
    if len(classes) < 2:
        raise TrainingError(f"{version.ref} has {len(classes)} label(s); need at least 2")
    splits = split(rows, version.ref, config.validation_share, config.seed)
    if config.balance_by and not any(column(rows, splits.train, config.balance_by)):
        # said here, before a run is recorded, not once training has begun
        raise NothingToBalance(
            f"train.balance_by: no training image of {version.ref} has a "
            f"{config.balance_by!r} column"
        )
    return BuildPlan(version=version, rows=rows, classes=classes, splits=splits, config=config)


class NothingToBalance(TrainingError):
    """``train.balance_by`` names a column no image of the training split has."""


def warm_start(
    ref: str, *, registry: ModelRegistry, tracker: RunTracker, content: ContentStore
) -> WarmStart:
    """The weights a registered model's training run kept, and the settings they fit."""
    model = registry.resolve(ref)
    if model.run_id is None:
        raise TrainingError(f"{model.ref} has no training run to warm-start from")
    run = tracker.get(model.run_id)
    digest = run.metrics.get("weights_sha256")
    if not digest:
        raise TrainingError(f"{model.ref}: its run kept no weights")
    return WarmStart(
        ref=model.ref,
        state=safetensors.torch.load(content.get(digest)),
        arch=run.params["arch"],
        image_size=run.params["image_size"],
    )


class ImageSets:
    """A plan's images decoded and cached at a size, built on first use and kept per size
    (a search may try several)."""

    def __init__(
        self,
        plan: BuildPlan,
        *,
        content: ContentStore,
        artifacts_url: str,
        cache_root: Path,
        workers: int,
        progress: Progress,
    ) -> None:
        self.plan = plan
        self.content = content
        self.artifacts_url = artifacts_url
        self.cache_root = cache_root
        self.workers = workers
        self.progress = progress
        self._sets: dict[int, ImageSet] = {}

    def __call__(self, size: int) -> ImageSet:
        if size not in self._sets:
            self._sets[size] = build_image_set(
                self.plan.rows,
                self.plan.classes,
                version_id=self.plan.version.id,
                size=size,
                content=self.content,
                artifacts_url=self.artifacts_url,
                cache_root=self.cache_root,
                workers=self.workers,
                progress=counter(self.progress, f"cache images at {size}px"),
            )
        return self._sets[size]
