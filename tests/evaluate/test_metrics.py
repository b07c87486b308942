from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, precision_score, recall_score

from kennel.config import GatesConfig
from kennel.evaluate import gates, metrics


def _data(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    logits = np.stack([-(labels * 2.0 - 1), labels * 2.0 - 1], axis=1) + rng.normal(0, 1.5, (n, 2))
    return labels, logits


def test_classification_matches_sklearn() -> None:
    labels, logits = _data()
    probs = metrics.softmax_t(logits)
    report = metrics.classification(labels, probs, ["cat", "dog"])
    predicted = probs.argmax(1)
    assert report.accuracy == accuracy_score(labels, predicted)
    for i, name in enumerate(["cat", "dog"]):
        assert report.per_class[name].precision == precision_score(labels, predicted, pos_label=i)
        assert report.per_class[name].recall == recall_score(labels, predicted, pos_label=i)
    assert sum(map(sum, report.confusion)) == len(labels)
    assert 0.5 < report.curves["dog"].roc_auc <= 1.0


def test_temperature_scaling_improves_calibration() -> None:
    labels, logits = _data(2000, seed=1)
    overconfident = logits * 4.0
    t = metrics.fit_temperature(overconfident, labels)
    assert t > 2.0
    before = metrics.expected_calibration_error(metrics.softmax_t(overconfident), labels)
    after = metrics.expected_calibration_error(metrics.softmax_t(overconfident, t), labels)
    assert after < before


def test_bias_and_gates() -> None:
    labels = np.array([0] * 50 + [1] * 50)
    predicted = np.array([0] * 35 + [1] * 15 + [1] * 50)  # dogs over-predicted
    probs = np.eye(2)[predicted]
    bias = metrics.measure_bias(labels, probs, ["cat", "dog"])
    assert bias.recall == {"cat": 0.7, "dog": 1.0}
    assert abs(bias.recall_gap - 0.3) < 1e-12
    assert abs(bias.predicted_rate_ratio["dog"] - 1.3) < 1e-12
    assert metrics.bias(labels, probs, ["cat", "dog"]) == bias.as_dict()  # monitoring's form
    classification = metrics.classification(labels, probs, ["cat", "dog"])
    result = gates.apply(GatesConfig(min_recall=0.8, max_recall_gap=0.2), classification, bias)
    assert not result.passed
    assert any(r.startswith("recall[cat] 0.7000") for r in result.reasons)
    assert any(r.startswith("recall_gap 0.3000") for r in result.reasons)
    assert gates.apply(GatesConfig(), classification, bias).passed


def test_slices() -> None:
    labels, logits = _data(100)
    attrs = [{"scenario": "night" if i % 2 else "day", "index": str(i)} for i in range(100)]
    out, skipped = metrics.slices(labels, metrics.softmax_t(logits), ["cat", "dog"], attrs)
    assert set(out["scenario"]) == {"day", "night"}
    assert out["scenario"]["day"].n == 50
    # a per-image column is never sliced: 100 one-image slices would say nothing
    assert "index" not in out and skipped == {"index": 100}


def test_default_gates_refuse_a_model_no_better_than_the_majority_class() -> None:
    labels = np.array([0] * 70 + [1] * 30)
    for predicted, passes in (
        (np.zeros(100, dtype=int), False),  # always "cat": 0.70, the majority rate
        (np.ones(100, dtype=int), False),  # always "dog": 0.30
        (np.concatenate([labels[:90], 1 - labels[90:]]), True),  # 0.90
    ):
        probs = np.eye(2)[predicted]
        classification = metrics.classification(labels, probs, ["cat", "dog"])
        bias = metrics.measure_bias(labels, probs, ["cat", "dog"])
        result = gates.apply(GatesConfig(), classification, bias)
        assert result.passed is passes
        if not passes:
            assert any("majority-class rate" in r for r in result.reasons)
    assert gates.apply(GatesConfig(beat_majority=False), classification, bias).passed
