"""The animals of the park simulator (:mod:`kennel.datasets.synth`): a cat or a dog drawn from
the same fur palette, pose range and size, told apart only by shape (ears, muzzle, whiskers,
tail, legs), so that colour is never a class cue."""

from __future__ import annotations

import math

import numpy as np
from PIL import ImageDraw

FUR = [
    (30, 28, 26),
    (235, 232, 225),
    (128, 128, 130),
    (120, 80, 45),
    (205, 120, 50),
    (225, 200, 160),
    (90, 70, 55),
    (170, 150, 130),
]
RGB = tuple[int, int, int]


def jitter(rng: np.random.Generator, colour: RGB, amount: int) -> RGB:
    r, g, b = (min(255, max(0, c + int(rng.integers(-amount, amount + 1)))) for c in colour)
    return (r, g, b)


def darker(colour: RGB, factor: float) -> RGB:
    r, g, b = (int(c * factor) for c in colour)
    return (r, g, b)


def _tail(
    draw: ImageDraw.ImageDraw,
    start: tuple[float, float],
    angles: tuple[float, float],
    length: float,
    width: float,
    colour: RGB,
    facing: int,
) -> None:
    points = []
    for k in range(9):
        t = k / 8
        angle = angles[0] + (angles[1] - angles[0]) * t
        points.append((start[0] - facing * length * t * math.cos(angle), start[1]))
    y = start[1]
    for k in range(1, 9):
        t = k / 8
        angle = angles[0] + (angles[1] - angles[0]) * t
        y -= length / 8 * math.sin(angle)
        points[k] = (points[k][0], y)
    draw.line(points, fill=colour, width=max(1, round(width)), joint="curve")


def draw_animal(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    label: str,
    cx: float,
    ground: float,
    s: float,
) -> None:
    facing = 1 if rng.random() < 0.5 else -1
    fur = jitter(rng, FUR[int(rng.integers(len(FUR)))], 18)
    accent = jitter(rng, FUR[int(rng.integers(len(FUR)))], 18) if rng.random() < 0.4 else fur
    dark = darker(fur, 0.55)
    is_cat = label == "cat"
    length = s * (rng.uniform(0.85, 1.0) if is_cat else rng.uniform(1.0, 1.2))
    height = s * (rng.uniform(0.34, 0.42) if is_cat else rng.uniform(0.42, 0.52))
    leg_len = s * (rng.uniform(0.22, 0.3) if is_cat else rng.uniform(0.3, 0.4))
    leg_w = s * (rng.uniform(0.05, 0.07) if is_cat else rng.uniform(0.09, 0.12))
    body_bottom = ground - leg_len
    body = [cx - length / 2, body_bottom - height, cx + length / 2, body_bottom]
    # shadow, legs, tail behind the body
    draw.ellipse(
        [cx - length * 0.6, ground - s * 0.06, cx + length * 0.6, ground + s * 0.06],
        fill=(40, 60, 35),
    )
    for fx in (-0.38, -0.22, 0.22, 0.38):
        x = cx + fx * length + rng.uniform(-0.03, 0.03) * length
        draw.rectangle(
            [x - leg_w / 2, body_bottom - height * 0.3, x + leg_w / 2, ground],
            fill=fur if fx * facing > 0 else dark,
        )
    rear = (cx - facing * length * 0.45, body_bottom - height * 0.75)
    if is_cat:
        _tail(
            draw,
            rear,
            (rng.uniform(0.2, 0.6), rng.uniform(1.3, 1.9)),
            s * rng.uniform(0.55, 0.75),
            s * 0.05,
            accent,
            facing,
        )
    else:
        _tail(
            draw,
            rear,
            (rng.uniform(0.4, 0.9), rng.uniform(0.6, 1.1)),
            s * rng.uniform(0.25, 0.35),
            s * 0.09,
            accent,
            facing,
        )
    draw.ellipse(body, fill=fur)
    if accent != fur:  # a patch, on cats and dogs alike
        px = cx + rng.uniform(-0.2, 0.2) * length
        draw.ellipse(
            [
                px - length * 0.15,
                body[1] + height * 0.1,
                px + length * 0.15,
                body[1] + height * 0.6,
            ],
            fill=accent,
        )
    # head
    r = s * rng.uniform(0.17, 0.21)
    hx = cx + facing * (length * 0.5 + r * 0.2)
    hy = body_bottom - height - r * rng.uniform(0.3, 0.7)
    if is_cat:
        ear_h = r * rng.uniform(0.9, 1.2)
        for side in (-0.55, 0.45):
            ex = hx + side * r
            draw.polygon(
                [
                    (ex - r * 0.35, hy - r * 0.6),
                    (ex + r * 0.35, hy - r * 0.6),
                    (ex + r * 0.05, hy - r * 0.6 - ear_h),
                ],
                fill=fur,
            )
            draw.polygon(
                [
                    (ex - r * 0.15, hy - r * 0.65),
                    (ex + r * 0.18, hy - r * 0.65),
                    (ex + r * 0.03, hy - r * 0.5 - ear_h * 0.8),
                ],
                fill=(220, 150, 160),
            )
    draw.ellipse([hx - r, hy - r, hx + r, hy + r], fill=fur)
    if is_cat:
        mx = hx + facing * r * 0.55
        draw.ellipse(
            [mx - r * 0.3, hy, mx + r * 0.3, hy + r * 0.45], fill=jitter(rng, (230, 225, 215), 10)
        )
        draw.polygon(
            [(mx - r * 0.1, hy + r * 0.05), (mx + r * 0.1, hy + r * 0.05), (mx, hy + r * 0.18)],
            fill=(200, 110, 120),
        )
        for dy in (-0.05, 0.12, 0.28):  # whiskers
            draw.line(
                [(mx, hy + r * 0.2), (mx + facing * r * 1.1, hy + r * dy)],
                fill=(235, 235, 235),
                width=1,
            )
        eye_w = r * 0.22
    else:
        snout_len = r * rng.uniform(0.9, 1.3)
        sx0, sx1 = sorted((hx + facing * r * 0.3, hx + facing * (r * 0.3 + snout_len)))
        draw.rounded_rectangle([sx0, hy - r * 0.05, sx1, hy + r * 0.55], radius=r * 0.25, fill=fur)
        nx = hx + facing * (r * 0.3 + snout_len)
        draw.ellipse([nx - r * 0.2, hy - r * 0.05, nx + r * 0.15, hy + r * 0.25], fill=(20, 20, 20))
        if rng.random() < 0.3:
            draw.ellipse(
                [
                    nx - facing * r * 0.5 - r * 0.12,
                    hy + r * 0.45,
                    nx - facing * r * 0.5 + r * 0.12,
                    hy + r * 0.8,
                ],
                fill=(215, 90, 110),
            )
        ear = accent if accent != fur else dark
        for side in (-1, 1):
            ex = hx + side * r * 0.75
            draw.ellipse([ex - r * 0.3, hy - r * 0.7, ex + r * 0.3, hy + r * 0.65], fill=ear)
        eye_w = r * 0.18
    ex = hx + facing * r * 0.25
    draw.ellipse([ex - eye_w / 2, hy - r * 0.35, ex + eye_w / 2, hy - r * 0.1], fill=(25, 25, 20))
