"""Which registered model takes ``champion``: accuracies are compared only on one test split
(the same dataset version); newer data of the champion's dataset wins on its passed gates;
older data and other datasets never take it automatically."""

from __future__ import annotations

from datetime import UTC, datetime

from kennel.pipeline.steps.register import champion_verdict
from kennel.registry.entities import ModelVersion

SEQ = {("park", "a" * 64): 1, ("park", "b" * 64): 2, ("other", "c" * 64): 1}


def _model(version: int, accuracy: float, dataset: str = "park", data: str = "a" * 64,
           gates: bool = True) -> ModelVersion:  # fmt: skip
    return ModelVersion("pets", version, None, dataset, data, {}, {"accuracy": accuracy},
                        gates, [], datetime.now(UTC), "t")  # fmt: skip


def _verdict(champion: ModelVersion | None, model: ModelVersion) -> tuple[bool, str]:
    return champion_verdict(champion, model, lambda d, v: SEQ[(d, v)])


def test_the_champion_moves_only_to_a_model_that_earns_it_on_comparable_terms() -> None:
    first = _model(1, 0.55)
    assert _verdict(None, first)[0]
    assert _verdict(None, _model(1, 0.99, gates=False)) == (False, "its gates failed")
    # the same test split: strictly better accuracy, a tie keeps the champion
    assert _verdict(first, _model(2, 0.60)) == (
        True, "test accuracy 0.6000 beats pets@1's 0.5500"
    )  # fmt: skip
    assert _verdict(first, _model(2, 0.55)) == (
        False, "test accuracy 0.5500 does not beat pets@1's 0.5500"
    )  # fmt: skip
    # newer data of the same dataset: its own test split, its gates passed; not older data
    newer = _model(3, 0.50, data="b" * 64)
    earned, why = _verdict(first, newer)
    assert earned and why.startswith("passed its gates on park@v2, newer data than pets@1's @v1")
    assert _verdict(newer, _model(4, 0.99)) == (
        False, "built on park@v1, older data than pets@3's @v2"
    )  # fmt: skip
    # another dataset: its accuracy says nothing about the champion's test set
    earned, why = _verdict(first, _model(5, 0.99, dataset="other", data="c" * 64))
    assert not earned and "accuracies on different test sets are not compared" in why
