"""Safe image decoding and quality statistics, shared by ingest, training and serving.

``decode`` is the single definition of "this file as an RGB picture": EXIF orientation applied,
any mode (CMYK, 16-bit, palette, alpha, animated) normalised to 8-bit RGB, and hostile files
(truncated, empty, not an image, decompression bombs) rejected with a reason before work is done.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kennel.portable import square, to_rgb

__all__ = ["Decoded", "ImageRejected", "Quality", "decode", "dhash", "quality", "square"]

DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MIN_SIDE = 32
STATS_SIDE = 256  # stats are computed on a copy no larger than this, for speed
_EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the picture by 90 degrees


class ImageRejected(ValueError):
    """The bytes are not an acceptable image; ``str()`` is the quarantine reason."""


@dataclass(frozen=True)
class Decoded:
    image: Image.Image  # RGB, orientation applied
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
    min_side: int = DEFAULT_MIN_SIDE,
    draft: tuple[int, int] | None = None,
) -> Decoded:
    """Decode ``data`` to RGB or raise ImageRejected naming the problem.

    ``draft`` lets JPEG decode at a reduced scale no smaller than the given size (the
    reported width and height are still the file's full size).
    """
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format or "unknown"
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(
                    f"decompression bomb: declares {width}x{height} pixels (limit {max_pixels})"
                )
            if min(width, height) < min_side:
                raise ImageRejected(f"too small: {width}x{height} (minimum side {min_side})")
            frames = int(getattr(image, "n_frames", 1) or 1)
            if frames > 1:
                image.seek(0)
            mode = image.mode
            if draft is not None and fmt == "JPEG":
                image.draft("RGB", draft)
            image.load()
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            rgb = to_rgb(ImageOps.exif_transpose(image))
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected("not an image: no decoder recognises the bytes") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(f"corrupt or truncated image: {exc}") from exc
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    return Decoded(image=rgb, format=fmt, mode=mode, width=width, height=height, frames=frames)


def quality(image: Image.Image) -> Quality:
    grey = image.convert("L")
    if max(grey.size) > STATS_SIDE:
        grey = grey.copy()
        grey.thumbnail((STATS_SIDE, STATS_SIDE), Image.Resampling.BILINEAR)
    luma = np.asarray(grey, dtype=np.float32)
    lap = (
        -4.0 * luma[1:-1, 1:-1]
        + luma[:-2, 1:-1]
        + luma[2:, 1:-1]
        + luma[1:-1, :-2]
        + luma[1:-1, 2:]
    )
    return Quality(
        brightness=float(luma.mean()),
        contrast=float(luma.std()),
        sharpness=float(lap.var()) if lap.size else 0.0,
        phash=dhash(grey),
    )


def dhash(grey: Image.Image) -> str:
    """64-bit difference hash: does each of 8x8 cells get brighter to the right?"""
    small = np.asarray(grey.resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"
