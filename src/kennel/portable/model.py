"""Running a bundle: ONNX Runtime over a picture's views, the winning view, and the judgement
"is there a cat or a dog at all" (the out-of-distribution check) that every answer carries.

A model only knows its labels: shown a butterfly it still answers "cat" or "dog". The bundle
says how to tell (``ood`` in ``kennel-model.json``, read by :class:`PetCheck`):

- ``imagenet``: the ONNX model has a third output, ``pet``: the probability mass that the
  frozen ImageNet classifier of the pretrained backbone puts on its cat and dog classes. It
  knows a thousand other things (lawns, fences, insects, text), so a picture of one of them
  gets little mass whatever the trained head says.
- ``embedding``: for bundles without that output (models trained from scratch, bundles made
  before it existed): how far the embedding lies from the held-out photos' embeddings kept in
  the bundle's reference, as the share of those photos that lie further from the rest.
- ``none``: the bundle has neither; the judgement is unknown (``pet`` is None).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from .decoding import ImageRejected, decode_rgb, rejecting, to_rgb
from .frames import FrameSpec, jpeg_draft, normalise, views

PET_OUTPUT = "pet"
PET_THRESHOLD = 0.35  # imagenet: the default of kennel.yaml's model.pet_threshold
EMBEDDING_THRESHOLD = 0.01  # embedding: 1 % of the held-out photos lie further out
NEIGHBOURS = 5  # k of the k-nearest-neighbour distance the embedding check uses


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (the calibrated probabilities)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    exp = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float32)


def session(model: bytes, threads: int | None = None) -> Any:
    """An ONNX Runtime session: intra-op threads = cores, no spinning, full optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def run(session: Any, batch: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of ``session`` for a float32 [N, 3, S, S] batch, by name."""
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {"input": batch})
    return {name: np.asarray(value) for name, value in zip(names, values, strict=True)}


def _knn(points: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """Mean distance of each point to its ``k`` nearest reference points."""
    d2 = (
        (points * points).sum(1)[:, None]
        - 2 * points @ reference.T
        + (reference * reference).sum(1)[None, :]
    )
    nearest = np.sort(np.sqrt(np.maximum(d2, 0.0)), axis=1)[:, :k]
    return np.asarray(nearest.mean(axis=1))


# The most bytes a path given to ``predict`` is read to: a picture is megabytes; a device
# (/dev/zero), a pipe or a video file named by mistake was read whole until memory ran out.
MAX_FILE_BYTES = 64 * 1024 * 1024


def read_image_file(image: str | Path) -> bytes:
    """The bytes of the image file at ``image``; ImageRejected (a ValueError) for anything
    else: no such file, a folder, a device or pipe, or a file over MAX_FILE_BYTES."""
    if not isinstance(image, (str, Path)):
        kind = type(image).__name__
        raise ImageRejected(f"expected image bytes, a path or a Pillow image, not {kind}")
    path = Path(image)
    try:  # non-blocking: opening a pipe must not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ImageRejected(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageRejected(f"{path} is not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise ImageRejected(f"{path} is {info.st_size:,} bytes, over {MAX_FILE_BYTES:,}")
        chunks, size = [], 0
        while size <= MAX_FILE_BYTES and (chunk := os.read(fd, 1 << 20)):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class PetCheck:
    """How a bundle judges whether a picture shows a pet at all (see the module docstring).

    ``score`` is in [0, 1], higher meaning more like the pets the model was trained for; a
    picture with ``score < threshold`` is out of distribution: no pet."""

    method: str  # "imagenet", "embedding" or "none"
    threshold: float
    mean: np.ndarray | None = None  # embedding: the reference PCA
    components: np.ndarray | None = None
    sample: np.ndarray | None = None
    spread: np.ndarray | None = None  # sorted leave-one-out distances within the sample

    @classmethod
    def of(cls, meta: Mapping[str, Any], outputs: Sequence[str]) -> PetCheck:
        ood = meta.get("ood") or {}
        method = ood.get("method")
        if PET_OUTPUT in outputs and method in (None, "imagenet"):
            return cls("imagenet", float(ood.get("threshold", PET_THRESHOLD)))
        pca = (meta.get("reference") or {}).get("embedding_pca") or {}
        sample = np.asarray(pca.get("sample", []), dtype=np.float64)
        if sample.ndim != 2 or len(sample) <= NEIGHBOURS:
            return cls("none", 0.0)
        k = NEIGHBOURS
        within = _knn(sample, sample, k + 1) * (k + 1) / k  # each point's own 0 left out
        threshold = ood.get("threshold") if method == "embedding" else None
        return cls(
            "embedding",
            float(EMBEDDING_THRESHOLD if threshold is None else threshold),
            mean=np.asarray(pca["mean"], dtype=np.float64),
            components=np.asarray(pca["components"], dtype=np.float64),
            sample=sample,
            spread=np.sort(within),
        )

    def scores(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """One score per row of the outputs, or None when the bundle cannot judge."""
        if self.method == "imagenet":
            return np.asarray(outputs[PET_OUTPUT], dtype=np.float64).reshape(-1)
        if self.method == "embedding":
            assert self.mean is not None and self.components is not None
            assert self.sample is not None and self.spread is not None
            embedding = np.asarray(outputs["embedding"], dtype=np.float64)
            projected = (embedding - self.mean) @ self.components.T
            distance = _knn(projected, self.sample, NEIGHBOURS)
            further = len(self.spread) - np.searchsorted(self.spread, distance, side="left")
            return np.asarray((further + 1) / (len(self.spread) + 1))
        return None

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "threshold": self.threshold}


@dataclass(frozen=True)
class Scored:
    """One picture's answer: the winning view's probabilities and embedding, and the pet
    judgement (``pet`` None when the bundle cannot judge)."""

    probabilities: np.ndarray  # [classes], calibrated
    embedding: np.ndarray
    pet_score: float | None
    pet: bool | None
    view: int  # which of the picture's views won
    views: int


def pick(probabilities: np.ndarray, pet: np.ndarray | None, threshold: float = 0.0) -> int:
    """The view that speaks for a picture: of the views judged a pet (``pet >= threshold``),
    the most confident; when none is, the one that looks most like a pet; when the bundle
    cannot judge, the most confident."""
    confidence = probabilities.max(axis=1)
    if pet is None:
        return int(confidence.argmax())
    judged = pet >= threshold
    if judged.any():
        return int(np.where(judged, confidence, -1.0).argmax())
    return int(pet.argmax())


def score(
    outputs: Mapping[str, np.ndarray],
    counts: Sequence[int],
    *,
    temperature: float,
    check: PetCheck,
) -> list[Scored]:
    """Per-picture answers from the outputs of all their views, ``counts[i]`` views for
    picture ``i``, in order."""
    probs = softmax(outputs["logits"], temperature)
    embeddings = np.asarray(outputs["embedding"])
    pets = check.scores(outputs)
    out, start = [], 0
    for count in counts:
        span = slice(start, start + count)
        pet = pets[span] if pets is not None else None
        best = start + pick(probs[span], pet, check.threshold)
        pet_score = float(pets[best]) if pets is not None else None
        out.append(
            Scored(
                probabilities=probs[best],
                embedding=embeddings[best],
                pet_score=pet_score,
                pet=None if pet_score is None else pet_score >= check.threshold,
                view=best - start,
                views=count,
            )
        )
        start += count
    return out


class Model:
    """A bundle folder (``model.onnx`` + ``kennel-model.json``) as a callable classifier: the
    embedded wheel's runtime, with the service's decoder, frame policy and pet judgement.

    Every file's sha256 is checked against the metadata before anything is loaded.
    """

    def __init__(self, bundle: Path, threads: int | None = None) -> None:
        self.meta = json.loads((bundle / "kennel-model.json").read_bytes())
        for name, digest in self.meta["files"].items():
            path = bundle / name
            if not path.is_file():
                raise ValueError(f"bundle file {name} is missing")
            if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                raise ValueError(f"bundle file {name} is corrupt (sha256 mismatch)")
        pre = self.meta["preprocessing"]
        self.mean = np.array(pre["mean"], dtype=np.float32).reshape(3, 1, 1)
        self.std = np.array(pre["std"], dtype=np.float32).reshape(3, 1, 1)
        self.frame = FrameSpec.of(pre)
        self.size = int(self.meta["input"]["shape"][2])
        self.draft = jpeg_draft(pre, self.size)
        self.labels = list(self.meta["labels"])
        self.temperature = float(self.meta.get("temperature", 1.0) or 1.0)
        self.session = session((bundle / "model.onnx").read_bytes(), threads)
        self.check = PetCheck.of(self.meta, [o.name for o in self.session.get_outputs()])

    @staticmethod
    def rgb(
        image: bytes | str | Path | Image.Image, draft: tuple[int, int] | None = None
    ) -> Image.Image:
        """Open bytes, a path or a Pillow image as RGB with its EXIF orientation applied (a
        JPEG at a reduced scale no smaller than ``draft``); a file that is not an acceptable
        image raises ImageRejected (a ValueError)."""
        if isinstance(image, Image.Image):
            with rejecting():
                return to_rgb(ImageOps.exif_transpose(image))
        data = image if isinstance(image, bytes) else read_image_file(image)
        return decode_rgb(data, draft=draft)[0]

    def predict_many(self, images: list[bytes | str | Path | Image.Image]) -> list[dict[str, Any]]:
        tensors = [
            normalise(views(self.rgb(i, self.draft), self.size, self.frame), self.mean, self.std)
            for i in images
        ]
        outputs = run(self.session, np.concatenate(tensors))
        scored = score(
            outputs, [len(t) for t in tensors], temperature=self.temperature, check=self.check
        )
        out = []
        for s in scored:
            k = int(s.probabilities.argmax())
            out.append(
                {
                    "label": self.labels[k],
                    "confidence": float(s.probabilities[k]),
                    "probabilities": {
                        c: float(s.probabilities[j]) for j, c in enumerate(self.labels)
                    },
                    "pet": s.pet,
                    "pet_score": s.pet_score,
                    "model": {"name": self.meta["name"], "version": int(self.meta["version"])},
                }
            )
        return out

    def predict(self, image: bytes | str | Path | Image.Image) -> dict[str, Any]:
        """Label, confidence, per-class probabilities and whether a pet is there at all
        (``pet``: False when the picture shows no cat or dog, None when the bundle cannot
        judge) for one image."""
        return self.predict_many([image])[0]
