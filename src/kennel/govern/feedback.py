"""Whether a retrain has anything to learn: production images whose true labels came back
since the champion was registered. Light on purpose (no training code), so the dashboard
can ask before it offers the button."""

from __future__ import annotations

from kennel.db import Database, aware
from kennel.db.predictions import PredictionStore
from kennel.errors import NotFoundError, StateError
from kennel.registry.entities import ModelVersion
from kennel.registry.store import ModelRegistry


def champion_of(registry: ModelRegistry, model: str) -> ModelVersion:
    """What a retrain starts from: the champion, or the newest version before there is one."""
    try:
        return registry.resolve(f"{model}@champion")
    except NotFoundError:
        return registry.resolve(f"{model}@latest")


def require_feedback(
    db: Database, registry: ModelRegistry, model: str, environment: str
) -> ModelVersion:
    """The champion to retrain from, or StateError when no production image of
    ``environment`` received its true label since the champion was registered: the retrain
    would have nothing new to learn from (and weighting the alert's window by its images
    would fail deep in training). Returned when there is something to learn."""
    champion = champion_of(registry, model)
    since = aware(champion.created_at)
    if PredictionStore(db).count_labelled(environment, since=since) == 0:
        raise StateError(
            f"no labelled production images since {since:%Y-%m-%d %H:%M} UTC, when "
            f"{champion.ref} was registered: a retrain would learn nothing new. Send the true "
            f"labels of some of {environment}'s predictions first (POST /v1/feedback; the "
            "inputs are kept while serve.keep_inputs is on)"
        )
    return champion
