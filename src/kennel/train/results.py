"""What training a model produces: the statistics of each epoch and the fit as a whole."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float
    images_per_s: float
    lr: float


@dataclass(frozen=True)
class FitResult:
    history: tuple[EpochStats, ...]
    best_epoch: int
    best_val_accuracy: float
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    seconds: float
    model: nn.Module = field(repr=False)
