"""Model test report: the evaluation as JSON, and one self-contained HTML page with plots and
thumbnails of the worst mistakes (images inlined, no external files)."""

from __future__ import annotations

import base64
import io
import itertools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from kennel import pages
from kennel.evaluate import metrics
from kennel.evaluate.metrics import Bias, Classification, ClassMetrics, SliceMetrics


@dataclass(frozen=True)
class Example:
    """Which image an evaluated example is."""

    uri: str
    sha256: str


@dataclass(frozen=True)
class Mistake:
    uri: str
    sha256: str
    index: int  # position in the evaluated split
    label: str
    predicted: str
    confidence: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Calibration:
    temperature: float  # fitted on the validation logits
    ece_before: float
    ece_after: float
    note: str = ""  # why the temperature was left at 1 ("" when it was fitted)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Summary:
    """The headline numbers of an evaluation: the registry's metrics and the bundle's."""

    accuracy: float
    macro_f1: float
    n: int
    per_class: dict[str, ClassMetrics]
    recall_gap: float
    predicted_rate_ratio: dict[str, float]
    ece: float  # after temperature scaling

    def as_dict(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "n": self.n,
            "per_class": {c: m.as_dict() for c, m in self.per_class.items()},
            "bias": {
                "recall_gap": self.recall_gap,
                "predicted_rate_ratio": dict(self.predicted_rate_ratio),
            },
            "ece": self.ece,
        }


@dataclass(frozen=True)
class Evaluation:
    """The full evaluation of one model on one labelled split."""

    metrics: Classification
    bias: Bias
    slices: dict[str, dict[str, SliceMetrics]]
    slices_skipped: dict[str, int]  # columns with too many values to slice, and their counts
    slices_skipped_over: int
    calibration: Calibration
    worst: tuple[Mistake, ...]
    classes: tuple[str, ...]

    @property
    def accuracy(self) -> float:
        return self.metrics.accuracy

    @property
    def per_class(self) -> dict[str, ClassMetrics]:
        return self.metrics.per_class

    def summary(self) -> Summary:
        return Summary(
            accuracy=self.metrics.accuracy,
            macro_f1=self.metrics.macro_f1,
            n=self.metrics.n,
            per_class=self.metrics.per_class,
            recall_gap=self.bias.recall_gap,
            predicted_rate_ratio=self.bias.predicted_rate_ratio,
            ece=self.calibration.ece_after,
        )

    def as_dict(self) -> dict[str, object]:
        """The evaluation as report.json holds it."""
        return {
            **self.metrics.as_dict(),
            "bias": self.bias.as_dict(),
            "slices": {
                column: {value: s.as_dict() for value, s in values.items()}
                for column, values in self.slices.items()
            },
            "slices_skipped": dict(self.slices_skipped),
            "slices_skipped_over": self.slices_skipped_over,
            "calibration": self.calibration.as_dict(),
            "worst": [w.as_dict() for w in self.worst],
            "classes": list(self.classes),
        }


def evaluate(
    labels: np.ndarray,
    logits: np.ndarray,
    classes: list[str],
    *,
    attrs: list[dict[str, str]],
    examples: list[Example],
    val_logits: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    worst: int = 12,
    max_slice_values: int = 20,
) -> Evaluation:
    """Evaluate one model on one labelled split.

    ``examples`` identify each example (uri, sha256); ``attrs`` are its slice columns, of which
    only those with at most ``max_slice_values`` distinct values are sliced (a per-image column
    such as a file index would give one-image slices). Temperature scaling is fitted on the
    validation logits, never on the evaluated split.
    """
    probs = metrics.softmax_t(logits)
    if val_logits is not None and val_labels is not None:
        temperature = metrics.fit_temperature(val_logits, val_labels)
        note = metrics.uncalibrated(val_logits, val_labels)
    else:
        temperature, note = 1.0, "no validation split"
    calibrated = metrics.softmax_t(logits, temperature)
    result = metrics.classification(labels, probs, classes)
    sliced, skipped = metrics.slices(labels, probs, classes, attrs, max_values=max_slice_values)
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    order = wrong[np.argsort(-probs[wrong, predicted[wrong]])][:worst]
    return Evaluation(
        metrics=result,
        bias=metrics.measure_bias(labels, probs, classes),
        slices=sliced,
        slices_skipped=skipped,
        slices_skipped_over=max_slice_values,
        calibration=Calibration(
            temperature=temperature,
            ece_before=result.ece,
            ece_after=(
                metrics.expected_calibration_error(calibrated, labels) if len(labels) else 0.0
            ),
            note=note,
        ),
        worst=tuple(
            Mistake(
                uri=examples[i].uri,
                sha256=examples[i].sha256,
                index=int(i),
                label=classes[labels[i]],
                predicted=classes[predicted[i]],
                confidence=float(calibrated[i, predicted[i]]),  # as served
            )
            for i in order
        ),
        classes=tuple(classes),
    )


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _plots(result: Evaluation, labels: np.ndarray, probs: np.ndarray) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(result.classes)
    confusion = np.array(result.metrics.confusion)
    plots = []
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(confusion, cmap="Blues")
    for (i, j), v in np.ndenumerate(confusion):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    plots.append(("Confusion matrix", _png(fig)))
    plt.close(fig)
    for caption, xkey, ykey in (
        ("ROC curve", "fpr", "tpr"),
        ("Precision-recall curve", "recall", "precision"),
    ):
        fig, ax = plt.subplots(figsize=(3.6, 3.2))
        for name, curve in result.metrics.curves.items():
            ax.plot(getattr(curve, xkey), getattr(curve, ykey), label=name)
        ax.set_xlabel(xkey)
        ax.set_ylabel(ykey)
        ax.legend()
        plots.append((caption, _png(fig)))
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
    result: Evaluation,
    labels: np.ndarray,
    logits: np.ndarray,
    images: np.ndarray | None,
    *,
    params: dict[str, object] | None = None,
    gates: dict[str, object] | None = None,
    parity: dict[str, object] | None = None,
) -> str:
    """The test report as one self-contained page (templates/report.html); ``params``,
    ``gates`` and ``parity`` are the JSON forms of what the build adds to it."""
    probs = metrics.softmax_t(logits)
    worst = (
        [(w.as_dict(), _thumb(images[w.index])) for w in result.worst] if images is not None else []
    )
    return pages.render(
        "report.html",
        title=title,
        r=result.as_dict(),
        plots=_plots(result, labels, probs),
        worst=worst,
        gates=gates,
        params=params,
        parity=parity,
    )
