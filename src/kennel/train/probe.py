"""What a wholly frozen EfficientNet-Lite (``freeze_backbone``) trains on: each training
image's pooled embedding, computed once through ONNX Runtime (:mod:`kennel.train.embeddings`);
epochs train only the linear classifier (``Head``), a linear probe. A model that averages flips
is validated on the mean of both views (as it is, mirrored), as it will predict.

The probe trains on each image as it is, whatever ``augment`` says: a mirrored copy of every
training image measured no better (5-fold cross-validation over the 8,000 train + validation
photos of the 10k set at 256 px: 98.54 % without, 98.56 % with) and costs a second pass of the
frozen network over the training split, time better spent on a larger input size. (Under a
letterbox frame policy the probe does not add a letterboxed view either, as the partly frozen
path of :mod:`kennel.train.features` does.)"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kennel.config import TrainConfig
from kennel.progress import Event, Progress
from kennel.train import embeddings
from kennel.train.data import ImageSet
from kennel.train.models import EfficientNetLite


class Head(nn.Module):
    """The classifier of a frozen EfficientNet-Lite, fed cached pooled embeddings."""

    def __init__(self, model: EfficientNetLite) -> None:
        super().__init__()
        self.model = model

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model._fc(self.model._dropout(embedding))
        return logits


def inputs(
    model: EfficientNetLite,
    cfg: TrainConfig,
    data: ImageSet,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    progress: Progress,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train embeddings, their labels, validation embeddings, their labels); validation
    embeddings are the mean of both views when the model averages flips."""
    val_views = 2 if cfg.tta_flip else 1
    total = len(train_idx) + len(val_idx) * val_views
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        progress(Event("cache frozen features", done=done, total=total))

    def encode(indices: np.ndarray, mirrored: bool) -> torch.Tensor:
        out = embeddings.embeddings(model, data.images, indices, mirrored=mirrored, step=step)
        return torch.from_numpy(np.array(out))  # a copy: the memo's array is read-only

    train = encode(train_idx, False)
    val = encode(val_idx, False)
    if val_views == 2:
        val = (val + encode(val_idx, True)) / 2
    labels = torch.from_numpy(data.labels)
    return train, labels[train_idx], val, labels[val_idx]
