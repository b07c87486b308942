"""The evaluation travels typed and becomes JSON only at the edge: report.json, the registry's
metrics and the HTML page keep the layout they always had."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kennel.evaluate.report import Evaluation, Example, evaluate, render_html


def _evaluation() -> tuple[np.ndarray, np.ndarray, Evaluation]:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60)
    logits = np.stack([-(labels * 2.0 - 1), labels * 2.0 - 1], 1) + rng.normal(0, 2.0, (60, 2))
    attrs = [{"scenario": "night" if i % 3 else "day"} for i in range(60)]
    examples = [Example(uri=f"/lake/{i}.jpg", sha256=f"{i:064x}") for i in range(60)]
    return labels, logits, evaluate(
        labels, logits, ["cat", "dog"], attrs=attrs, examples=examples,
        val_logits=logits[:30], val_labels=labels[:30],
    )  # fmt: skip


def test_the_json_form_keeps_its_layout() -> None:
    _labels, _logits, evaluation = _evaluation()
    data = json.loads(json.dumps(evaluation.as_dict()))
    assert list(data) == [
        "n", "accuracy", "macro_f1", "per_class", "confusion", "curves", "ece", "bias", "slices",
        "slices_skipped", "slices_skipped_over", "calibration", "worst", "classes",
    ]  # fmt: skip
    assert data["accuracy"] == evaluation.accuracy and data["classes"] == ["cat", "dog"]
    assert list(data["per_class"]["cat"]) == ["precision", "recall", "f1", "support"]
    assert list(data["curves"]["dog"]) == ["roc_auc", "average_precision", "roc", "pr"]
    assert list(data["bias"]) == [
        "recall", "recall_gap", "predicted_rate", "true_rate", "predicted_rate_ratio",
    ]  # fmt: skip
    assert set(data["slices"]["scenario"]) == {"day", "night"}
    assert list(data["slices"]["scenario"]["day"]) == ["n", "accuracy", "recall", "bias"]
    assert list(data["calibration"]) == ["temperature", "ece_before", "ece_after", "note"]
    worst = data["worst"][0]
    assert list(worst) == ["uri", "sha256", "index", "label", "predicted", "confidence"]
    assert worst["uri"] == f"/lake/{worst['index']}.jpg"


def test_the_summary_is_what_the_registry_stores() -> None:
    _labels, _logits, evaluation = _evaluation()
    summary = evaluation.summary().as_dict()
    assert list(summary) == ["accuracy", "macro_f1", "n", "per_class", "bias", "ece"]
    assert summary["bias"] == {
        "recall_gap": evaluation.bias.recall_gap,
        "predicted_rate_ratio": evaluation.bias.predicted_rate_ratio,
    }
    assert summary["ece"] == evaluation.calibration.ece_after


def test_the_page_renders_without_images() -> None:
    labels, logits, evaluation = _evaluation()
    page = render_html("pets: test report", evaluation, labels, logits, None)
    assert "Per class" in page and "scenario" in page and "Worst mistakes" in page


def test_a_validation_split_without_a_mistake_leaves_confidences_as_they_are() -> None:
    """Every validation image right: the likelihood only grows as the temperature falls, and
    a fit would serve near-certain answers learnt from a handful of easy images."""
    labels, logits, _ = _evaluation()
    right = logits[labels == logits.argmax(1)][:6]
    right_labels = right.argmax(1)
    evaluation = evaluate(
        labels, logits, ["cat", "dog"], attrs=[{}] * 60,
        examples=[Example(uri=f"/{i}", sha256=f"{i:064x}") for i in range(60)],
        val_logits=right, val_labels=right_labels,
    )  # fmt: skip
    assert evaluation.calibration.temperature == 1.0
    assert "all 6 validation images right" in evaluation.calibration.note
    page = render_html("pets: test report", evaluation, labels, logits, None)
    assert "left at 1: all 6 validation images right" in page
    # a split with mistakes is fitted, and a mistake's confidence is the one served
    fitted = _evaluation()[2]
    assert fitted.calibration.note == "" and fitted.calibration.temperature != 1.0
    t = fitted.calibration.temperature
    scaled = np.exp(logits / t) / np.exp(logits / t).sum(1, keepdims=True)
    for w in fitted.worst:
        assert w.confidence == pytest.approx(scaled[w.index].max())
