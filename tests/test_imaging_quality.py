"""``kennel.imaging.quality`` (OpenCV sums) gives the very numbers of its reference definition:
the exact integer arithmetic it replaced (a histogram for the light, numpy int16/int64 for the
Laplacian). Monitoring compares serving windows with references ingested before the change, so
the figures must not move, not even in the last bit."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kennel.imaging import STATS_SIDE, decode, dhash, quality


def _reference(image: Image.Image) -> tuple[float, float, float, str]:
    """The definitions as kennel computed them before OpenCV did (kept verbatim)."""
    grey = image if image.mode == "L" else image.convert("L")
    if max(grey.size) > STATS_SIDE:
        grey = grey.copy()
        grey.thumbnail((STATS_SIDE, STATS_SIDE), Image.Resampling.BILINEAR)
    levels = np.arange(256, dtype=np.int64)
    counts = np.asarray(grey.histogram(), dtype=np.int64)
    n = int(counts.sum())
    total = int(counts @ levels)
    squares = int(counts @ (levels * levels))
    mean, std = total / n, math.sqrt(max(squares * n - total * total, 0)) / n
    luma = np.asarray(grey)
    sharpness = 0.0
    if luma.shape[0] >= 3 and luma.shape[1] >= 3:
        wide = luma.astype(np.int16)
        lap = wide[:-2, 1:-1] + wide[2:, 1:-1]
        lap += wide[1:-1, :-2]
        lap += wide[1:-1, 2:]
        lap -= wide[1:-1, 1:-1] * 4
        flat = lap.ravel().astype(np.int32)
        k = flat.size
        t = int(flat.sum(dtype=np.int64))
        s = int((flat * flat).sum(dtype=np.int64))
        sharpness = max(s * k - t * t, 0) / (k * k)
    return mean, std, sharpness, dhash(grey)


def _measured(image: Image.Image) -> tuple[float, float, float, str]:
    q = quality(image)
    return q.brightness, q.contrast, q.sharpness, q.phash


def test_real_photos_measure_as_the_reference(shared_data: Path) -> None:
    with zipfile.ZipFile(shared_data / "dogs-vs-cats-mini.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.lower().endswith(".jpg"))[:120]
        assert len(names) >= 60
        for name in names:
            image = decode(archive.read(name)).image  # full size: the thumbnail path too
            assert _measured(image) == _reference(image), name


@pytest.mark.parametrize(
    ("size", "mode"),
    [
        ((1, 1), "RGB"),
        ((2, 7), "RGB"),
        ((3, 3), "RGB"),
        ((700, 3), "RGB"),
        ((3, 700), "L"),
        ((257, 999), "RGB"),  # shrunk to STATS_SIDE
        ((31, 32), "L"),
        ((256, 256), "L"),
        ((640, 480), "RGB"),
    ],
)
def test_odd_sizes_and_modes_measure_as_the_reference(size: tuple[int, int], mode: str) -> None:
    rng = np.random.default_rng(sum(size))
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    noise = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    assert _measured(noise) == _reference(noise)


@pytest.mark.parametrize("fill", [0, 255])
def test_flat_pictures_have_no_contrast_or_sharpness(fill: int) -> None:
    flat = Image.new("RGB", (64, 48), (fill, fill, fill))
    assert _measured(flat) == _reference(flat) == (float(fill), 0.0, 0.0, "0" * 16)


def test_extreme_edges_stay_exact() -> None:
    """A checkerboard of 0 and 255 gives the largest Laplacian values (+-1020) everywhere."""
    board = (np.indices((200, 200)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = Image.fromarray(board, "L")
    assert _measured(image) == _reference(image)
    assert _measured(image)[2] == 1020.0**2  # every value is +-1020, half of each
    stripes = np.zeros((200, 200), dtype=np.uint8)
    stripes[:, ::2] = 255
    image = Image.fromarray(stripes, "L")
    assert _measured(image) == _reference(image)


def test_other_modes_go_through_rgb_as_serving_does() -> None:
    rgb = Image.fromarray(np.random.default_rng(5).integers(0, 256, (90, 120, 3), np.uint8))
    for mode in ("RGBA", "P", "CMYK", "LA"):
        buffer = io.BytesIO()
        converted = rgb.convert(mode)
        converted.save(buffer, format="TIFF")
        image = decode(buffer.getvalue()).image
        assert image.mode == "RGB"
        assert _measured(image) == _reference(image), mode
