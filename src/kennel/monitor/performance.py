"""Performance of a window: measured from feedback labels where they have arrived, estimated
from calibrated confidences where they have not (confidence-based performance estimation).

CBPE: with calibrated probabilities, the chance that a prediction is right is its confidence,
so expected accuracy is the mean confidence, and the expected confusion matrix is the sum of
the probability rows grouped by predicted class; precision and recall follow from it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm

from kennel.evaluate.metrics import bias
from kennel.monitor.window import Window


def measured(window: Window) -> dict[str, Any] | None:
    """Accuracy, per-class precision/recall/F1 and bias on the labelled part of the window."""
    index = {c: i for i, c in enumerate(window.classes)}
    rows = [i for i, t in enumerate(window.truth) if t is not None and t in index]
    if not rows:
        return None
    truth = np.array([index[window.truth[i]] for i in rows])  # type: ignore[index]
    probs = window.probabilities[rows]
    predicted = probs.argmax(axis=1)
    ids = list(range(len(window.classes)))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        truth, predicted, labels=ids, zero_division=0
    )
    fairness = bias(truth, probs, window.classes)
    present = support > 0  # a class no labelled input was: no recall, no F1 to average
    return {
        "n": len(rows),
        "coverage": len(rows) / len(window),
        "accuracy": float(skm.accuracy_score(truth, predicted)),
        "macro_f1": float(np.mean(f1[present])),
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(window.classes)
        },
        "recall_gap": fairness["recall_gap"],
        "predicted_rate_ratio": fairness["predicted_rate_ratio"],
    }


def estimated(window: Window) -> dict[str, Any] | None:
    """CBPE on the whole window (labels not needed)."""
    if not len(window):
        return None
    probs = window.probabilities
    predicted = probs.argmax(axis=1)
    k = len(window.classes)
    # expected confusion: row = true class, column = predicted class
    confusion = np.zeros((k, k))
    for j in range(k):
        confusion[:, j] = probs[predicted == j].sum(axis=0)
    tp = np.diag(confusion)
    precision = np.divide(
        tp, confusion.sum(axis=0), out=np.zeros(k), where=confusion.sum(axis=0) > 0
    )
    recall = np.divide(tp, confusion.sum(axis=1), out=np.zeros(k), where=confusion.sum(axis=1) > 0)
    return {
        "n": len(window),
        "accuracy": float(probs.max(axis=1).mean()),
        "per_class": {
            c: {"precision": float(precision[i]), "recall": float(recall[i])}
            for i, c in enumerate(window.classes)
        },
    }
