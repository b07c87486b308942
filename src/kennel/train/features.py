"""Frozen-feature caching for fine-tuning a partly frozen EfficientNet-Lite: the frozen stem
and first blocks run once per image (and once mirrored, and once letterboxed when the frame
policy letterboxes) in eval mode, their outputs are kept in memory as fp16, and epochs train
only the remaining blocks and the head on them."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kennel.progress import Event, Progress
from kennel.train.augment import LETTERBOX_BANDS, letterboxed, to_input
from kennel.train.data import ImageSet
from kennel.train.models import EfficientNetLite

EVAL_BATCH = 128


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


def encode(
    model: EfficientNetLite,
    data: ImageSet,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    *,
    frozen_blocks: int,
    mirrored: bool,
    device: torch.device,
    progress: Progress,
    letterbox: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train features, their labels, validation features, their labels), features on the CPU
    in fp16; the training images twice (as they are and mirrored) when ``mirrored``, and once
    more as a letterboxed 16:9 frame shows them when ``letterbox`` (the served geometry)."""
    labels = torch.from_numpy(data.labels)
    frozen = min(frozen_blocks, model.num_blocks)
    views = (2 if mirrored else 1) + letterbox
    total = len(train_idx) * views + len(val_idx)
    encoded = 0

    @torch.no_grad()
    def run(indices: np.ndarray, mirror: bool, boxed: bool = False) -> torch.Tensor:
        nonlocal encoded
        model.eval()
        parts = []
        for lo in range(0, len(indices), EVAL_BATCH):
            encoded += len(indices[lo : lo + EVAL_BATCH])
            progress(Event("cache frozen features", done=encoded, total=total))
            batch = torch.from_numpy(
                np.ascontiguousarray(data.images[indices[lo : lo + EVAL_BATCH]])
            )
            if boxed:
                x01 = batch.permute(0, 3, 1, 2).float().div_(255.0)
                band = torch.full((len(batch),), LETTERBOX_BANDS[0])
                batch = letterboxed(x01, band).mul_(255.0).round_().byte().permute(0, 2, 3, 1)
            x = to_input(batch).to(device)
            if mirror:
                x = torch.flip(x, dims=[3])
            h = model.stem(x)
            for block in model._blocks[:frozen]:
                h = block(h)
            parts.append(h.to(torch.float16).cpu())
        return torch.cat(parts) if parts else torch.zeros(0)

    train_views = [run(train_idx, False)]
    if mirrored:
        train_views.append(run(train_idx, True))
    if letterbox:
        train_views.append(run(train_idx, False, boxed=True))
    train_x = torch.cat(train_views)
    train_y = labels[train_idx].repeat(len(train_views))
    return train_x, train_y, run(val_idx, False), labels[val_idx]
