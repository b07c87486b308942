"""How a picture becomes the model's square input: the frame policy a bundle records.

A model sees ``size`` x ``size`` pixels. A photo of a pet is close to square, and its centre
square holds the animal; a CCTV frame is wide (16:9), and its centre square may hold half a
dog or none. The policy says what to do with a picture further from square than
``max_aspect``:

- ``centre``: the centre square (what every bundle before frame policies did; their default);
- ``letterbox``: the whole picture, shrunk to fit, with bars of the ImageNet mean colour;
- ``tiles``: overlapping squares across the longer side (each the full shorter side, every
  point of the picture in at least one, neighbours sharing at least half), each classified,
  and the tile that most looks like a pet wins (see :func:`kennel.portable.model.pick`);
- ``letterbox+tiles``: the letterboxed whole picture as one more view beside the tiles.

A picture within ``max_aspect`` of square gets its centre square under every policy, exactly
as in training; so does every picture under ``centre``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

POLICIES = ("centre", "letterbox", "tiles", "letterbox+tiles")
# A JPEG larger than needed is decoded at 1/2, 1/4 or 1/8 scale (the decoder skips the fine
# detail), as long as both sides stay at least this many times the model's input size: the
# bilinear resize that follows still shrinks by 2x or more, so the input differs from a full
# decode's by a fraction of a grey level on average. A 24 MP photo decodes several times
# faster. Bundles record it (``preprocessing.jpeg_draft``); older ones decode in full.
JPEG_DRAFT = 2
MAX_TILES = 6  # half-overlapping up to 3.5:1; a longer picture gets 6 evenly spaced squares
FILL = (124, 116, 104)  # the ImageNet mean colour: bars that normalise to zero


@dataclass(frozen=True)
class FrameSpec:
    """A bundle's frame policy (``preprocessing.frame`` in ``kennel-model.json``)."""

    policy: str = "centre"
    max_aspect: float = 1.5
    fill: tuple[int, int, int] = FILL

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown frame policy {self.policy!r}; one of {', '.join(POLICIES)}")
        if self.max_aspect < 1.0:
            raise ValueError(f"frame max_aspect must be at least 1, got {self.max_aspect}")

    @classmethod
    def of(cls, preprocessing: Mapping[str, Any]) -> FrameSpec:
        """The policy a bundle's preprocessing records; a bundle without one (made before
        frame policies existed) keeps its centre square."""
        frame = preprocessing.get("frame")
        if not isinstance(frame, Mapping):
            return cls()
        return cls(
            policy=str(frame.get("policy", "centre")),
            max_aspect=float(frame.get("max_aspect", 1.5)),
            fill=tuple(int(v) for v in frame.get("fill", FILL)),  # type: ignore[arg-type]
        )

    def as_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "max_aspect": self.max_aspect, "fill": list(self.fill)}

    def centred(self, width: int, height: int) -> bool:
        """Whether a ``width`` x ``height`` picture gets its centre square."""
        return self.policy == "centre" or _aspect(width, height) <= self.max_aspect

    def count(self, width: int, height: int) -> int:
        """How many views a ``width`` x ``height`` picture gives."""
        if self.centred(width, height):
            return 1
        tiles = len(tile_boxes(width, height)) if "tiles" in self.policy else 0
        return tiles + (1 if "letterbox" in self.policy else 0)


def jpeg_draft(preprocessing: Mapping[str, Any], size: int) -> tuple[int, int] | None:
    """The smallest (width, height) a JPEG may be decoded at for a ``size`` px model whose
    bundle records ``preprocessing``; None: decode in full (bundles made before drafts)."""
    factor = preprocessing.get("jpeg_draft")
    if not isinstance(factor, int | float) or isinstance(factor, bool) or factor < 1:
        return None
    side = math.ceil(factor * size)
    return (side, side)


def _aspect(width: int, height: int) -> float:
    return max(width, height) / max(1, min(width, height))


def square(image: Image.Image, size: int) -> np.ndarray:
    """Shorter side resized to ``size`` (bilinear), centre crop to size x size, uint8 HWC."""
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    resized = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    cropped = resized.crop((left, top, left + size, top + size))
    return np.asarray(cropped, dtype=np.uint8)


def letterbox(image: Image.Image, size: int, fill: tuple[int, int, int] = FILL) -> np.ndarray:
    """Longer side resized to ``size`` (bilinear), centred on a ``fill`` square, uint8 HWC."""
    width, height = image.size
    scale = size / max(width, height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    out = np.empty((size, size, 3), dtype=np.uint8)
    out[:] = fill
    left, top = (size - new_w) // 2, (size - new_h) // 2
    resized = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    out[top : top + new_h, left : left + new_w] = np.asarray(resized, dtype=np.uint8)
    return out


def tile_boxes(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Squares of the shorter side's length along the longer side, evenly spaced from one end
    to the other, each overlapping the next by at least half (left, top, right, bottom); at
    most :data:`MAX_TILES` (a 1x4000 picture must not become 8,000 model inputs)."""
    side, long = min(width, height), max(width, height)
    count = min(MAX_TILES, 1 + math.ceil((long - side) / (side / 2))) if long > side else 1
    starts = [round(i * (long - side) / max(1, count - 1)) for i in range(count)]
    if width >= height:
        return [(s, 0, s + side, side) for s in starts]
    return [(0, s, side, s + side) for s in starts]


def views(image: Image.Image, size: int, spec: FrameSpec) -> np.ndarray:
    """The model inputs one picture gives under ``spec``: uint8 [V, size, size, 3]."""
    width, height = image.size
    if spec.centred(width, height):
        return square(image, size)[None]
    out = []
    if "letterbox" in spec.policy:
        out.append(letterbox(image, size, spec.fill))
    if "tiles" in spec.policy:
        out.extend(tiles(image, size))
    return np.stack(out)


def tiles(image: Image.Image, size: int) -> list[np.ndarray]:
    """The squares of :func:`tile_boxes`, each ``size`` x ``size``, uint8 HWC. The picture is
    resized once (shorter side to ``size``) and the squares cut from it: the overlapping
    squares' pixels are not resampled two or three times (a 640x360 frame's three squares
    cost 0.9 ms less, 40 %), and each square is the crop-then-resize one to within a pixel's
    offset (under half a grey level on average). A picture longer than :data:`MAX_TILES`
    squares is cropped first and each square resized: never a full-length copy of a thin
    picture scaled up."""
    width, height = image.size
    boxes = tile_boxes(width, height)
    side, long = min(width, height), max(width, height)
    if long > MAX_TILES * side:
        return [square(image.crop(box), size) for box in boxes]
    scale = size / side
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    resized = np.asarray(image.resize((new_w, new_h), Image.Resampling.BILINEAR), np.uint8)
    # spaced as tile_boxes spaces them, over the resized length: the last square ends at the
    # far edge exactly (scaling each box's start could round it a pixel short)
    span, last = max(new_w, new_h) - size, max(1, len(boxes) - 1)
    starts = [round(i * span / last) for i in range(len(boxes))]
    if width >= height:
        return [resized[:, x : x + size] for x in starts]
    return [resized[y : y + size] for y in starts]


def normalise(pixels: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 HWC (or NHWC) -> float32 CHW (NCHW) scaled to [0, 1] and standardised."""
    if pixels.dtype != np.uint8:
        if pixels.ndim == 4:
            return np.stack([normalise(p, mean, std) for p in pixels])
        tensor = (pixels.astype(np.float32).transpose(2, 0, 1) / 255.0 - mean) / std
        return np.ascontiguousarray(tensor, dtype=np.float32)
    # A uint8 channel has 256 values: look each one up in a table computed with the same
    # float32 arithmetic as above (bit-identical), one pass per channel instead of a float
    # copy, a transposed copy and three arithmetic passes (a quarter of the time).
    channels = pixels.shape[-1]
    table = (
        np.arange(256, dtype=np.float32) / 255.0
        - np.asarray(mean, dtype=np.float32).reshape(channels, 1)
    ) / np.asarray(std, dtype=np.float32).reshape(channels, 1)
    out = np.empty((*pixels.shape[:-3], channels, *pixels.shape[-3:-1]), dtype=np.float32)
    for c in range(channels):
        out[..., c, :, :] = table[c][pixels[..., c]]
    return out
