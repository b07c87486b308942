"""Frames with no cat or dog in them, made on the spot: what the pet judgement must call "no
pet". Used by the tests and the video benchmark; nothing here is learned from.

Kinds: ``lawn`` (the park beside the animal in a real clip: the trees and lawn left of where
the dog walks, mirrored to a full frame), ``noise`` (a camera's worst night), ``gradient`` (a
lens cap, a sky), ``shapes`` (street furniture), ``text`` (an on-screen notice) and ``park``
(the simulator's empty park scene). ``grass`` is the hard case, kept out of :data:`KINDS`: the
out-of-focus foreground grass under the animal, a 640x144 strip stretched to a full frame;
blurred that far and re-encoded, it scores like a distant dog (see the video benchmark).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from kennel.video.synth import empty_park

KINDS = ("lawn", "noise", "gradient", "shapes", "text", "park")
HARD = ("grass",)


def _gradient(rng: np.random.Generator, width: int, height: int, k: int) -> np.ndarray:
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    if k % 2:
        t = np.linspace(0, 1, width)[None, :, None]
    else:
        t = np.linspace(0, 1, height)[:, None, None]
    return np.broadcast_to(a * (1 - t) + b * t, (height, width, 3)).astype(np.uint8)


def _shapes(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    image = np.full((height, width, 3), rng.integers(0, 256, 3), np.uint8)
    for _ in range(6):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.circle(image, centre, int(rng.integers(10, height // 3)), colour, -1)
        else:
            xs, ys = sorted(rng.integers(0, width, 2)), sorted(rng.integers(0, height, 2))
            cv2.rectangle(image, (int(xs[0]), int(ys[0])), (int(xs[1]), int(ys[1])), colour, -1)
    return image


def _text(k: int, width: int, height: int) -> np.ndarray:
    image = np.full((height, width, 3), 235, np.uint8)
    scale = height / 300
    for line in range(5):
        y = int(height * (0.17 + 0.17 * line))
        text = f"PARK GATE {k} OPENS 08:{line}0"
        cv2.putText(image, text, (20, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 2)
    return image


def frames(
    kind: str,
    count: int,
    *,
    seed: int = 0,
    size: tuple[int, int] = (640, 360),
    clip: Sequence[np.ndarray] = (),
) -> list[np.ndarray]:
    """``count`` RGB frames (uint8 [H, W, 3]) of ``kind``; ``lawn`` and ``grass`` are cut
    from the ``clip`` frames given (the shared dog clip: its dog stays right of 3/8 of the
    width and above 3/5 of the height)."""
    width, height = size
    rng = np.random.default_rng([seed, (*KINDS, *HARD).index(kind)])
    if kind in ("lawn", "grass"):
        if not clip:
            raise ValueError(f"{kind} frames are cut from a clip: pass its frames")
        step = max(1, len(clip) // count)
        picked = [np.ascontiguousarray(f) for f in list(clip)[::step][:count]]
        if kind == "grass":
            return [
                cv2.resize(np.ascontiguousarray(f[int(f.shape[0] * 0.6) :]), size) for f in picked
            ]
        out = []
        for f in picked:
            left = f[:, : f.shape[1] * 3 // 8]
            mirrored = np.hstack([left, left[:, ::-1]] * (f.shape[1] // (2 * left.shape[1]) + 1))
            out.append(cv2.resize(np.ascontiguousarray(mirrored[:, : f.shape[1]]), size))
        return out
    if kind == "noise":
        return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]
    if kind == "gradient":
        return [_gradient(rng, width, height, k) for k in range(count)]
    if kind == "shapes":
        return [_shapes(rng, width, height) for _ in range(count)]
    if kind == "text":
        return [_text(k, width, height) for k in range(count)]
    if kind == "park":
        return [
            cv2.resize(np.asarray(empty_park(seed * 1000 + k, height)), size) for k in range(count)
        ]
    raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
