"""Batched augmentation on uint8 tensors: random resized crop, horizontal flip and colour jitter
in a handful of tensor ops for the whole batch (no per-image Python work)."""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The share of a batch shown as a letterboxed wide frame when the frame policy letterboxes,
# and the band heights drawn (9/16: a 16:9 camera; 3/4: a 4:3 one).
LETTERBOX_SHARE = 0.3
LETTERBOX_BANDS = (9 / 16, 3 / 4)
_FILL = (124 / 255, 116 / 255, 104 / 255)  # kennel.portable.frames.FILL


def letterboxed(x: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
    """Float NCHW in [0, 1] as the model sees a wide frame under the letterbox policy: each
    picture shrunk to ``band`` (its share of the height) with the scene continued left and
    right (reflected) and bars of the fill colour above and below."""
    n, _, height, _ = x.shape
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = 1 / band
    theta[:, 1, 1] = 1 / band
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    rows = (torch.arange(height).float() + 0.5) / height * 2 - 1  # row centres in [-1, 1]
    bars = rows.view(1, 1, height, 1).abs() > band.view(n, 1, 1, 1)
    fill = torch.tensor(_FILL).view(1, 3, 1, 1)
    return torch.where(bars, fill, out)


def to_input(batch: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW in channels_last memory (a free permute)."""
    x = batch.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def augment(
    batch: torch.Tensor, strength: float, generator: torch.Generator, letterbox: float = 0.0
) -> torch.Tensor:
    """Augmented, normalised float NCHW from uint8 NHWC; ``strength`` 0 means none. A
    ``letterbox`` share of the pictures is shown as a letterboxed wide frame (see
    :func:`letterboxed`), whatever the strength: the geometry the model will be served."""
    if strength <= 0 and letterbox <= 0:
        return to_input(batch)
    n = batch.shape[0]
    x = batch.permute(0, 3, 1, 2).float().div_(255.0)
    if strength > 0:
        x = _crop_and_jitter(x, strength, generator)
    if letterbox > 0:
        boxed = torch.rand(n, generator=generator) < letterbox
        choice = torch.randint(len(LETTERBOX_BANDS), (n,), generator=generator)
        band = torch.tensor(LETTERBOX_BANDS)[choice]
        if boxed.any():
            x[boxed] = letterboxed(x[boxed], band[boxed])
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def _crop_and_jitter(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Random resized crop, horizontal flip and colour jitter of float NCHW in [0, 1]."""
    n = x.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    area = uniform(1.0 - 0.6 * strength, 1.0)
    log_ratio = uniform(-math.log(4 / 3) * strength, math.log(4 / 3) * strength)
    w = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    h = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    jitter = 0.4 * strength
    brightness = uniform(1 - jitter, 1 + jitter).view(n, 1, 1, 1)
    contrast = uniform(1 - jitter, 1 + jitter).view(n, 1, 1, 1)
    saturation = uniform(1 - jitter, 1 + jitter).view(n, 1, 1, 1)
    x = x * brightness
    grey = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    x = (x - grey.mean(dim=(2, 3), keepdim=True)) * contrast + grey.mean(dim=(2, 3), keepdim=True)
    grey = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    return ((x - grey) * saturation + grey).clamp_(0.0, 1.0)


class Prefetcher:
    """Prepares augmented batches on a background thread, ``depth`` ahead of the consumer, so
    reading the memmap and augmenting overlap with the model's forward and backward passes.
    Batches come out in order and the generator is used in order: runs stay reproducible."""

    def __init__(self, make: Callable[[int], torch.Tensor], count: int, depth: int = 2) -> None:
        self.make = make
        self.count = count
        self.queue: queue.Queue[torch.Tensor | BaseException] = queue.Queue(depth)
        self.thread = threading.Thread(target=self._run, name="kennel-prefetch", daemon=True)

    def _run(self) -> None:
        for i in range(self.count):
            try:
                self.queue.put(self.make(i))
            except BaseException as exc:
                self.queue.put(exc)
                return

    def __iter__(self) -> Iterator[torch.Tensor]:
        self.thread.start()
        for _ in range(self.count):
            item = self.queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
        self.thread.join()
