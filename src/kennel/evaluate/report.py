"""Model test report: the evaluation as JSON, and one self-contained HTML page with plots and
thumbnails of the worst mistakes (images inlined, no external files)."""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
from typing import Any

import numpy as np
from PIL import Image

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
) -> dict[str, Any]:
    """The full evaluation of one model on one labelled split.

    ``ids`` identify each example (uri, sha256); ``attrs`` are its slice columns. Temperature
    scaling is fitted on the validation logits, never on the evaluated split.
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
    result["slices"] = metrics.slices(labels, probs, classes, attrs)
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
    probs = metrics.softmax_t(logits)
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(c)}</td><td>{m['precision']:.4f}</td><td>{m['recall']:.4f}</td>"
        f"<td>{m['f1']:.4f}</td><td>{m['support']}</td></tr>"
        for c, m in result["per_class"].items()
    )
    plots = "".join(
        f"<figure><img alt='{esc(t)}' src='data:image/png;base64,{b}'><figcaption>{esc(t)}"
        "</figcaption></figure>"
        for t, b in _plots(result, labels, probs)
    )
    thumbs = ""
    if images is not None:
        thumbs = "".join(
            f"<figure><img src='data:image/jpeg;base64,{_thumb(images[w['index']])}'>"
            f"<figcaption>{esc(w['label'])} → {esc(w['predicted'])} ({w['confidence']:.2f})"
            f"<br><small>{esc(w.get('uri', '')[-48:])}</small></figcaption></figure>"
            for w in result["worst"]
        )
    slice_rows = "".join(
        f"<tr><td>{esc(col)}={esc(val)}</td><td>{s['n']}</td><td>{s['accuracy']:.4f}</td>"
        f"<td>{s['bias']['recall_gap']:.4f}</td></tr>"
        for col, values in result["slices"].items()
        for val, s in values.items()
    )
    b = result["bias"]
    cal = result["calibration"]
    extra_json = esc(json.dumps(extra or {}, indent=2, default=str))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
figure{{display:inline-block;margin:6px;text-align:center;font-size:12px}}</style></head><body>
<h1>{esc(title)}</h1>
<p><b>accuracy</b> {result["accuracy"]:.4f} on {result["n"]} test images; macro F1
{result["macro_f1"]:.4f}; ECE {cal["ece_before"]:.4f} → {cal["ece_after"]:.4f} after temperature
{cal["temperature"]:.3f}</p>
<h2>Per class</h2><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>
<th>support</th></tr>{rows}</table>
<h2>Bias</h2><p>recall gap {b["recall_gap"]:.4f}; predicted-rate ratio
{esc(json.dumps({k: round(v, 3) for k, v in b["predicted_rate_ratio"].items()}))}</p>
<h2>Plots</h2>{plots}
<h2>Slices</h2><table><tr><th>slice</th><th>n</th><th>accuracy</th><th>recall gap</th></tr>
{slice_rows}</table>
<h2>Worst mistakes</h2>{thumbs or "<p>none</p>"}
<h2>Details</h2><pre>{extra_json}</pre></body></html>"""
