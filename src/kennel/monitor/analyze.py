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
from kennel.serve.runtime import Predictor

_OCCLUDED_AT_ONCE = 64  # covered pictures prepared and inferred together


def occlusion(
    predictor: Predictor, image: Image.Image, *, grid: int = 8, label: str | None = None
) -> tuple[str, np.ndarray]:
    """The label explained (``label``, else the one predicted) and a [grid, grid] map over the
    whole picture: how much the evidence for that label drops when each cell is covered with
    the picture's mean colour. Each covered picture goes through the bundle's frame policy as
    served (its centre square, or the letterbox and tiles of a wide frame, the policy picking
    the view that answers), so a pet at the edge of a wide CCTV frame is explained where it
    is. Evidence is the label's log-odds against the others in the answering view's logits:
    unlike its probability it does not saturate, so a confident model's map still shows which
    cells it relies on."""
    pixels = np.asarray(image.convert("RGB"))
    height, width = pixels.shape[:2]
    fill = pixels.reshape(-1, 3).mean(0).astype(np.uint8)
    rows = np.linspace(0, height, grid + 1).astype(int)
    cols = np.linspace(0, width, grid + 1).astype(int)

    def covered(cell: int) -> Image.Image:
        r, c = divmod(cell, grid)
        out = pixels.copy()
        out[rows[r] : rows[r + 1], cols[c] : cols[c + 1]] = fill
        return Image.fromarray(out)

    base = predictor.answering_logits([predictor.prepare_image(Image.fromarray(pixels))])
    labels = predictor.bundle.labels
    k = labels.index(label) if label in labels else int(base[0].argmax())
    logits = [base]
    for start in range(0, grid * grid, _OCCLUDED_AT_ONCE):  # bounded memory at any grid
        cells = range(start, min(start + _OCCLUDED_AT_ONCE, grid * grid))
        logits.append(
            predictor.answering_logits([predictor.prepare_image(covered(i)) for i in cells])
        )
    every = np.concatenate(logits).astype(np.float64)
    others = np.delete(every, k, axis=1)
    peak = others.max(axis=1, keepdims=True)
    rest = peak[:, 0] + np.log(np.exp(others - peak).sum(axis=1))  # log-sum-exp, stable
    evidence = every[:, k] - rest
    drop = (evidence[0] - evidence[1:]).reshape(grid, grid)
    return predictor.bundle.labels[k], drop


def _png(image: Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def overlay_map(image: Image.Image, drop: np.ndarray, *, size: int = 256) -> Image.Image:
    """The whole picture (its longer side ``size`` px) with the occlusion map ``drop`` laid
    over it in red: the redder a cell, the more covering it lowers the evidence."""
    shown = image.convert("RGB")
    scale = size / max(shown.size)
    shown = shown.resize(
        (max(1, round(shown.width * scale)), max(1, round(shown.height * scale))),
        Image.Resampling.BILINEAR,
    )
    heat = np.clip(drop / max(float(np.abs(drop).max()), 1e-6), 0, 1)
    heat_img = Image.fromarray((heat * 255).astype(np.uint8)).resize(
        shown.size,
        Image.Resampling.NEAREST,  # cell by cell, as the cells were covered
    )
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
