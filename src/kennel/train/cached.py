"""What a partly or wholly frozen EfficientNet-Lite trains on: the frozen part runs once per
image (and once mirrored, a second view, when augmenting) and epochs see only its outputs.

- ``frozen_blocks = k``: the stem and the first k blocks, in PyTorch, kept as fp16 feature
  maps; the remaining blocks and the head train (``Tail``).
- ``freeze_backbone``: everything but the classifier, through ONNX Runtime (see
  :mod:`kennel.train.features`), kept as pooled embeddings; the linear classifier trains
  (``Head``), a linear probe.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kennel.config import TrainConfig
from kennel.progress import Event, Progress
from kennel.train import features
from kennel.train.augment import to_input
from kennel.train.data import ImageSet
from kennel.train.models import EfficientNetLite

_BATCH = 128
Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # train x, y; val x, y


class Head(nn.Module):
    """The classifier of a frozen EfficientNet-Lite, fed cached pooled embeddings."""

    def __init__(self, model: EfficientNetLite) -> None:
        super().__init__()
        self.model = model

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model._fc(self.model._dropout(embedding))
        return logits


class Tail(nn.Module):
    """The trainable part of a partly frozen EfficientNet-Lite, fed cached features."""

    def __init__(self, model: EfficientNetLite, start: int) -> None:
        super().__init__()
        self.model = model
        self.start = start

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = self.model._avg_pooling(self.model.features(features, self.start))
        logits: torch.Tensor = self.model._fc(self.model._dropout(torch.flatten(pooled, 1)))
        return logits


def trainable(model: EfficientNetLite, cfg: TrainConfig) -> nn.Module:
    return Head(model) if cfg.freeze_backbone else Tail(model, cfg.frozen_blocks)


def inputs(
    model: EfficientNetLite,
    cfg: TrainConfig,
    data: ImageSet,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    progress: Progress,
) -> Inputs:
    """Cached training and validation inputs with their labels; training rows repeat once per
    view (plain, then mirrored)."""
    train_views = 2 if cfg.augment > 0 else 1
    # a model that averages flips is validated as it will predict
    val_views = 2 if cfg.freeze_backbone and cfg.tta_flip else 1
    total = len(train_idx) * train_views + len(val_idx) * val_views
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        progress(Event("cache frozen features", done=done, total=total))

    def encode(indices: np.ndarray, mirrored: bool) -> torch.Tensor:
        if cfg.freeze_backbone:
            out = features.embeddings(model, data.images, indices, mirrored=mirrored, step=step)
            return torch.from_numpy(np.array(out))  # a copy: the memo's array is read-only
        frozen = min(cfg.frozen_blocks, model.num_blocks)
        return _block_features(model, frozen, data.images, indices, mirrored, step)

    train = [encode(train_idx, False)]
    if train_views == 2:
        train.append(encode(train_idx, True))
    val = encode(val_idx, False)
    if val_views == 2:
        val = (val + encode(val_idx, True)) / 2
    labels = torch.from_numpy(data.labels)
    return torch.cat(train), labels[train_idx].repeat(train_views), val, labels[val_idx]


@torch.no_grad()
def _block_features(
    model: EfficientNetLite,
    frozen: int,
    images: np.ndarray,
    indices: np.ndarray,
    mirrored: bool,
    step: features.Step,
) -> torch.Tensor:
    model.eval()
    parts = []
    for lo in range(0, len(indices), _BATCH):
        part = indices[lo : lo + _BATCH]
        x = to_input(torch.from_numpy(np.ascontiguousarray(images[part])))
        if mirrored:
            x = torch.flip(x, dims=[3])
        h = model.stem(x)
        for block in model._blocks[:frozen]:
            h = block(h)
        parts.append(h.to(torch.float16))
        step(len(part))
    return torch.cat(parts) if parts else torch.zeros(0)
