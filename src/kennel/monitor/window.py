"""A window of the prediction log, as arrays: what every monitor reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from kennel.db import Database
from kennel.db.predictions import PredictionStore
from kennel.evaluate.drift import IMAGE_STATS
from kennel.serve.runtime import Prediction


@dataclass(frozen=True)
class Window:
    ids: list[str]
    classes: list[str]
    probabilities: np.ndarray  # [n, classes], calibrated
    image_stats: dict[str, np.ndarray]
    embedding: np.ndarray  # [n, d], float16 as logged or float32 (empty [n, 0] when not logged)
    truth: list[str | None]  # feedback labels, where they have arrived
    sources: list[str]
    versions: list[int]
    latency_ms: np.ndarray
    pet: np.ndarray | None = None  # 1.0 pet, 0.0 no pet (out of distribution), nan unjudged

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def labels(self) -> list[str]:
        return [self.classes[i] for i in self.probabilities.argmax(axis=1)] if len(self) else []

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(axis=1) if len(self) else np.zeros(0)

    @classmethod
    def of(
        cls,
        predictions: Sequence[Prediction],
        truth: Sequence[str | None] | None = None,
        sources: Sequence[str] | None = None,
    ) -> Window:
        """A window from in-process predictions (tests, simulations)."""
        classes = list(predictions[0].probabilities) if predictions else []
        return cls(
            ids=[p.id for p in predictions],
            classes=classes,
            probabilities=np.array(
                [[p.probabilities[c] for c in classes] for p in predictions], dtype=np.float64
            ).reshape(len(predictions), len(classes)),
            image_stats={
                k: np.array([p.quality.get(k, np.nan) for p in predictions]) for k in IMAGE_STATS
            },
            embedding=np.stack([p.embedding for p in predictions]).astype(np.float32)
            if predictions
            else np.zeros((0, 0), np.float32),
            truth=list(truth) if truth is not None else [None] * len(predictions),
            sources=list(sources) if sources is not None else ["api"] * len(predictions),
            versions=[p.version for p in predictions],
            latency_ms=np.array([p.latency_ms for p in predictions]),
            pet=np.array([np.nan if p.pet is None else float(p.pet) for p in predictions]),
        )


def load(
    db: Database,
    *,
    environment: str,
    since: datetime,
    until: datetime,
    model: str | None = None,
    version: int | None = None,
) -> Window:
    """Predictions logged for ``environment`` in [since, until), with any feedback joined,
    read as columns (``kennel.db.predcols``)."""
    c = PredictionStore(db).columns(
        environment, since=since, until=until, model=model, version=version
    )
    return Window(
        ids=c.ids,
        classes=c.classes,
        probabilities=c.probabilities,
        image_stats={k: c.stats[k] for k in IMAGE_STATS},
        embedding=c.embedding,
        truth=c.truth,
        sources=c.sources,
        versions=c.versions,
        latency_ms=c.latency_ms,
        pet=c.stats["pet"],
    )
