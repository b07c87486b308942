"""Explain and analyse: occlusion saliency through the served ONNX model for any logged
prediction, and error analysis of a labelled window (worst mistakes, confusions by slice)."""

from __future__ import annotations

import base64
import html
import io
from collections import Counter, defaultdict
from typing import Any

import numpy as np
from PIL import Image

from kennel.fsutil import KENNEL_PAGE
from kennel.monitor.window import Window
from kennel.portable import square
from kennel.serve.runtime import Predictor


def occlusion(predictor: Predictor, image: Image.Image, *, grid: int = 8) -> tuple[str, np.ndarray]:
    """The predicted label and a [grid, grid] map: how much the evidence for that label drops
    when each cell of the model's input is covered with the image's mean colour. Evidence is
    the label's log-odds against the other labels: unlike its probability it does not
    saturate, so a confident model's map still shows which cells it relies on."""
    size = predictor.bundle.image_size
    pixels = square(image, size)
    base = predictor.prepare_image(Image.fromarray(pixels)).tensor
    fill = predictor.prepare_image(
        Image.fromarray(np.full_like(pixels, pixels.reshape(-1, 3).mean(0).astype(np.uint8)))
    ).tensor
    edges = np.linspace(0, size, grid + 1).astype(int)
    batch = [base]
    for r in range(grid):
        for c in range(grid):
            covered = base.copy()
            ys, xs = slice(edges[r], edges[r + 1]), slice(edges[c], edges[c + 1])
            covered[:, ys, xs] = fill[:, ys, xs]
            batch.append(covered)
    logits, _ = predictor.infer(np.stack(batch))
    k = int(logits[0].argmax())
    others = np.delete(logits.astype(np.float64), k, axis=1)
    peak = others.max(axis=1, keepdims=True)
    rest = peak[:, 0] + np.log(np.exp(others - peak).sum(axis=1))  # log-sum-exp, stable
    evidence = logits[:, k] - rest
    drop = (evidence[0] - evidence[1:]).reshape(grid, grid)
    return predictor.bundle.labels[k], drop


def _png(image: Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def overlay_map(image: Image.Image, drop: np.ndarray, *, size: int = 256) -> Image.Image:
    """``image`` as the model sees it (square, ``size`` px) with the occlusion map ``drop``
    laid over it in red: the redder a cell, the more covering it lowers the evidence."""
    shown = Image.fromarray(square(image, size))
    heat = np.clip(drop / max(float(np.abs(drop).max()), 1e-6), 0, 1)
    heat_img = Image.fromarray((heat * 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.BILINEAR
    )
    red = np.zeros((size, size, 3), np.uint8)
    red[..., 0] = 255
    return Image.composite(
        Image.blend(shown, Image.fromarray(red), 0.6), shown, heat_img.point(lambda v: int(v * 0.9))
    )


def saliency_html(
    predictor: Predictor, image: Image.Image, prediction: dict[str, Any], *, grid: int = 8
) -> tuple[str, np.ndarray]:
    """A page with the input, the occlusion map laid over it, and the prediction."""
    label, drop = occlusion(predictor, image, grid=grid)
    size = 256
    shown = Image.fromarray(square(image, size))
    overlay = overlay_map(image, drop, size=size)
    esc = html.escape
    page = f"""<!doctype html><html><head><meta charset="utf-8">{KENNEL_PAGE}<title>saliency</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}figure{{display:inline-block}}</style>
</head><body><h1>Why {esc(label)}?</h1>
<p>prediction {esc(str(prediction.get("id", "")))}: {esc(label)} with confidence
{float(prediction.get("confidence", 0)):.3f}, model {esc(str(prediction.get("model", "")))}.
Red cells are the parts of the image whose occlusion lowers the evidence for it most.</p>
<figure><img src="data:image/png;base64,{_png(shown)}"><figcaption>input (as the model sees it)
</figcaption></figure>
<figure><img src="data:image/png;base64,{_png(overlay)}"><figcaption>occlusion saliency
({grid}x{grid})</figcaption></figure></body></html>"""
    return page, drop


def errors(window: Window, *, worst: int = 10) -> dict[str, Any]:
    """Worst labelled mistakes and confusions by slice (camera, brightness band)."""
    rows = [i for i, t in enumerate(window.truth) if t is not None]
    labels = window.labels
    confidence = window.confidence
    wrong = [i for i in rows if labels[i] != window.truth[i]]
    wrong.sort(key=lambda i: -confidence[i])
    bands = np.digitize(window.image_stats["brightness"], [60, 120, 180])
    names = ["dark", "dim", "normal", "bright"]
    by_slice: dict[str, dict[str, Any]] = defaultdict(lambda: {"n": 0, "errors": 0})
    confusions: Counter[str] = Counter()
    for i in rows:
        for key in (f"camera={window.sources[i]}", f"brightness={names[int(bands[i])]}"):
            by_slice[key]["n"] += 1
            by_slice[key]["errors"] += int(labels[i] != window.truth[i])
        if labels[i] != window.truth[i]:
            confusions[f"{window.truth[i]} -> {labels[i]}"] += 1
    for values in by_slice.values():
        values["error_rate"] = values["errors"] / values["n"] if values["n"] else 0.0
    return {
        "labelled": len(rows),
        "errors": len(wrong),
        "confusions": dict(confusions.most_common()),
        "slices": dict(sorted(by_slice.items())),
        "worst": [
            {"prediction_id": window.ids[i], "truth": window.truth[i], "predicted": labels[i],
             "confidence": float(confidence[i]), "source": window.sources[i]}
            for i in wrong[:worst]
        ],
    }  # fmt: skip
