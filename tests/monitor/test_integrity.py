"""The out-of-distribution share of a window: predictions judged "no pet" are counted as an
integrity metric, and the default rule alerts on it."""

from __future__ import annotations

import numpy as np

from kennel.config import KennelConfig
from kennel.govern.alerts import firing
from kennel.monitor.runner import analyse
from kennel.monitor.window import Window
from kennel.serve.runtime import Prediction


def _prediction(i: int, pet: bool | None) -> Prediction:
    return Prediction(
        id=f"{i:032x}",
        label="dog",
        confidence=0.9,
        probabilities={"cat": 0.1, "dog": 0.9},
        model="pets",
        version=1,
        latency_ms=5.0,
        quality={"brightness": 100.0, "contrast": 40.0, "sharpness": 50.0},
        embedding=np.zeros(4, np.float32),
        pet=pet,
        pet_score=None if pet is None else (0.8 if pet else 0.05),
    )


def _rule(config: KennelConfig, name: str):  # type: ignore[no-untyped-def]
    return next(r for r in config.monitor.rules if r.name == name)


def test_the_share_of_no_pet_inputs_is_an_integrity_metric_with_an_alert_rule() -> None:
    config = KennelConfig()
    rule = _rule(config, "not-a-pet")
    assert rule.metric == "integrity.ood_rate"
    # a camera that looks at the park: 1 frame in 10 with nothing a model knows
    calm = Window.of([_prediction(i, pet=i % 10 != 0) for i in range(40)])
    metrics, details = analyse(calm, {}, config)
    assert metrics["integrity.ood_rate"] == 0.1 and details["integrity"]["ood_judged"] == 40
    assert firing(rule, metrics) is False
    # the camera turned to the hedge: most inputs are no pet at all
    turned = Window.of([_prediction(i, pet=i % 4 == 0) for i in range(40)])
    metrics, _ = analyse(turned, {}, config)
    assert metrics["integrity.ood_rate"] == 0.75 and firing(rule, metrics) is True


def test_predictions_a_model_could_not_judge_are_not_counted() -> None:
    config = KennelConfig()
    unjudged = Window.of([_prediction(i, pet=None) for i in range(40)])
    metrics, details = analyse(unjudged, {}, config)
    assert "integrity.ood_rate" not in metrics and details["integrity"]["ood_judged"] == 0
    mixed = Window.of([_prediction(i, pet=False if i < 30 else None) for i in range(40)])
    assert analyse(mixed, {}, config)[0]["integrity.ood_rate"] == 1.0


def test_a_window_too_small_for_a_rate_gives_none_so_no_rule_fires_or_resolves() -> None:
    """An empty window resolved the integrity alerts a full one had opened, and one noise
    picture made ood_rate 1.0 and opened "not-a-pet": rates take monitor.min_window inputs."""
    config = KennelConfig()
    rates = ("decode_failure_rate", "low_confidence_rate", "size_anomaly_rate", "ood_rate")
    for window in (Window.of([]), Window.of([_prediction(0, pet=False)])):
        metrics, _ = analyse(window, {}, config)
        assert not [k for k in metrics if k.startswith("integrity.")], metrics
        assert "performance.estimated_accuracy" not in metrics
    enough = Window.of([_prediction(i, pet=True) for i in range(config.monitor.min_window)])
    metrics, _ = analyse(enough, {}, config)
    assert all(f"integrity.{k}" in metrics for k in rates)


def test_a_class_no_labelled_input_had_is_not_judged() -> None:
    """Feedback on 25 dogs, every one right: the model was called biased (recall gap 1.0,
    recall of cat 0.0, macro F1 0.5) because cat, absent, had a recall of 0."""
    config = KennelConfig()
    dogs = [_prediction(i, pet=True) for i in range(config.monitor.min_window)]
    metrics, details = analyse(Window.of(dogs, truth=["dog"] * len(dogs)), {}, config)
    assert metrics["performance.accuracy"] == 1.0 and metrics["performance.macro_f1"] == 1.0
    assert metrics["fairness.recall_gap"] == 0.0 and metrics["performance.recall.dog"] == 1.0
    assert "performance.recall.cat" not in metrics
    assert "fairness.predicted_rate_ratio.cat" not in metrics
    assert details["measured"]["per_class"]["cat"]["support"] == 0
