"""What one build may change of kennel.yaml's ``train`` section, and how it is run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kennel.config import PRESETS, TrainConfig, revalidate
from kennel.errors import ConfigError

# Which interrupted final run a build continues instead of starting one: none ("off"), the
# newest with that run's own settings (``kennel train --resume``: "newest"), or only one that
# trains what this build would (``kennel pipeline run``: "same"; kennel.pipeline.steps.train).
Resume = Literal["off", "newest", "same"]


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
    resume: Resume = "off"
    study: str | None = None  # train the best trial of this finished shared study
    actor: str = "kennel"
    token: str | None = None  # the id of the token of the person who started it, if any
    overrides: dict[str, Any] = field(default_factory=dict)  # any other TrainConfig field

    def apply(self, train: TrainConfig) -> TrainConfig:
        """``train`` with these options, validated like kennel.yaml (ConfigError names the key).
        A preset replaces kennel.yaml's values for every key a preset sets (``quick`` sets them
        back to the field defaults: ``--preset quick`` on a project whose kennel.yaml says
        ``best`` trains the small CNN); the other options replace the preset's."""
        update: dict[str, object] = {}
        if self.preset is not None:
            recipe_keys = {key for recipe in PRESETS.values() for key in recipe}
            defaults = {key: TrainConfig.model_fields[key].default for key in recipe_keys}
            update = {**defaults, **PRESETS.get(self.preset, {}), "preset": self.preset}
        explicit: dict[str, object] = {}
        for key in ("arch", "epochs", "image_size"):
            if getattr(self, key) is not None:
                explicit[key] = getattr(self, key)
        if self.method is not None:
            explicit["search"] = {**train.search.model_dump(), "method": self.method}
        return revalidate("train", train, {**update, **self.overrides, **explicit})

    def searches(self, train: TrainConfig) -> bool:
        """Whether this build would search (rather than train one configuration)."""
        if self.study is not None:
            return False
        trials = self.trials if self.trials is not None else train.search.trials
        return trials > 1 or bool(self.budget_minutes)

    def check_parallel(self, train: TrainConfig) -> None:
        """Data-parallel training trains one run: a search is run first, on its own."""
        if self.searches(train):
            trials = self.trials if self.trials is not None else train.search.trials
            raise ConfigError(
                f"--nproc trains one run on several processes, but this build would search "
                f"first ({trials} trials, search.trials in kennel.yaml or --trials): pass "
                "--trials 1, or --study NAME to train the best of a kennel tune study"
            )
