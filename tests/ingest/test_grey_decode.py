"""Ingest measures a file's luma decoded straight from the JPEG (no chroma): it must reject
exactly what a full RGB decode rejects and measure what the RGB picture measures."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from kennel.imaging import ImageRejected, decode, quality
from kennel.ingest.validate import OK, QUARANTINED, Limits, check
from tests.helpers import exif_rotated_jpeg, jpeg

LIMITS = Limits(labels=("cat",), min_side=32, max_pixels=40_000_000, max_file_bytes=1 << 26)


def photo(width: int = 320, height: int = 240, seed: int = 0, **save: object) -> bytes:
    """A JPEG with structure (gradients, edges, texture), not flat noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) % 64 * 4], axis=-1)
    base[height // 3 : height // 2, width // 4 : width // 2] = (250, 240, 30)
    arr = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(arr, "RGB").save(out, "JPEG", quality=88, **save)
    return out.getvalue()


def rgb_outcome(data: bytes) -> str:
    """What a full RGB decode says of ``data``: "ok" or its rejection."""
    try:
        decode(data, min_side=LIMITS.min_side)
    except ImageRejected as exc:
        return str(exc)
    return "ok"


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("size", [(320, 240), (1200, 900)])  # 1200x900: decoded at 1/4 scale
def test_truncated_and_corrupt_jpegs_are_judged_as_a_full_decode_judges_them(
    progressive: bool, size: tuple[int, int]
) -> None:
    good = photo(*size, progressive=progressive)
    # the entropy-coded data overwritten with bytes that break its Huffman codes
    start = good.index(b"\xff\xda") + 20
    corrupt = good[:start] + bytes(range(256)) * 4 + good[start + 1024 :]
    truncated = [good[: len(good) // 2], good[: len(good) - 200], good[:600]]
    for bad in (*truncated, corrupt):
        result, kept = check(0, "cat/bad.jpg", "cat", bad, LIMITS)
        assert (result.reason or "ok") == rgb_outcome(bad)
        assert kept is (None if result.status == QUARANTINED else bad)
    for bad in truncated:  # a file cut short is always refused, whatever the decode scale
        result, _ = check(0, "cat/bad.jpg", "cat", bad, LIMITS)
        assert result.status == QUARANTINED
        assert (result.reason or "").startswith("corrupt or truncated image")
    if size == (320, 240):  # libjpeg resynchronises after garbage in a large baseline file
        result, _ = check(0, "cat/bad.jpg", "cat", corrupt, LIMITS)
        assert result.status == QUARANTINED
        assert (result.reason or "").startswith("corrupt or truncated image")
    result, kept = check(0, "cat/good.jpg", "cat", good, LIMITS)
    assert result.status == OK and kept == good


@pytest.mark.parametrize("subsampling", [0, 2])  # 4:4:4 and 4:2:0 chroma
def test_luma_decode_measures_what_the_rgb_picture_measures(subsampling: int) -> None:
    for seed in range(4):
        data = photo(seed=seed, subsampling=subsampling)
        grey = decode(data, grey=True)
        rgb = decode(data)
        assert grey.image.mode == "L" and rgb.image.mode == "RGB"
        assert (grey.width, grey.height, grey.mode) == (rgb.width, rgb.height, rgb.mode)
        a, b = quality(grey.image), quality(rgb.image)
        assert a.brightness == pytest.approx(b.brightness, abs=0.1)
        assert a.contrast == pytest.approx(b.contrast, rel=0.005)
        # RGB clamps the out-of-gamut colours JPEG compression makes of saturated noise, and
        # rounds twice: a few % on these synthetic pictures (0.6 % at the 95th percentile of
        # the real photos, median 0.0 %)
        assert a.sharpness == pytest.approx(b.sharpness, rel=0.05)
        assert bin(int(a.phash, 16) ^ int(b.phash, 16)).count("1") <= 1


def test_luma_decode_applies_the_exif_orientation() -> None:
    data = exif_rotated_jpeg(80, 40)
    grey, rgb = decode(data, grey=True), decode(data)
    assert grey.image.size == rgb.image.size == (40, 80)
    assert (grey.width, grey.height) == (40, 80)


def test_files_that_are_not_colour_jpegs_give_the_luma_of_their_rgb() -> None:
    cmyk = io.BytesIO()
    Image.new("CMYK", (64, 48), (0, 200, 100, 20)).save(cmyk, "JPEG")
    rgba = io.BytesIO()
    Image.new("RGBA", (64, 48), (255, 0, 0, 128)).save(rgba, "PNG")
    grey_jpeg = io.BytesIO()
    Image.open(io.BytesIO(jpeg(64, 48))).convert("L").save(grey_jpeg, "JPEG")
    for data in (cmyk.getvalue(), rgba.getvalue(), grey_jpeg.getvalue()):
        grey = decode(data, grey=True).image
        assert grey.mode == "L"
        assert np.array_equal(np.asarray(grey), np.asarray(decode(data).image.convert("L")))


def reference(image: Image.Image) -> tuple[float, float, float]:
    """The statistics as floats, as they were first defined."""
    luma = np.asarray(image.convert("L"), dtype=np.float64)
    lap = (
        -4.0 * luma[1:-1, 1:-1]
        + luma[:-2, 1:-1]
        + luma[2:, 1:-1]
        + luma[1:-1, :-2]
        + luma[1:-1, 2:]
    )
    return float(luma.mean()), float(luma.std()), float(lap.var()) if lap.size else 0.0


@pytest.mark.parametrize("size", [(200, 200), (256, 100), (3, 3), (2, 50)])
def test_quality_in_integers_matches_the_float_definition(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(size))
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    got = quality(image)
    want = reference(image)
    assert (got.brightness, got.contrast, got.sharpness) == pytest.approx(want, rel=1e-9)
    assert quality(image.convert("L")) == got  # a grey image is measured as it is
