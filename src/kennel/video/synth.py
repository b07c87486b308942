"""``kennel data synth-video``: CCTV-like clips with a known ground-truth timeline.

Each segment shows one image (a cat, a dog, or the empty park) under a slow pan and zoom, with
sensor noise, a timestamp and the day or night look of the camera, so a watcher's events can
be checked against the timeline the clip was made from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from kennel.datasets import synth
from kennel.errors import ConfigError
from kennel.fsutil import write_text_atomic


@dataclass(frozen=True)
class Segment:
    label: str  # a class label, or "empty"
    start: float
    end: float
    source: str  # the image shown (dataset uri, or "synth:park:SEED")


def _frame(
    base: np.ndarray, u: float, size: int, rng: np.random.Generator, scenario: str
) -> np.ndarray:
    side = base.shape[0]
    crop = side * (1.0 - 0.1 * u)  # a slow zoom in...
    cx = side / 2 + (side - crop) / 2 * (2 * u - 1)  # ...while panning left to right
    cy = side / 2
    x0, y0 = int(cx - crop / 2), int(cy - crop / 2)
    view = base[y0 : y0 + int(crop), x0 : x0 + int(crop)]
    out = np.asarray(cv2.resize(view, (size, size), interpolation=cv2.INTER_AREA), np.float32)
    if scenario == "night":
        grey = out.mean(axis=2, keepdims=True)
        out = grey * np.array([0.27, 0.3, 0.27], dtype=np.float32)
        out += rng.normal(0, 12, out.shape).astype(np.float32)
    else:
        out += rng.normal(0, 3, out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def check_out(out: Path) -> None:
    """The clip is MPEG-4 and named so: a ``.avi`` held MPEG-4 under a name that tells players
    (and ``kennel watch --out``'s rule) otherwise."""
    if out.is_dir():
        raise ConfigError(f"{out} is a folder; name a .mp4 file")
    if out.suffix.lower() != ".mp4":
        raise ConfigError(f"{out}: the clip is MPEG-4; name a .mp4 file")


def make_clip(
    out: Path,
    shots: list[tuple[str, Image.Image, str]],
    *,
    seconds: float = 3.0,
    fps: float = 10.0,
    size: int = 224,
    scenario: str = "day",
    seed: int = 0,
) -> list[Segment]:
    """Write ``out`` (mp4) from (label, image, source) shots; returns the timeline."""
    if scenario not in ("day", "night"):
        raise ConfigError(f"--scenario: expected day or night, got {scenario!r}")
    if not shots:
        raise ConfigError("a clip needs at least one segment")
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps, (size, size))
    if not writer.isOpened():
        raise ConfigError(f"cannot write video {out}")
    rng = np.random.default_rng(seed)
    per = max(1, round(seconds * fps))
    timeline, frame_no = [], 0
    try:
        for label, image, source in shots:
            side = int(size * 1.1)
            base = np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.BICUBIC))
            start = frame_no / fps
            for k in range(per):
                rgb = _frame(base, k / max(1, per - 1), size, rng, scenario)
                stamp = f"CAM-01 {frame_no / fps:06.1f}s"
                cv2.putText(rgb, stamp, (4, 12), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 255), 1)
                writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                frame_no += 1
            timeline.append(Segment(label, round(start, 3), round(frame_no / fps, 3), source))
    finally:
        writer.release()
    tmp.replace(out)
    write_text_atomic(
        timeline_path(out),
        json.dumps({"fps": fps, "segments": [asdict(s) for s in timeline]}, indent=2) + "\n",
    )
    return timeline


def timeline_path(clip: Path) -> Path:
    return clip.with_suffix(".timeline.json")


def load_timeline(clip: Path) -> list[Segment]:
    data = json.loads(timeline_path(clip).read_text())
    return [Segment(**s) for s in data["segments"]]


def empty_park(seed: int, size: int = 200) -> Image.Image:
    """A park scene with no animal, from the simulator."""
    rng = np.random.default_rng([seed, 7])
    index = int(rng.integers(1 << 30))
    image, _ = synth.scene(index, seed=seed, empty=1.0, size=size)
    return image


def plan(labels: list[str], segments: int, seed: int) -> list[str]:
    """A segment order cycling through the labels (and the empty park) without repeats."""
    rng = np.random.default_rng(seed)
    order: list[str] = []
    pool = [*labels, synth.EMPTY] if synth.EMPTY not in labels else list(labels)
    while len(order) < segments:
        choice = [c for c in pool if not order or c != order[-1]]
        order.append(choice[int(rng.integers(len(choice)))])
    return order
