"""Classification metrics from labels and probabilities, computed with scikit-learn and scipy.

Everything here is a pure function of arrays, so a report's numbers can be recomputed from the
stored predictions by anyone (a test does exactly that). Results are frozen dataclasses;
``as_dict()`` is their JSON form, as report.json and the registry store it.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn import metrics as skm


def softmax_t(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return np.asarray(softmax(logits / temperature, axis=1))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising validation negative log-likelihood (temperature scaling).

    1.0 (the model's own confidences) where the split holds no evidence: no images, or none
    the model gets wrong. With every image right the likelihood only grows as the temperature
    falls, so the fit would run to its bound and serve near-certain answers learnt from a
    handful of easy images (``uncalibrated`` says why in the report)."""
    if uncalibrated(logits, labels):
        return 1.0

    def nll(log_t: float) -> float:
        logp = log_softmax(logits / np.exp(log_t), axis=1)
        return float(-logp[np.arange(len(labels)), labels].mean())

    result = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(result.x))


def uncalibrated(logits: np.ndarray, labels: np.ndarray) -> str:
    """Why temperature scaling cannot be fitted on this split ("" where it can)."""
    if len(labels) == 0:
        return "no validation images"
    if (np.asarray(logits).argmax(axis=1) == labels).all():
        return f"all {len(labels)} validation images right: nothing to calibrate on"
    return ""


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        mask = (confidence > lo) & (confidence <= hi)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


@dataclass(frozen=True)
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Curves:
    """One class against the rest: ROC and precision-recall, thinned to at most 200 points."""

    roc_auc: float
    average_precision: float
    fpr: list[float]
    tpr: list[float]
    precision: list[float]
    recall: list[float]

    def as_dict(self) -> dict[str, object]:
        return {
            "roc_auc": self.roc_auc,
            "average_precision": self.average_precision,
            "roc": {"fpr": self.fpr, "tpr": self.tpr},
            "pr": {"precision": self.precision, "recall": self.recall},
        }


@dataclass(frozen=True)
class Classification:
    n: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, ClassMetrics]
    confusion: list[list[int]]  # row = true class, column = predicted class
    curves: dict[str, Curves]  # classes present and absent in the labels only
    ece: float

    def as_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class": {c: m.as_dict() for c, m in self.per_class.items()},
            "confusion": self.confusion,
            "curves": {c: curve.as_dict() for c, curve in self.curves.items()},
            "ece": self.ece,
        }


@dataclass(frozen=True)
class Bias:
    """Between-class bias: recall gap and predicted-rate ratio (the seed's "30% biased to
    detect dogs" is a predicted-rate ratio of 1.3)."""

    recall: dict[str, float]
    recall_gap: float
    predicted_rate: dict[str, float]
    true_rate: dict[str, float]
    predicted_rate_ratio: dict[str, float]  # predicted share / true share, per class

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class SliceMetrics:
    n: int
    accuracy: float
    recall: dict[str, float]
    bias: Bias

    def as_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "recall": self.recall,
            "bias": self.bias.as_dict(),
        }


def classification(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> Classification:
    """Accuracy, per-class precision/recall/F1/support, confusion matrix, ROC and PR curves."""
    predicted = probs.argmax(axis=1)
    ids = list(range(len(classes)))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=ids, zero_division=0
    )
    per_class = {
        name: ClassMetrics(
            precision=float(precision[i]),
            recall=float(recall[i]),
            f1=float(f1[i]),
            support=int(support[i]),
        )
        for i, name in enumerate(classes)
    }
    curves: dict[str, Curves] = {}
    for i, name in enumerate(classes):
        truth = (labels == i).astype(int)
        if 0 < truth.sum() < len(truth):
            fpr, tpr, _ = skm.roc_curve(truth, probs[:, i])
            prec, rec, _ = skm.precision_recall_curve(truth, probs[:, i])
            curves[name] = Curves(
                roc_auc=float(skm.roc_auc_score(truth, probs[:, i])),
                average_precision=float(skm.average_precision_score(truth, probs[:, i])),
                fpr=_thin(fpr),
                tpr=_thin(tpr),
                precision=_thin(prec),
                recall=_thin(rec),
            )
    return Classification(
        n=len(labels),
        accuracy=float(skm.accuracy_score(labels, predicted)) if len(labels) else 0.0,
        macro_f1=float(np.mean(f1)) if len(f1) else 0.0,
        per_class=per_class,
        confusion=skm.confusion_matrix(labels, predicted, labels=ids).tolist(),
        curves=curves,
        ece=expected_calibration_error(probs, labels) if len(labels) else 0.0,
    )


def measure_bias(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> Bias:
    predicted = probs.argmax(axis=1)
    recalls = {
        c: float((predicted[labels == i] == i).mean()) if (labels == i).any() else 0.0
        for i, c in enumerate(classes)
    }
    rates = {
        c: float((predicted == i).mean()) if len(predicted) else 0.0 for i, c in enumerate(classes)
    }
    true_rates = {
        c: float((labels == i).mean()) if len(labels) else 0.0 for i, c in enumerate(classes)
    }
    ratio = {c: (rates[c] / true_rates[c]) if true_rates[c] > 0 else 0.0 for c in classes}
    # the gap between the classes that were there: a class with no true example has no
    # recall (a perfect model on a window of cats alone was 1.0 apart from "dog")
    values = [recalls[c] for i, c in enumerate(classes) if (labels == i).any()]
    return Bias(
        recall=recalls,
        recall_gap=float(max(values) - min(values)) if values else 0.0,
        predicted_rate=rates,
        true_rate=true_rates,
        predicted_rate_ratio=ratio,
    )


def bias(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """``measure_bias`` as plain JSON, for callers that store it as it is (monitoring's
    measured performance)."""
    return dict(measure_bias(labels, probs, classes).as_dict())


def slices(
    labels: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    attrs: list[dict[str, str]],
    *,
    max_values: int = 20,
) -> tuple[dict[str, dict[str, SliceMetrics]], dict[str, int]]:
    """Accuracy, per-class recall and bias for every value of every attribute column with at
    most ``max_values`` distinct values; the other columns come back with their counts."""
    out: dict[str, dict[str, SliceMetrics]] = {}
    skipped: dict[str, int] = {}
    columns = sorted({k for a in attrs for k in a})
    for column in columns:
        values = np.array([a.get(column, "") for a in attrs])
        distinct = sorted(set(values.tolist()))
        if len(distinct) > max_values:
            skipped[column] = len(distinct)
            continue
        out[column] = {}
        for value in distinct:
            mask = values == value
            report = classification(labels[mask], probs[mask], classes)
            out[column][value] = SliceMetrics(
                n=report.n,
                accuracy=report.accuracy,
                recall={c: report.per_class[c].recall for c in classes},
                bias=measure_bias(labels[mask], probs[mask], classes),
            )
    return out, skipped


def _thin(values: np.ndarray, keep: int = 200) -> list[float]:
    if len(values) <= keep:
        return [float(v) for v in values]
    picks = np.linspace(0, len(values) - 1, keep).round().astype(int)
    return [float(values[i]) for i in picks]
