"""The bundle, kennel's unit of deployment: ``model.onnx`` + ``kennel-model.json`` (everything a
runtime needs to reproduce preprocessing, plus provenance and the sha256 of every other file)
+ the test report + a model card. JSON and ONNX only: loading a bundle never unpickles."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kennel import __version__
from kennel.train.augment import IMAGENET_MEAN, IMAGENET_STD

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


def metadata(
    *,
    name: str,
    version: int,
    labels: list[str],
    image_size: int,
    embedding_dim: int,
    temperature: float,
    files: dict[str, bytes],
    metrics: dict[str, Any],
    gates: dict[str, Any],
    dataset: str,
    dataset_version: str,
    run_id: str,
    params: dict[str, Any],
    parity: dict[str, Any],
    quantization: dict[str, Any] | None,
    reference: dict[str, Any],
    git: str | None,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "name": name,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(),
        "labels": labels,
        "input": {
            "name": "input",
            "dtype": "float32",
            "layout": "NCHW",
            "shape": [None, 3, image_size, image_size],
        },
        "preprocessing": {
            "decode": "kennel.imaging.decode: EXIF orientation applied, any mode -> 8-bit RGB",
            "resize": f"shorter side to {image_size} px, bilinear (Pillow)",
            "crop": f"centre {image_size}x{image_size}",
            "scale": "divide by 255",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "channel_order": "RGB",
        },
        "outputs": {"logits": "logits", "embedding": "embedding", "embedding_dim": embedding_dim},
        "temperature": temperature,
        "files": {f: hashlib.sha256(data).hexdigest() for f, data in sorted(files.items())},
        "metrics": metrics,
        "gates": gates,
        "dataset": {"name": dataset, "version": dataset_version},
        "run_id": run_id,
        "params": params,
        "parity": parity,
        "quantization": quantization,
        "reference": reference,
        "git_commit": git,
        "libraries": library_versions(),
    }


def card(meta: dict[str, Any]) -> str:
    m = meta["metrics"]
    per_class = "\n".join(
        f"| {c} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | {v['support']} |"
        for c, v in m.get("per_class", {}).items()
    )
    gates = meta["gates"]
    return f"""# Model card: {meta["name"]} v{meta["version"]}

Classifies an image as one of: {", ".join(meta["labels"])}.

- Architecture: {meta["params"].get("arch")} at {meta["input"]["shape"][2]} px
- Trained on dataset `{meta["dataset"]["name"]}` version `{meta["dataset"]["version"]}`
  (its train split; validation carved from train; evaluated once on the untouched test split)
- Run `{meta["run_id"]}`, code `{meta["git_commit"] or "unknown"}`

## Test results

Accuracy {m.get("accuracy", 0):.4f} on {m.get("n", 0)} images.

| class | precision | recall | F1 | support |
| --- | --- | --- | --- | --- |
{per_class}

Recall gap between classes: {m.get("bias", {}).get("recall_gap", 0):.4f}.
Calibration: temperature {meta["temperature"]:.3f}.

## Quality gates

{"Passed." if gates.get("passed") else "FAILED: " + "; ".join(gates.get("reasons", []))}

## Intended use and limits

Pet park CCTV frames and photos of single cats or dogs. Images with neither (or both) are
outside the training distribution: the model still answers one of its labels, so callers should
use the confidence. Night, fog and rain shift the inputs; monitor drift before trusting it there.
"""


def serialise(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, indent=2, sort_keys=True).encode()
