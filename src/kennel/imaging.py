"""Safe image decoding and quality statistics, shared by ingest, training and serving.

``decode`` is the single definition of "this file as an RGB picture": EXIF orientation applied,
any mode (CMYK, 16-bit, palette, alpha, animated) normalised to 8-bit RGB, and hostile files
(truncated, empty, not an image, decompression bombs, formats outside the allow-list, crafted
files that break a decoder) rejected with a reason before work is done. It raises
``ImageRejected`` and nothing else; the decoding itself lives in the kennel-free
:mod:`kennel.portable`, so the embedded wheel rejects exactly what the service rejects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from kennel.portable import (
    FORMATS,
    MAX_PIXELS,
    Header,
    ImageRejected,
    decode_cost,
    decode_rgb,
    open_checked,
    probe,
    square,
)

__all__ = [
    "FORMATS",
    "Decoded",
    "Header",
    "ImageRejected",
    "Quality",
    "decode",
    "decode_cost",
    "dhash",
    "open_checked",
    "probe",
    "quality",
    "square",
]

DEFAULT_MAX_PIXELS = MAX_PIXELS
DEFAULT_MIN_SIDE = 32
STATS_SIDE = 256  # stats are computed on a copy no larger than this, for speed
_SWAPS_SIDES = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the picture by 90 degrees


@dataclass(frozen=True)
class Decoded:
    image: Image.Image  # RGB ("L" when decoded with grey=True), orientation applied
    format: str
    mode: str  # the file's own mode before normalisation
    width: int  # after orientation
    height: int
    frames: int


@dataclass(frozen=True)
class Quality:
    brightness: float  # mean luma, 0-255
    contrast: float  # luma standard deviation
    sharpness: float  # variance of the Laplacian of luma
    phash: str  # 64-bit difference hash, 16 hex digits


def decode(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = None,
    min_side: int = DEFAULT_MIN_SIDE,
    draft: tuple[int, int] | None = None,
    opened: tuple[Image.Image, Header] | None = None,
    grey: bool = False,
) -> Decoded:
    """Decode ``data`` to RGB or raise ImageRejected naming the problem.

    The header is checked before any pixel is decoded: at most ``max_pixels`` declared, and
    at most ``max_bytes`` of decode memory (:func:`decode_cost`: width x height x the bytes
    per pixel of the file's mode, plus the RGB result). ``draft`` lets JPEG decode at a
    reduced scale no smaller than the given size (the reported width and height are still
    the file's full size). ``opened``: ``open_checked``'s answer for these bytes, when the
    caller has checked the header already (see ``decode_rgb``). ``grey`` gives the
    picture's luma instead of RGB, all that :func:`quality` measures: a colour JPEG's comes
    straight from the decoder, cheaper than RGB and the same grey levels to within rounding
    (``portable.decode_rgb``).
    """
    rgb, header, orientation, frames = decode_rgb(
        data,
        max_pixels=max_pixels,
        max_bytes=max_bytes,
        min_side=min_side,
        draft=draft,
        opened=opened,
        grey=grey,
    )
    width, height = header.width, header.height
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    return Decoded(
        image=rgb, format=header.format, mode=header.mode, width=width, height=height, frames=frames
    )


def quality(image: Image.Image, *, phash: bool = True) -> Quality:
    """Light, contrast and sharpness of ``image``, and its difference hash (``phash=False``:
    an empty string, for callers that do not dedupe, such as the Predictor).

    Measured on the image's luma (a grey ``image`` is used as it is), shrunk to at most
    ``STATS_SIDE`` a side. The sums are exact integers (OpenCV's sums of values and of
    squares, each at most 2^37, so exact in its double accumulators), so the figures are the
    float definitions to within rounding and the same bits as the reference arithmetic
    (``tests/test_imaging_quality.py``), at a fraction of the cost of float arrays."""
    grey = image if image.mode == "L" else image.convert("L")
    if max(grey.size) > STATS_SIDE:
        grey = grey.copy()
        grey.thumbnail((STATS_SIDE, STATS_SIDE), Image.Resampling.BILINEAR)
    luma = np.asarray(grey)
    brightness, contrast = _mean_std(luma)
    return Quality(
        brightness=brightness,
        contrast=contrast,
        sharpness=_laplacian_variance(luma),
        phash=dhash(grey) if phash else "",
    )


def _moments(values: np.ndarray) -> tuple[int, int, int]:
    """How many ``values`` (8-bit, or 16-bit Laplacian values), their sum and their sum of
    squares, as exact integers."""
    import cv2  # imported on first use: the CLI's start-up does not pay for it

    n = values.shape[0] * values.shape[1]
    return n, round(cv2.sumElems(values)[0]), round(cv2.norm(values, cv2.NORM_L2SQR))


def _mean_std(luma: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of an 8-bit grey image."""
    n, total, squares = _moments(luma)
    if n == 0:
        return 0.0, 0.0
    return total / n, math.sqrt(max(squares * n - total * total, 0)) / n


def _laplacian_variance(luma: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over the interior pixels (0 when there are none)."""
    if luma.shape[0] < 3 or luma.shape[1] < 3:
        return 0.0
    import cv2

    # ksize=1 is the 4-neighbour kernel [[0, 1, 0], [1, -4, 1], [0, 1, 0]]; each value is
    # within -1020..1020, exact in 16 bits; the border rows and columns are left out
    lap = cv2.Laplacian(luma, cv2.CV_16S, ksize=1)[1:-1, 1:-1]
    k, total, squares = _moments(lap)
    return max(squares * k - total * total, 0) / (k * k)


def dhash(grey: Image.Image) -> str:
    """64-bit difference hash: does each of 8x8 cells get brighter to the right?"""
    small = np.asarray(grey.resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()  # the first bit is the most significant
    return np.packbits(bits).tobytes().hex()
