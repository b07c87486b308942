"""The bundle, kennel's unit of deployment: ``model.onnx`` + ``kennel-model.json`` (everything a
runtime needs to reproduce preprocessing, plus provenance and the sha256 of every other file)
+ the test report + a model card. JSON and ONNX only: loading a bundle never unpickles."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kennel import __version__
from kennel.config import TrainConfig
from kennel.evaluate.gates import GateResult
from kennel.evaluate.report import Evaluation, Summary
from kennel.portable import JPEG_DRAFT
from kennel.train.augment import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:  # annotations only: quantize loads ONNX Runtime's quantization tools
    from kennel.package.quantize import Quantized
    from kennel.package.verify import Parity

FORMAT = "kennel-model/1"
MODEL, INT8, METADATA = "model.onnx", "model.int8.onnx", "kennel-model.json"
REPORT_JSON, REPORT_HTML, CARD = "report.json", "report.html", "MODEL_CARD.md"


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def library_versions() -> dict[str, str]:
    versions = {"kennel": __version__}
    for name in ("torch", "onnx", "onnxruntime", "numpy", "pillow"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@dataclass(frozen=True)
class BundleMetadata:
    """What ``kennel-model.json`` says: everything a runtime needs to reproduce preprocessing,
    the sha256 of every other file, and where the model came from."""

    name: str
    version: int
    created_at: str
    labels: tuple[str, ...]
    image_size: int
    embedding_dim: int
    temperature: float
    files: dict[str, str]  # file name -> sha256
    metrics: Summary
    gates: GateResult
    dataset: str
    dataset_version: str
    run_id: str
    params: TrainConfig
    parity: Parity
    quantization: Quantized | None
    reference: dict[str, Any]  # training-time statistics that monitoring compares against
    git_commit: str | None
    libraries: dict[str, str]
    frame: dict[str, Any] = field(default_factory=dict)  # kennel.portable.FrameSpec
    ood: dict[str, Any] = field(default_factory=dict)  # kennel.portable.PetCheck's settings

    def with_file(self, name: str, data: bytes) -> BundleMetadata:
        return replace(self, files={**self.files, name: hashlib.sha256(data).hexdigest()})

    def as_dict(self) -> dict[str, object]:
        size = self.image_size
        return {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at,
            "labels": list(self.labels),
            "input": {
                "name": "input",
                "dtype": "float32",
                "layout": "NCHW",
                "shape": [None, 3, size, size],
            },
            "preprocessing": {
                "decode": "kennel.imaging.decode: EXIF orientation applied, any mode -> 8-bit RGB",
                # a JPEG at 1/2, 1/4 or 1/8 scale while both sides stay >= this x size
                "jpeg_draft": JPEG_DRAFT,
                "resize": f"shorter side to {size} px, bilinear (Pillow)",
                "crop": f"centre {size}x{size} (pictures within frame.max_aspect of square)",
                "frame": self.frame or {"policy": "centre"},
                "scale": "divide by 255",
                "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD),
                "channel_order": "RGB",
            },
            "outputs": {
                "logits": "logits",
                "embedding": "embedding",
                "embedding_dim": self.embedding_dim,
                **({"pet": "pet"} if self.ood.get("method") == "imagenet" else {}),
            },
            **({"ood": self.ood} if self.ood else {}),
            "temperature": self.temperature,
            "files": dict(self.files),
            "metrics": self.metrics.as_dict(),
            "gates": self.gates.as_dict(),
            "dataset": {"name": self.dataset, "version": self.dataset_version},
            "run_id": self.run_id,
            "params": params(self.params),
            "parity": self.parity.as_dict(),
            "quantization": self.quantization.as_dict() if self.quantization else None,
            "reference": self.reference,
            "git_commit": self.git_commit,
            "libraries": self.libraries,
        }

    def to_json(self) -> bytes:
        return serialise(self.as_dict())


def params(config: TrainConfig) -> dict[str, object]:
    """A training configuration as bundles, runs and reports record it (without the search)."""
    return config.model_dump(exclude={"search"})


def metadata(
    *,
    name: str,
    version: int,
    labels: list[str],
    image_size: int,
    embedding_dim: int,
    temperature: float,
    files: dict[str, bytes],
    metrics: Summary,
    gates: GateResult,
    dataset: str,
    dataset_version: str,
    run_id: str,
    params: TrainConfig,
    parity: Parity,
    quantization: Quantized | None,
    reference: dict[str, Any],
    git: str | None,
    frame: dict[str, Any] | None = None,
    ood: dict[str, Any] | None = None,
) -> BundleMetadata:
    return BundleMetadata(
        name=name,
        version=version,
        created_at=datetime.now(UTC).isoformat(),
        labels=tuple(labels),
        image_size=image_size,
        embedding_dim=embedding_dim,
        temperature=temperature,
        files={f: hashlib.sha256(data).hexdigest() for f, data in sorted(files.items())},
        metrics=metrics,
        gates=gates,
        dataset=dataset,
        dataset_version=dataset_version,
        run_id=run_id,
        params=params,
        parity=parity,
        quantization=quantization,
        reference=reference,
        git_commit=git,
        libraries=library_versions(),
        frame=frame or {},
        ood=ood or {},
    )


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MARKUP = re.compile(r"([\\`*\[\]|<>&])")  # an intraword "_" is no emphasis: kept


def _md(text: str) -> str:
    """``text`` as literal Markdown: a label is data (a manifest may give one any text), so
    no HTML, table cell break or terminal escape reaches a reader of the card."""
    shown = _CONTROL.sub(lambda c: f"\\x{ord(c[0]):02x}", text)
    return _MARKUP.sub(lambda c: f"&#{ord(c[1])};", shown)


def card(meta: BundleMetadata) -> str:
    m = meta.metrics
    per_class = "\n".join(
        f"| {_md(c)} | {v.precision:.4f} | {v.recall:.4f} | {v.f1:.4f} | {v.support} |"
        for c, v in m.per_class.items()
    )
    gates = meta.gates
    return f"""# Model card: {meta.name} v{meta.version}

Classifies an image as one of: {", ".join(_md(label) for label in meta.labels)}.

- Architecture: {meta.params.arch} at {meta.image_size} px
- Trained on dataset `{meta.dataset}` version `{meta.dataset_version}`
  (its train split; validation carved from train; evaluated once on the untouched test split)
- Run `{meta.run_id}`, code `{meta.git_commit or "unknown"}`

## Test results

Accuracy {m.accuracy:.4f} on {m.n} images.

| class | precision | recall | F1 | support |
| --- | --- | --- | --- | --- |
{per_class}

Recall gap between classes: {m.recall_gap:.4f}.
Calibration: temperature {meta.temperature:.3f}.

## Quality gates

{"Passed." if gates.passed else "FAILED: " + "; ".join(_md(r) for r in gates.reasons)}

## Intended use and limits

Pet park CCTV frames and photos of single cats or dogs. Wide frames are read under the
`{meta.frame.get("policy", "centre")}` frame policy. Images with neither (or both) are outside
the training distribution: the model still answers one of its labels, and every answer carries
`pet`, the out-of-distribution judgement (method `{meta.ood.get("method", "none")}`): believe
the label only where `pet` is true. Night, fog and rain shift the inputs; monitor drift before
trusting it there.
"""


def report(evaluation: Evaluation, gates: GateResult, parity: Parity, predictions: str) -> bytes:
    """``report.json``: the evaluation, the gates and parity, and the digest of the stored
    predictions the numbers can be recomputed from."""
    return serialise(
        {
            **evaluation.as_dict(),
            "gates": gates.as_dict(),
            "parity": parity.as_dict(),
            "predictions_sha256": predictions,
        }
    )


def serialise(document: Mapping[str, object]) -> bytes:
    return json.dumps(document, indent=2, sort_keys=True).encode()
