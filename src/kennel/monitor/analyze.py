"""Explain and analyse: occlusion saliency through the served ONNX model for any logged
prediction, and error analysis of a labelled window (worst mistakes, confusions by slice)."""

from __future__ import annotations

import base64
import html
import io
from collections import Counter, defaultdict
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from kennel.errors import NotFoundError
from kennel.fsutil import KENNEL_PAGE
from kennel.monitor.window import Window
from kennel.serve.runtime import Predictor

_OCCLUDED_AT_ONCE = 64  # covered pictures prepared and inferred together


def _cells(height: int, width: int, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """The grid's row and column edges over a ``height`` x ``width`` picture (a cell of a grid
    finer than the picture covers no pixel)."""
    return (np.linspace(0, height, grid + 1).astype(int),
            np.linspace(0, width, grid + 1).astype(int))  # fmt: skip


def occlusion(
    predictor: Predictor, image: Image.Image, *, grid: int = 8, label: str | None = None
) -> tuple[str, np.ndarray]:
    """The label explained (``label``, else the one predicted) and a [grid, grid] map over the
    whole picture: how much the evidence for that label drops when each cell is covered with
    the picture's mean colour (0 for a cell that covers no pixel). Each covered picture goes
    through the bundle's frame policy as served (its centre square, or the letterbox and tiles
    of a wide frame, the policy picking the view that answers), so a pet at the edge of a wide
    CCTV frame is explained where it is. Evidence is the label's log-odds against the others
    in the answering view's logits: unlike its probability it does not saturate, so a
    confident model's map still shows which cells it relies on. A picture larger than twice
    the model's input on its shorter side is shrunk to that first: the views the policy cuts
    from it are the same to within resampling, at a fraction of the cost (a 40 MP photo took
    seconds per covered copy)."""
    labels = predictor.bundle.labels
    if label is not None and label not in labels:
        raise NotFoundError(
            f"label {label!r} is not one of {predictor.name}@{predictor.version}'s labels "
            f"({', '.join(labels)})"
        )
    picture = image.convert("RGB")
    most = 2 * predictor.bundle.image_size
    if min(picture.size) > most:
        picture = ImageOps.cover(picture, (most, most), method=Image.Resampling.BILINEAR)
    pixels = np.asarray(picture)
    height, width = pixels.shape[:2]
    fill = pixels.reshape(-1, 3).mean(0).astype(np.uint8)
    rows, cols = _cells(height, width, grid)
    filled = [
        (r, c) for r in range(grid) for c in range(grid)
        if rows[r] < rows[r + 1] and cols[c] < cols[c + 1]
    ]  # fmt: skip

    def covered(cell: tuple[int, int]) -> np.ndarray:
        r, c = cell
        out = pixels.copy()
        out[rows[r] : rows[r + 1], cols[c] : cols[c + 1]] = fill
        return predictor.views_of(Image.fromarray(out))

    logits = [predictor.answering_logits([predictor.views_of(picture)])]
    for start in range(0, len(filled), _OCCLUDED_AT_ONCE):  # bounded memory at any grid
        cells = filled[start : start + _OCCLUDED_AT_ONCE]
        logits.append(predictor.answering_logits([covered(cell) for cell in cells]))
    every = np.concatenate(logits).astype(np.float64)
    k = labels.index(label) if label is not None else int(every[0].argmax())
    others = np.delete(every, k, axis=1)
    peak = others.max(axis=1, keepdims=True)
    rest = peak[:, 0] + np.log(np.exp(others - peak).sum(axis=1))  # log-sum-exp, stable
    evidence = every[:, k] - rest
    drop = np.zeros((grid, grid))
    for (r, c), value in zip(filled, evidence[0] - evidence[1:], strict=True):
        drop[r, c] = value
    return labels[k], drop


def _png(image: Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def overlay_map(image: Image.Image, drop: np.ndarray, *, size: int = 256) -> Image.Image:
    """The whole picture (its longer side ``size`` px) with the occlusion map ``drop`` laid
    over it in red, each cell over the pixels it covered: the redder, the more covering it
    lowers the evidence."""
    picture = image.convert("RGB")
    # the longer side ``size``, the shorter at least one pixel (ImageOps.contain gives a
    # 20,000 x 1 picture a height of 0, which no image can have)
    scale = size / max(picture.size)
    shown = picture.resize(
        (max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
        Image.Resampling.BILINEAR,
    )
    grid = drop.shape[0]
    rows, cols = _cells(picture.height, picture.width, grid)
    heat = np.clip(drop / max(float(np.abs(drop).max()), 1e-6), 0, 1)

    def cell_of(edges: np.ndarray, side: int, shown_side: int) -> np.ndarray:
        # the cell of the picture's pixel each shown pixel samples (nearest), so cells of a
        # grid finer than the picture land over the pixels they covered; no full-size map
        sampled = ((np.arange(shown_side) + 0.5) * side / shown_side).astype(int)
        return np.searchsorted(edges, sampled, side="right") - 1

    cells = np.ix_(cell_of(rows, picture.height, shown.height),
                   cell_of(cols, picture.width, shown.width))  # fmt: skip
    heat_img = Image.fromarray((heat[cells] * 255).astype(np.uint8))
    red = Image.new("RGB", shown.size, (255, 0, 0))
    return Image.composite(
        Image.blend(shown, red, 0.6), shown, heat_img.point(lambda v: int(v * 0.9))
    )


def saliency_html(
    predictor: Predictor, image: Image.Image, prediction: dict[str, Any], *, grid: int = 8
) -> tuple[str, np.ndarray]:
    """A page with the picture, the occlusion map laid over it, and the prediction: the map
    explains the label logged (``prediction["label"]``), where one is given."""
    label, drop = occlusion(predictor, image, grid=grid, label=prediction.get("label"))
    size = 256
    overlay = overlay_map(image, drop, size=size)
    shown = image.convert("RGB").resize(overlay.size, Image.Resampling.BILINEAR)
    esc = html.escape
    page = f"""<!doctype html><html><head><meta charset="utf-8">{KENNEL_PAGE}<title>saliency</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}figure{{display:inline-block}}</style>
</head><body><h1>Why {esc(label)}?</h1>
<p>prediction {esc(str(prediction.get("id", "")))}: {esc(label)} with confidence
{float(prediction.get("confidence", 0)):.3f}, model {esc(str(prediction.get("model", "")))}.
Red cells are the parts of the picture whose occlusion lowers the evidence for it most, each
covered picture seen through the model's frame policy as it was served.</p>
<figure><img src="data:image/png;base64,{_png(shown)}"><figcaption>the picture
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
