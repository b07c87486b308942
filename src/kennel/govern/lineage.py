"""Lineage from a single prediction: prediction -> served model version -> run -> dataset
version -> source files, plus the feedback it received and the input image's address."""

from __future__ import annotations

from typing import Any

from kennel.datasets.versioning import DatasetCatalog
from kennel.db import Database
from kennel.db.predictions import PredictionStore
from kennel.errors import NotFoundError
from kennel.pipeline.lineage import model_lineage
from kennel.registry.store import ModelRegistry
from kennel.train.tracking import RunTracker


def prediction_lineage(
    prediction_id: str,
    *,
    db: Database,
    registry: ModelRegistry,
    tracker: RunTracker,
    catalog: DatasetCatalog,
    files_limit: int | None = 20,
) -> dict[str, Any]:
    store = PredictionStore(db)
    row = store.get(prediction_id)
    if row is None:
        raise NotFoundError(
            f"prediction {prediction_id!r} not found (a service's newest records reach the "
            "log within a second; `kennel predict` logs nothing)"
        )
    feedback = store.feedback(prediction_id)
    ref = row.ref
    prediction: dict[str, Any] = {
        "id": row.id,
        "at": row.at.isoformat(),
        "environment": row.environment,
        "source": row.source,
        "label": row.label,
        "confidence": row.confidence,
        "probabilities": row.probabilities,
        "input_sha256": row.input_sha256,
        "model": ref,
    }
    truth = (
        {"label": feedback.label, "actor": feedback.actor, "at": feedback.at.isoformat()}
        if feedback
        else None
    )
    lineage = model_lineage(
        ref,
        registry=registry,
        tracker=tracker,
        catalog=catalog,
        files_limit=files_limit,
    )
    return {"prediction": prediction, "feedback": truth, **lineage}
