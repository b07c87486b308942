"""The pet park simulator: procedurally drawn cats and dogs in CCTV-like park scenes.

Cats and dogs share one fur palette, pose range and scene distribution; they differ only in
shape: pointed upright ears, a short muzzle, whiskers and a long thin raised tail for cats;
floppy hanging ears, a long snout with a dark nose, a thick short tail and sturdier legs for
dogs. Scenarios shift the image distribution the way real cameras do (night: dark, grey and
noisy; fog: washed out; rain: streaks and dimming), which monitoring later has to notice.
Every image is a pure function of (seed, scenario, index). The animals are drawn by
:mod:`kennel.datasets.animals`, the park and the camera here.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import multiprocessing
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from kennel.datasets.animals import darker, draw_animal, jitter
from kennel.fsutil import write_atomic, write_text_atomic

SCENARIOS = ("day", "night", "fog", "rain")
LABELS = ("cat", "dog")
EMPTY = "empty"  # a scene with no animal: lets a model learn to say "no pet"
MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class SynthItem:
    relpath: str
    label: str
    scenario: str
    seed: int
    index: int


def _background(rng: np.random.Generator, size: int) -> tuple[Image.Image, int]:
    horizon = int(size * rng.uniform(0.3, 0.5))
    top = np.array([rng.uniform(90, 140), rng.uniform(150, 190), rng.uniform(215, 250)])
    low = np.array([rng.uniform(180, 220), rng.uniform(205, 230), rng.uniform(225, 250)])
    grass_hi = np.array([rng.uniform(70, 110), rng.uniform(130, 170), rng.uniform(50, 80)])
    grass_lo = grass_hi * rng.uniform(0.6, 0.8)
    t_sky = np.linspace(0, 1, horizon)[:, None]
    t_grass = np.linspace(0, 1, size - horizon)[:, None]
    column = np.vstack([top + (low - top) * t_sky, grass_hi + (grass_lo - grass_hi) * t_grass])
    field = np.repeat(column.astype(np.float32)[:, None, :], size, axis=1)
    field[horizon:] += _noise(rng, 9.0, (size - horizon, size, 1))
    image = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    if rng.random() < 0.6:  # a gravel path
        x0 = rng.uniform(0.1, 0.9) * size
        w0, w1 = size * rng.uniform(0.02, 0.05), size * rng.uniform(0.2, 0.4)
        x1 = x0 + rng.uniform(-0.4, 0.4) * size
        path_colour = jitter(rng, (176, 160, 130), 20)
        draw.polygon(
            [(x0 - w0, horizon), (x0 + w0, horizon), (x1 + w1, size), (x1 - w1, size)],
            fill=path_colour,
        )
    for _ in range(int(rng.integers(0, 4))):  # trees and bushes on the horizon
        x = rng.uniform(0, size)
        h = size * rng.uniform(0.1, 0.3)
        trunk = jitter(rng, (90, 65, 40), 15)
        draw.rectangle([x - h * 0.06, horizon - h * 0.5, x + h * 0.06, horizon + 2], fill=trunk)
        leaves = jitter(rng, (45, 105, 45), 25)
        draw.ellipse(
            [x - h * 0.45, horizon - h * 1.1, x + h * 0.45, horizon - h * 0.35], fill=leaves
        )
    if rng.random() < 0.35:  # a bench
        x = rng.uniform(0.05, 0.75) * size
        y = horizon + rng.uniform(0.05, 0.2) * size
        w = size * rng.uniform(0.15, 0.25)
        wood = jitter(rng, (120, 85, 50), 20)
        draw.rectangle([x, y, x + w, y + w * 0.12], fill=wood)
        draw.rectangle([x, y - w * 0.25, x + w, y - w * 0.15], fill=wood)
        for leg in (x + w * 0.05, x + w * 0.9):
            draw.rectangle([leg, y, leg + w * 0.05, y + w * 0.3], fill=darker(wood, 0.6))
    return image, horizon


@functools.cache
def _noise_bank() -> np.ndarray:
    return np.random.default_rng(20260101).standard_normal(1 << 22, dtype=np.float32)


def _noise(rng: np.random.Generator, sigma: float, shape: tuple[int, ...]) -> np.ndarray:
    """Sensor noise: a random window of a fixed Gaussian bank (10x cheaper than fresh draws,
    and still a pure function of the image's rng)."""
    bank = _noise_bank()
    n = math.prod(shape)
    start = int(rng.integers(0, len(bank) - n))
    return bank[start : start + n].reshape(shape) * np.float32(sigma)


def _scenario(image: Image.Image, rng: np.random.Generator, scenario: str) -> Image.Image:
    arr = np.asarray(image, dtype=np.float32)
    size = arr.shape[0]
    if scenario == "day":
        arr = arr * np.float32(rng.uniform(0.9, 1.12)) + _noise(rng, rng.uniform(2, 5), arr.shape)
    elif scenario == "night":  # infra-red camera: grey-green, dark, grainy
        grey = arr.mean(axis=2, keepdims=True)
        tint = np.array([0.9, 1.0, 0.9], dtype=np.float32) * np.float32(rng.uniform(0.22, 0.35))
        arr = grey * tint + _noise(rng, rng.uniform(10, 16), arr.shape)
    elif scenario == "fog":
        top, bottom = rng.uniform(0.65, 0.8), rng.uniform(0.4, 0.55)
        veil = np.linspace(top, bottom, size, dtype=np.float32)[:, None, None]
        fog = np.array([205.0, 208.0, 212.0], dtype=np.float32)
        arr = arr * (1 - veil) + fog * veil + _noise(rng, 3.0, arr.shape)
    elif scenario == "rain":
        rained = image.copy()
        draw = ImageDraw.Draw(rained)
        for _ in range(int(rng.integers(80, 160))):
            x, y = rng.uniform(0, size, 2)
            draw.line([(x, y), (x - size * 0.02, y + size * 0.08)], fill=(200, 205, 215), width=1)
        arr = np.asarray(rained, dtype=np.float32) * np.float32(rng.uniform(0.65, 0.8))
        arr = arr + _noise(rng, 5.0, arr.shape)
    else:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _overlay(image: Image.Image, rng: np.random.Generator) -> None:
    draw = ImageDraw.Draw(image)
    cam, month, day, hour, minute = (
        int(rng.integers(lo, hi)) for lo, hi in ((1, 9), (1, 13), (1, 29), (0, 24), (0, 60))
    )
    stamp = f"CAM-{cam:02d} 2026-{month:02d}-{day:02d} {hour:02d}:{minute:02d}"
    draw.text((4, 3), stamp, fill=(255, 255, 255))


def _rng(seed: int, scenario: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(scenario.encode()), index])


def render(
    index: int, *, seed: int, scenario: str = "day", size: int = 200, empty: float = 0.0
) -> tuple[str, bytes]:
    """(label, JPEG bytes) of image ``index``; identical for identical arguments. A share
    ``empty`` of the scenes has no animal and the label ``empty``."""
    image, label, rng = _draw(index, seed, scenario, size, empty)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=int(rng.integers(72, 92)))
    return label, out.getvalue()


def scene(
    index: int, *, seed: int, scenario: str = "day", size: int = 200, empty: float = 0.0
) -> tuple[Image.Image, str]:
    """The RGB scene behind :func:`render` (before JPEG) and its label."""
    image, label, _ = _draw(index, seed, scenario, size, empty)
    return image, label


def _draw(
    index: int, seed: int, scenario: str, size: int, empty: float
) -> tuple[Image.Image, str, np.random.Generator]:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    rng = _rng(seed, scenario, index)
    label = LABELS[int(rng.integers(2))]
    if empty > 0 and rng.random() < empty:
        label = EMPTY
    image, horizon = _background(rng, size)
    if label != EMPTY:
        draw = ImageDraw.Draw(image)
        scale = size * rng.uniform(0.32, 0.5)
        ground = rng.uniform(horizon + 0.25 * size, size * 0.97)
        cx = rng.uniform(0.3, 0.7) * size
        draw_animal(draw, rng, label, cx, ground, scale)
    image = image.filter(ImageFilter.BoxBlur(rng.uniform(0.3, 0.9)))  # camera softness
    image = _scenario(image, rng, scenario)
    _overlay(image, rng)
    return image, label, rng


def _write_range(args: tuple[str, int, int, int, str, int, float]) -> list[SynthItem]:
    out, start, stop, seed, scenario, size, empty = args
    root = Path(out)
    items = []
    for index in range(start, stop):
        label, data = render(index, seed=seed, scenario=scenario, size=size, empty=empty)
        relpath = f"{label}/{scenario}-{seed}-{index:06d}.jpg"
        write_atomic(root / relpath, data, fsync=False)
        items.append(SynthItem(relpath, label, scenario, seed, index))
    return items


def generate(
    out: Path,
    count: int,
    *,
    seed: int = 0,
    scenario: str = "day",
    size: int = 200,
    start: int = 0,
    workers: int = 1,
    empty: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> list[SynthItem]:
    """Write ``count`` images in ImageFolder layout under ``out`` and merge them into
    ``out/manifest.csv`` (uri, label, scenario, seed, index: usable as a manifest source).
    A share ``empty`` of them shows the park with no animal (label ``empty``)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    out.mkdir(parents=True, exist_ok=True)
    step = 250
    tasks = [
        (str(out), lo, min(lo + step, start + count), seed, scenario, size, empty)
        for lo in range(start, start + count, step)
    ]
    items: list[SynthItem] = []
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            items.extend(_write_range(task))
            if progress:
                progress(len(items), count)
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for batch in pool.map(_write_range, tasks):
                items.extend(batch)
                if progress:
                    progress(len(items), count)
    _merge_manifest(out / MANIFEST, items)
    return items


def _merge_manifest(path: Path, items: list[SynthItem]) -> None:
    rows: dict[str, dict[str, str]] = {}
    if path.exists():
        with open(path, newline="", encoding="utf-8") as handle:
            rows = {row["uri"]: row for row in csv.DictReader(handle)}
    for item in items:
        rows[item.relpath] = {
            "uri": item.relpath,
            "label": item.label,
            "scenario": item.scenario,
            "seed": str(item.seed),
            "index": str(item.index),
        }
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["uri", "label", "scenario", "seed", "index"])
    writer.writeheader()
    for uri in sorted(rows):
        writer.writerow(rows[uri])
    write_text_atomic(path, buffer.getvalue())
