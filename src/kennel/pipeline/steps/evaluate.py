"""The trained model on the untouched test split, and the quality gates applied to it."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from kennel.config import GatesConfig
from kennel.datasets.manifest import Row
from kennel.evaluate import gates as quality_gates
from kennel.evaluate.gates import GateResult
from kennel.evaluate.report import Evaluation, Example, evaluate
from kennel.pipeline.steps.prepare import BuildPlan
from kennel.pipeline.steps.train import TrainedModel
from kennel.progress import Event, Progress
from kennel.train.trainer import predict


@dataclass(frozen=True)
class Evaluated:
    evaluation: Evaluation
    gates: GateResult
    # the model's outputs, kept for the report, the stored predictions and the drift reference
    test_logits: np.ndarray
    test_embeddings: np.ndarray
    val_logits: np.ndarray
    val_embeddings: np.ndarray


def _attrs(row: Row) -> dict[str, str]:
    data: dict[str, str] = json.loads(row.attrs or "{}")
    return data


def evaluate_model(
    trained: TrainedModel, plan: BuildPlan, gates: GatesConfig, progress: Progress
) -> Evaluated:
    """Test-split metrics, slices and bias; temperature fitted on the validation split."""
    data, rows, splits = trained.data, plan.rows, plan.splits
    test_logits, test_emb = predict(trained.fit.model, data.images[splits.test])
    val_logits, val_emb = predict(trained.fit.model, data.images[splits.validation])
    evaluation = evaluate(
        data.labels[splits.test],
        test_logits,
        plan.classes,
        attrs=[_attrs(rows[i]) for i in splits.test],
        examples=[Example(uri=rows[i].uri, sha256=rows[i].sha256) for i in splits.test],
        val_logits=val_logits,
        val_labels=data.labels[splits.validation],
    )
    gate = quality_gates.apply(gates, evaluation.metrics, evaluation.bias)
    if evaluation.calibration.note:
        note = evaluation.calibration.note
        progress(Event("build", f"confidences left uncalibrated (temperature 1): {note}"))
    progress(
        Event(
            "build",
            f"test accuracy {evaluation.accuracy:.4f}; gates "
            f"{'passed' if gate.passed else 'FAILED: ' + '; '.join(gate.reasons)}",
        )
    )
    return Evaluated(evaluation, gate, test_logits, test_emb, val_logits, val_emb)
