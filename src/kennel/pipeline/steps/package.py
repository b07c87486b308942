"""Trained model -> everything its bundle holds: ONNX checked for parity with PyTorch, an int8
model when it pays, the test report, the weights and predictions, and the drift reference."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import safetensors.torch

from kennel.config import ModelConfig, TrainConfig
from kennel.datasets.manifest import Row
from kennel.errors import PackagingError
from kennel.evaluate.drift import IMAGE_STATS, reference_statistics
from kennel.evaluate.gates import GateResult
from kennel.evaluate.report import Summary, render_html
from kennel.package import bundle
from kennel.package.export import to_onnx
from kennel.package.pethead import PET_CLASSES_TEXT, with_pet
from kennel.package.quantize import Quantized, quantize
from kennel.package.verify import Parity, normalised, pet_scores
from kennel.package.verify import check as parity_check
from kennel.pipeline.steps.evaluate import Evaluated
from kennel.pipeline.steps.prepare import BuildPlan
from kennel.pipeline.steps.train import TrainedModel
from kennel.portable import EMBEDDING_THRESHOLD, FrameSpec, softmax
from kennel.progress import Event, Progress
from kennel.storage import sha256_hex


@dataclass(frozen=True)
class Package:
    """A model ready to register: ``files(version)`` is its bundle under any version number."""

    name: str
    labels: list[str]
    config: TrainConfig
    dataset: str
    dataset_version: str
    run_id: str
    embedding_dim: int
    temperature: float
    summary: Summary
    gates: GateResult
    parity: Parity
    quantized: Quantized | None
    reference: dict[str, Any]  # training-time statistics, for monitoring to compare against
    ood: dict[str, Any]  # how a prediction is judged "no pet" (kennel.portable.model.PetCheck)
    git_commit: str | None
    onnx: bytes
    report_json: bytes
    report_html: bytes
    weights: bytes  # safetensors: what a warm start loads
    predictions: bytes  # parquet: the test logits the report's numbers come from

    @property
    def weights_sha256(self) -> str:
        return sha256_hex(self.weights)

    @property
    def predictions_sha256(self) -> str:
        return sha256_hex(self.predictions)

    def files(self, version: int) -> dict[str, bytes]:
        files = {
            bundle.MODEL: self.onnx,
            bundle.REPORT_JSON: self.report_json,
            bundle.REPORT_HTML: self.report_html,
        }
        if self.quantized is not None and self.quantized.model is not None:
            files[bundle.INT8] = self.quantized.model
        meta = bundle.metadata(
            name=self.name,
            version=version,
            labels=self.labels,
            image_size=self.config.image_size,
            embedding_dim=self.embedding_dim,
            temperature=self.temperature,
            files=files,
            metrics=self.summary,
            gates=self.gates,
            dataset=self.dataset,
            dataset_version=self.dataset_version,
            run_id=self.run_id,
            params=self.config,
            parity=self.parity,
            quantization=self.quantized,
            reference=self.reference,
            frame=FrameSpec(self.config.frame).as_dict(),
            ood=self.ood,
            git=self.git_commit,
        )
        files[bundle.CARD] = bundle.card(meta).encode()
        files[bundle.METADATA] = meta.with_file(bundle.CARD, files[bundle.CARD]).to_json()
        return files


def export(
    trained: TrainedModel, plan: BuildPlan, model_config: ModelConfig, progress: Progress
) -> tuple[bytes, Parity, dict[str, Any]]:
    """The model as ONNX (with the ``pet`` output when it has an ImageNet head to ask),
    refused (PackagingError) unless ONNX Runtime reproduces PyTorch on up to
    ``parity_images`` real images (test first, then validation, then train); and how its
    predictions are judged "no pet", with the share of those images judged a pet."""
    model, data, splits = trained.fit.model, trained.data, plan.splits
    wrapped = with_pet(model)
    onnx_model = to_onnx(wrapped or model, trained.run.config.image_size)
    pool = np.concatenate([splits.test, splits.validation, splits.train])
    pool = pool[: model_config.parity_images]
    parity = parity_check(model, onnx_model, data.images[pool])
    ood: dict[str, Any] = {"method": "embedding", "threshold": EMBEDDING_THRESHOLD}
    if wrapped is not None:
        pet = pet_scores(onnx_model, data.images[pool])
        threshold = model_config.pet_threshold
        ood = {
            "method": "imagenet",
            "threshold": threshold,
            "classes": PET_CLASSES_TEXT,
            "shared_blocks": wrapped.shared,
            "photos_judged_pet": round(float(np.mean(pet >= threshold)), 4),
        }
        progress(
            Event(
                "build",
                f"pet judgement: {ood['photos_judged_pet']:.1%} of {len(pool)} labelled "
                f"photos (test split first) score at least {threshold}",
            )
        )
    progress(
        Event(
            "build",
            f"parity on {parity.images} images: max |logit diff| "
            f"{parity.max_abs_logit_diff:.2e}, {parity.label_mismatches} label mismatches",
        )
    )
    if not parity.passed:
        raise PackagingError(
            f"ONNX Runtime disagrees with PyTorch: max logit diff "
            f"{parity.max_abs_logit_diff:.2e} (tolerance {parity.tolerance} + "
            f"{parity.relative_tolerance} x |logit|), max probability diff "
            f"{parity.max_abs_prob_diff:.2e} (tolerance {parity.tolerance}), "
            f"{parity.label_mismatches} label mismatches"
        )
    return onnx_model, parity, ood


def package_model(
    trained: TrainedModel,
    evaluated: Evaluated,
    plan: BuildPlan,
    model: ModelConfig,
    progress: Progress,
) -> Package:
    """Export (with parity), quantize when kennel.yaml asks, and write the report."""
    onnx_model, parity, ood = export(trained, plan, model, progress)
    data, splits, evaluation = trained.data, plan.splits, evaluated.evaluation
    test_labels = data.labels[splits.test]
    quantized = None
    if model.quantize:
        quantized = quantize(
            onnx_model,
            normalised(data.images[splits.train[:128]]),
            data.images[splits.test],
            test_labels,
            normalised,
        )
        progress(Event("build", f"int8: {quantized.reason}"))
    state = trained.fit.model.state_dict()
    weights = safetensors.torch.save({k: v.contiguous() for k, v in state.items()})
    predictions = _predictions_parquet(
        plan.rows, splits.test, test_labels, evaluated.test_logits, plan.classes
    )
    temperature = evaluation.calibration.temperature
    reference = _reference(
        plan.rows,
        splits.train,
        np.concatenate([evaluated.val_logits, evaluated.test_logits]),
        np.concatenate([evaluated.val_embeddings, evaluated.test_embeddings]),
        plan.classes,
        temperature,
    )
    html = render_html(
        f"{model.name}: test report",
        evaluation,
        test_labels,
        evaluated.test_logits,
        data.images[splits.test],
        params=bundle.params(trained.run.config),
        gates=evaluated.gates.as_dict(),
        parity=parity.as_dict(),
    )
    return Package(
        name=model.name,
        labels=plan.classes,
        config=trained.run.config,
        dataset=plan.version.dataset,
        dataset_version=plan.version.id,
        run_id=trained.run.id,
        embedding_dim=int(evaluated.test_embeddings.shape[1]),
        temperature=temperature,
        summary=evaluation.summary(),
        gates=evaluated.gates,
        parity=parity,
        quantized=quantized,
        reference=reference,
        ood=ood,
        git_commit=bundle.git_commit(),
        onnx=onnx_model,
        report_json=bundle.report(evaluation, evaluated.gates, parity, sha256_hex(predictions)),
        report_html=html.encode(),
        weights=weights,
        predictions=predictions,
    )


def _predictions_parquet(
    rows: list[Row], idx: np.ndarray, labels: np.ndarray, logits: np.ndarray, classes: list[str]
) -> bytes:
    table = pa.table(
        {
            "uri": [rows[i].uri for i in idx],
            "sha256": [rows[i].sha256 for i in idx],
            "label": [classes[y] for y in labels],
            **{f"logit_{c}": logits[:, k].astype(np.float64) for k, c in enumerate(classes)},
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _reference(
    rows: list[Row],
    train_idx: np.ndarray,
    held_logits: np.ndarray,
    held_emb: np.ndarray,
    classes: list[str],
    temperature: float,
) -> dict[str, Any]:
    """Training-time reference statistics, computed once, for monitoring to compare against:
    summaries for people, samples and a PCA of the embedding for the drift tests."""
    stats: dict[str, object] = {}
    samples: dict[str, np.ndarray] = {}
    for key in IMAGE_STATS:
        values = np.array([getattr(rows[i], key) for i in train_idx], dtype=np.float64)
        samples[key] = values
        stats[key] = {
            "quantiles": np.quantile(values, np.linspace(0, 1, 21)).tolist(),
            "mean": float(values.mean()),
            "std": float(values.std()),
        }
    labels = [rows[i].label for i in train_idx]
    probs = softmax(held_logits, temperature)
    return {
        "image_stats": stats,
        "class_ratio": {c: labels.count(c) / len(labels) for c in sorted(set(labels))},
        **reference_statistics(samples, probs, classes, held_emb),
    }
