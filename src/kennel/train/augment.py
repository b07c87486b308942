"""Augmentation on uint8 NHWC batches: random resized crop, horizontal flip and colour jitter,
then ImageNet normalisation, as one pass over each picture while it sits in the CPU cache.

The crop is a pixel box resized with uint8 bilinear interpolation (torch's vectorised kernel);
brightness, contrast and saturation compose into ``a * x + b * grey(x) + c`` per picture, and
the normalisation folds in, so each picture is converted to float once and touched a few more
times. On a 2-core machine every CPU cycle spent here is taken from the model's own compute.
"""

from __future__ import annotations

import math
import queue
import signal
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
_GREY = (0.299, 0.587, 0.114)  # luma weights (they sum to 1)


def letterboxed(
    x: torch.Tensor, band: torch.Tensor, fill: torch.Tensor | None = None
) -> torch.Tensor:
    """Float NCHW in [0, 1] as the model sees a wide frame under the letterbox policy: each
    picture shrunk to ``band`` (its share of the height) with the scene continued left and
    right (reflected) and bars of the fill colour above and below. ``fill`` (3 values) is the
    bar colour in the units of ``x`` when those are not [0, 1] (normalised inputs)."""
    n, _, height, _ = x.shape
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = 1 / band
    theta[:, 1, 1] = 1 / band
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    rows = (torch.arange(height).float() + 0.5) / height * 2 - 1  # row centres in [-1, 1]
    bars = rows.view(1, 1, height, 1).abs() > band.view(n, 1, 1, 1)
    colour = (torch.tensor(_FILL) if fill is None else fill).view(1, 3, 1, 1)
    return torch.where(bars, colour, out)


def _scale_shift() -> tuple[torch.Tensor, torch.Tensor]:
    """(k, o) with ``x * k + o`` the normalisation of 0..255 values, per channel (last dim)."""
    std = torch.tensor(IMAGENET_STD)
    return 1.0 / (255.0 * std), -torch.tensor(IMAGENET_MEAN) / std


def to_input(batch: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW in channels_last memory (a free permute)."""
    x = batch.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def augment(
    batch: torch.Tensor, strength: float, generator: torch.Generator, letterbox: float = 0.0
) -> torch.Tensor:
    """Augmented, normalised float NCHW (channels_last) from uint8 NHWC; ``strength`` 0 means
    none. A ``letterbox`` share of the pictures is shown as a letterboxed wide frame (see
    :func:`letterboxed`), whatever the strength: the geometry the model will be served."""
    if strength <= 0 and letterbox <= 0:
        return to_input(batch)
    n = batch.shape[0]
    x = _crop_and_jitter(batch, strength, generator) if strength > 0 else to_input(batch)
    if letterbox > 0:
        boxed = torch.rand(n, generator=generator) < letterbox
        choice = torch.randint(len(LETTERBOX_BANDS), (n,), generator=generator)
        band = torch.tensor(LETTERBOX_BANDS)[choice]
        if boxed.any():
            k, o = _scale_shift()
            fill = torch.tensor(_FILL) * 255.0 * k + o
            x[boxed] = letterboxed(x[boxed], band[boxed], fill).contiguous(
                memory_format=torch.channels_last
            )
    return x


def _crop_and_jitter(
    batch: torch.Tensor, strength: float, generator: torch.Generator
) -> torch.Tensor:
    """Random resized crop, horizontal flip and colour jitter of uint8 NHWC, normalised: float
    NCHW in channels_last memory.

    The crop keeps a share of the area in [1 - 0.6 s, 1] at an aspect ratio within
    (4/3)^(+-s), anywhere inside the picture; brightness, contrast (about the picture's mean
    grey) and saturation (about each pixel's grey) each scale by a factor in 1 +- 0.4 s, in
    that order, and the result is clipped to the valid range."""
    n, height, width, _ = batch.shape

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    # n draws each, in this order: area, ratio, x, y, flip, brightness, contrast, saturation
    area = uniform(1.0 - 0.6 * strength, 1.0)
    log_ratio = uniform(-math.log(4 / 3) * strength, math.log(4 / 3) * strength)
    w = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    h = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - h)
    flip = torch.rand(n, generator=generator) < 0.5
    jitter = 0.4 * strength
    brightness = uniform(1 - jitter, 1 + jitter)
    contrast = uniform(1 - jitter, 1 + jitter)
    saturation = uniform(1 - jitter, 1 + jitter)
    # the crop as a pixel box: centre (c + 1) / 2 of the side, size w (or h) of the side
    cw = (w * width).round().clamp(min=1).long()
    ch = (h * height).round().clamp(min=1).long()
    left = ((cx + 1) / 2 * width - cw / 2).round().long().clamp(min=0)
    top = ((cy + 1) / 2 * height - ch / 2).round().long().clamp(min=0)
    left = torch.minimum(left, width - cw)
    top = torch.minimum(top, height - ch)
    # after brightness b, contrast c about the mean grey m and saturation s about each pixel's
    # grey: s*c*b * x + (1 - s)*c*b * grey(x) + (1 - c)*b * m (grey is linear, weights sum to 1)
    gain = (saturation * contrast * brightness).tolist()
    grey_gain = ((1 - saturation) * contrast * brightness).tolist()
    mean_gain = ((1 - contrast) * brightness).tolist()
    boxes = torch.stack([top, left, ch, cw], 1).tolist()
    flips = flip.tolist()
    k, o = _scale_shift()
    # the normalisation tiled over a picture's pixels: contiguous operands vectorise, a
    # broadcast over an innermost dimension of 3 does not
    scale, offset = k.repeat(height * width, 1), o.repeat(height * width, 1)
    luma = torch.tensor(_GREY)
    out = torch.empty(n, height * width, 3)
    for i, (y0, x0, bh, bw) in enumerate(boxes):
        crop = batch[i, y0 : y0 + bh, x0 : x0 + bw].permute(2, 0, 1).unsqueeze(0)
        if (bh, bw) != (height, width):
            crop = F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)
        picture = crop[0].permute(1, 2, 0)  # HWC (a view)
        if flips[i]:
            picture = picture.flip(1)
        x = out[i]
        x.view(height, width, 3).copy_(picture)  # the one conversion to float, 0..255
        grey = x @ luma
        mean_term = mean_gain[i] * float(grey.mean())
        grey.mul_(grey_gain[i]).add_(mean_term)
        x.mul_(gain[i]).add_(grey.unsqueeze(1)).clamp_(0.0, 255.0)
        torch.addcmul(offset, x, scale, out=x)
    return out.view(n, height, width, 3).permute(0, 3, 1, 2)


class Prefetcher:
    """Prepares augmented batches on a background thread, ``depth`` ahead of the consumer, so
    reading the memmap and augmenting overlap with the model's forward and backward passes.
    Batches come out in order and the generator is used in order: runs stay reproducible.

    The thread runs torch with ``threads`` intra-op threads (one by default): augmentation is
    many small operations, and a second OpenMP team for them would spin between each one on
    the cores the model's own threads are computing on. The consumer's count is its own."""

    def __init__(
        self, make: Callable[[int], torch.Tensor], count: int, depth: int = 2, threads: int = 1
    ) -> None:
        self.make = make
        self.count = count
        self.threads = threads
        self.queue: queue.Queue[torch.Tensor | BaseException] = queue.Queue(depth)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="kennel-prefetch", daemon=True)

    def _run(self) -> None:
        # set_num_threads is this thread's own for OpenMP and MKL; what it leaves behind is
        # only the count that threads started later begin with, so that is put back
        inherited = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            for i in range(self.count):
                if self.stopped.is_set():
                    return
                try:
                    item: torch.Tensor | BaseException = self.make(i)
                except BaseException as exc:
                    item = exc
                while not self.stopped.is_set():
                    try:
                        self.queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if isinstance(item, BaseException):
                    return
        finally:
            torch.set_num_threads(inherited)

    def __iter__(self) -> Iterator[torch.Tensor]:
        try:
            _start_uninterrupted(self.thread)
            for _ in range(self.count):
                item = self.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the thread and wait for it (a consumer that stops early, Ctrl-C or SIGTERM
        mid-epoch): a thread left inside a torch operation while the interpreter exits can
        abort the process ("terminate called without an active exception")."""
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()


def _start_uninterrupted(thread: threading.Thread) -> None:
    """``thread.start()`` with SIGINT and SIGTERM held back until it returns: a Ctrl-C or
    SIGTERM raised inside ``start`` (it waits for the new thread to run) would leave a thread
    running that nothing stops or joins, still inside torch when the interpreter exits. A
    signal held back is handled right after, where ``close`` joins the thread."""
    main = threading.current_thread() is threading.main_thread()
    if not main or not hasattr(signal, "pthread_sigmask"):  # signals go to the main thread
        thread.start()
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
