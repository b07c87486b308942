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
    unjudged = Window.of([_prediction(i, pet=None) for i in range(10)])
    metrics, details = analyse(unjudged, {}, config)
    assert metrics["integrity.ood_rate"] == 0.0 and details["integrity"]["ood_judged"] == 0
    mixed = Window.of([_prediction(0, pet=False), _prediction(1, pet=None)])
    assert analyse(mixed, {}, config)[0]["integrity.ood_rate"] == 1.0
