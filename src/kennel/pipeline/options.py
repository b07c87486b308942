"""What one build may change of kennel.yaml's ``train`` section, and how it is run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kennel.config import PRESETS, TrainConfig, revalidate


@dataclass(frozen=True)
class BuildOptions:
    """Per-build overrides of kennel.yaml's ``train`` section."""

    preset: str | None = None  # a named recipe (kennel.config.training.PRESETS)
    arch: str | None = None
    epochs: int | None = None
    trials: int | None = None
    method: str | None = None
    budget_minutes: float | None = None
    image_size: int | None = None
    init_from: str | None = None
    resume: bool = False
    study: str | None = None  # train the best trial of this finished shared study
    actor: str = "kennel"
    overrides: dict[str, Any] = field(default_factory=dict)  # any other TrainConfig field

    def apply(self, train: TrainConfig) -> TrainConfig:
        """``train`` with these options, validated like kennel.yaml (ConfigError names the key).
        A preset replaces kennel.yaml's values for the keys it sets; the other options replace
        the preset's."""
        update: dict[str, object] = {}
        if self.preset is not None:
            update = {**PRESETS.get(self.preset, {}), "preset": self.preset}
        explicit: dict[str, object] = {}
        for key in ("arch", "epochs", "image_size"):
            if getattr(self, key) is not None:
                explicit[key] = getattr(self, key)
        if self.method is not None:
            explicit["search"] = {**train.search.model_dump(), "method": self.method}
        return revalidate("train", train, {**update, **self.overrides, **explicit})
