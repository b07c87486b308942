"""Model test report: the evaluation as JSON, and one self-contained HTML page with plots and
thumbnails of the worst mistakes (images inlined, no external files)."""

from __future__ import annotations

import base64
import io
import itertools
from typing import Any

import numpy as np
from PIL import Image

from kennel import pages
from kennel.evaluate import metrics


def evaluate(
    labels: np.ndarray,
    logits: np.ndarray,
    classes: list[str],
    *,
    attrs: list[dict[str, str]],
    ids: list[dict[str, str]],
    val_logits: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    worst: int = 12,
    max_slice_values: int = 20,
) -> dict[str, Any]:
    """The full evaluation of one model on one labelled split.

    ``ids`` identify each example (uri, sha256); ``attrs`` are its slice columns, of which only
    those with at most ``max_slice_values`` distinct values are sliced (a per-image column such
    as a file index would give one-image slices). Temperature scaling is fitted on the
    validation logits, never on the evaluated split.
    """
    probs = metrics.softmax_t(logits)
    temperature = (
        metrics.fit_temperature(val_logits, val_labels)
        if val_logits is not None and val_labels is not None
        else 1.0
    )
    calibrated = metrics.softmax_t(logits, temperature)
    result = metrics.classification(labels, probs, classes)
    result["bias"] = metrics.bias(labels, probs, classes)
    result["slices"], result["slices_skipped"] = metrics.slices(
        labels, probs, classes, attrs, max_values=max_slice_values
    )
    result["slices_skipped_over"] = max_slice_values
    result["calibration"] = {
        "temperature": temperature,
        "ece_before": result["ece"],
        "ece_after": metrics.expected_calibration_error(calibrated, labels) if len(labels) else 0.0,
    }
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    order = wrong[np.argsort(-probs[wrong, predicted[wrong]])][:worst]
    result["worst"] = [
        {
            **ids[i],
            "index": int(i),
            "label": classes[labels[i]],
            "predicted": classes[predicted[i]],
            "confidence": float(probs[i, predicted[i]]),
        }
        for i in order
    ]
    result["classes"] = classes
    return result


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _plots(result: dict[str, Any], labels: np.ndarray, probs: np.ndarray) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = result["classes"]
    plots = []
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(np.array(result["confusion"]), cmap="Blues")
    for (i, j), v in np.ndenumerate(np.array(result["confusion"])):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    plots.append(("Confusion matrix", _png(fig)))
    plt.close(fig)
    for kind, xkey, ykey in (("roc", "fpr", "tpr"), ("pr", "recall", "precision")):
        fig, ax = plt.subplots(figsize=(3.6, 3.2))
        for name, curve in result["curves"].items():
            ax.plot(curve[kind][xkey], curve[kind][ykey], label=name)
        ax.set_xlabel(xkey)
        ax.set_ylabel(ykey)
        ax.legend()
        plots.append(("ROC curve" if kind == "roc" else "Precision-recall curve", _png(fig)))
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = probs.argmax(axis=1) == labels if len(probs) else np.zeros(0, bool)
    edges = np.linspace(0.5, 1.0, 11)
    centres, accs = [], []
    for lo, hi in itertools.pairwise(edges):
        mask = (confidence > lo) & (confidence <= hi)
        if mask.any():
            centres.append((lo + hi) / 2)
            accs.append(correct[mask].mean())
    ax.plot([0.5, 1], [0.5, 1], "k--", linewidth=1)
    ax.plot(centres, accs, "o-")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    plots.append(("Reliability", _png(fig)))
    plt.close(fig)
    return plots


def _thumb(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).resize((96, 96)).save(buffer, "JPEG", quality=80)
    return base64.b64encode(buffer.getvalue()).decode()


def render_html(
    title: str,
    result: dict[str, Any],
    labels: np.ndarray,
    logits: np.ndarray,
    images: np.ndarray | None,
    extra: dict[str, Any] | None = None,
) -> str:
    """The test report as one self-contained page (templates/report.html)."""
    probs = metrics.softmax_t(logits)
    extra = extra or {}
    worst = [(w, _thumb(images[w["index"]])) for w in result["worst"]] if images is not None else []
    return pages.render(
        "report.html",
        title=title,
        r=result,
        plots=_plots(result, labels, probs),
        worst=worst,
        gates=extra.get("gates"),
        params=extra.get("params"),
        parity=extra.get("parity"),
    )
