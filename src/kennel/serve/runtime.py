"""The Predictor: bundle -> safe decode -> the training preprocessing -> ONNX Runtime -> result.

REST, video, batch scoring, the messaging worker, the model-as-data subscriber and the embedded
package all call this class, so every pattern answers identically for the same image.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kennel import onnxrt
from kennel.errors import IntegrityError, NotFoundError
from kennel.imaging import DEFAULT_MAX_PIXELS, Header, ImageRejected, decode, open_checked, quality
from kennel.portable import (
    FrameSpec,
    PetCheck,
    jpeg_draft,
    normalise,
    rejecting,
    run,
    score,
    views,
)

METADATA = "kennel-model.json"
MODEL = "model.onnx"
INT8 = "model.int8.onnx"
SUPPORTED_FORMAT = "kennel-model/1"


@dataclass(frozen=True)
class Bundle:
    """A verified bundle in memory: its metadata and the ONNX bytes it serves."""

    meta: dict[str, Any]
    model: bytes
    files: Mapping[str, bytes] = field(repr=False)

    @cached_property
    def metadata_sha256(self) -> str:
        """The digest of the metadata file (its run, its registration, every file's digest):
        what names this bundle, as the registry keeps it. Hashed once (a few hundred kB)."""
        return hashlib.sha256(self.files[METADATA]).hexdigest()

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def version(self) -> int:
        return int(self.meta["version"])

    @property
    def labels(self) -> list[str]:
        return list(self.meta["labels"])

    @property
    def image_size(self) -> int:
        return int(self.meta["input"]["shape"][2])

    @property
    def int8(self) -> bool:
        """Whether the int8 model was chosen: what ``from_files(files, prefer_int8=...)``
        must be told to rebuild this bundle elsewhere."""
        return self.model == self.files.get(INT8)

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], *, prefer_int8: bool = False) -> Bundle:
        """Check every file against the sha256 its metadata declares, then load."""
        if METADATA not in files:
            raise NotFoundError(f"bundle has no {METADATA}")
        meta = json.loads(files[METADATA])
        if meta.get("format") != SUPPORTED_FORMAT:
            raise IntegrityError(f"unsupported bundle format {meta.get('format')!r}")
        for name, digest in meta.get("files", {}).items():
            if name not in files:
                raise IntegrityError(f"bundle file {name} is missing")
            actual = hashlib.sha256(files[name]).hexdigest()
            if actual != digest:
                raise IntegrityError(f"bundle file {name} is corrupt: sha256 {actual} != {digest}")
        choice = INT8 if prefer_int8 and INT8 in files else MODEL
        if choice not in meta.get("files", {}):
            raise IntegrityError(f"bundle does not declare {choice}")
        return cls(meta=meta, model=files[choice], files=dict(files))

    @classmethod
    def from_dir(cls, path: Path, *, prefer_int8: bool = False) -> Bundle:
        files = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
        return cls.from_files(files, prefer_int8=prefer_int8)


@dataclass(frozen=True)
class Prediction:
    id: str
    label: str
    confidence: float
    probabilities: dict[str, float]
    model: str
    version: int
    latency_ms: float
    quality: dict[str, float]
    embedding: np.ndarray = field(repr=False, compare=False)
    pet: bool | None = None  # False: no cat or dog there at all (out of distribution)
    pet_score: float | None = None  # what ``pet`` was judged from, in [0, 1]

    def as_dict(self, *, embedding: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prediction_id": self.id,
            "label": self.label,
            "confidence": self.confidence,
            "probabilities": self.probabilities,
            "pet": self.pet,
            "pet_score": None if self.pet_score is None else round(self.pet_score, 5),
            "model": {"name": self.model, "version": self.version},
            "latency_ms": round(self.latency_ms, 3),
        }
        if embedding:
            out["embedding"] = self.embedding.tolist()
        return out


# an image opened by ``Predictor.open``: Pillow's lazy image (no pixel read yet) and its header
Opened = tuple[Image.Image, Header]


@dataclass(frozen=True)
class Prepared:
    """A decoded, preprocessed input with the quality stats monitoring needs: one view, or
    several when the bundle's frame policy tiles a wide picture."""

    views: np.ndarray  # float32 [V, 3, S, S]
    quality: dict[str, float]

    @property
    def tensor(self) -> np.ndarray:
        """The first view, float32 [3, S, S] (the only one for a picture close to square)."""
        first: np.ndarray = self.views[0]
        return first


class Predictor:
    def __init__(
        self,
        bundle: Bundle,
        *,
        threads: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_bytes: int | None = None,
    ) -> None:
        self.bundle = bundle
        self.session = onnxrt.session(bundle.model, threads)
        pre = bundle.meta["preprocessing"]
        self._mean = np.array(pre["mean"], dtype=np.float32).reshape(3, 1, 1)
        self._std = np.array(pre["std"], dtype=np.float32).reshape(3, 1, 1)
        self._temperature = float(bundle.meta.get("temperature", 1.0) or 1.0)
        self.frame = FrameSpec.of(pre)
        self.draft = jpeg_draft(pre, bundle.image_size)  # as the model's training decoded
        self.check = PetCheck.of(bundle.meta, [o.name for o in self.session.get_outputs()])
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes  # decode memory one image may take (see imaging.decode_cost)

    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def version(self) -> int:
        return self.bundle.version

    def prepare_image(
        self, image: Image.Image, extra: Mapping[str, float] | None = None
    ) -> Prepared:
        """Preprocess an RGB image as the bundle's frame policy says: the centre square a
        model was trained on, or for a picture far from square its letterbox or tiles."""
        tensor = self.views_of(image)
        stats = quality(image, phash=False)  # nothing downstream dedupes served inputs
        q = {
            "brightness": stats.brightness,
            "contrast": stats.contrast,
            "sharpness": stats.sharpness,
            "width": float(image.width),
            "height": float(image.height),
            **(extra or {}),
        }
        return Prepared(tensor, q)

    def open(self, data: bytes, *, max_bytes: int | None = None) -> Opened:
        """The checked header of untrusted bytes, no pixel decoded (the decode memory limited
        to ``max_bytes`` as well as the Predictor's own); raises ImageRejected. Give the
        result to ``prepare`` so that the header is not parsed a second time."""
        limits = [b for b in (max_bytes, self.max_bytes) if b is not None]
        return open_checked(
            data, max_pixels=self.max_pixels, max_bytes=min(limits, default=None), min_side=1
        )

    def prepare(self, data: bytes, opened: Opened | None = None) -> Prepared:
        """Decode untrusted bytes and preprocess; raises ImageRejected with the reason and
        nothing else, so every caller can answer a bad input without dying on it.
        ``opened``: what ``open(data)`` returned, when the header was checked first."""
        decoded = decode(
            data,
            max_pixels=self.max_pixels,
            max_bytes=self.max_bytes,
            min_side=1,
            draft=self.draft,
            opened=opened,
        )
        # the size the file declares, not the draft's: monitoring compares real sizes
        size = {"width": float(decoded.width), "height": float(decoded.height)}
        with rejecting():  # preprocessing a decoded but odd picture must not escape either
            return self.prepare_image(decoded.image, size)

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw logits and embeddings for a float32 [N, 3, S, S] batch."""
        outputs = run(self.session, batch)
        return outputs["logits"], outputs["embedding"]

    def views_of(self, image: Image.Image) -> np.ndarray:
        """An RGB image's model inputs under the frame policy, float32 [V, 3, S, S]: what
        ``prepare_image`` makes, without the quality statistics."""
        return normalise(views(image, self.bundle.image_size, self.frame), self._mean, self._std)

    def answering_logits(self, items: Sequence[np.ndarray]) -> np.ndarray:
        """Per picture (its ``views_of``), the raw logits [N, classes] of the view its answer
        comes from (the frame policy's pick among its views, as ``predict_prepared`` makes
        it)."""
        counts = [len(v) for v in items]
        outputs = run(self.session, np.concatenate(items))
        scored = score(outputs, counts, temperature=self._temperature, check=self.check)
        starts = np.cumsum([0, *counts[:-1]])
        logits: np.ndarray = outputs["logits"][
            [s + a.view for s, a in zip(starts, scored, strict=True)]
        ]
        return logits

    def predict_prepared(self, items: Sequence[Prepared]) -> list[Prediction]:
        if not items:
            return []
        began = time.perf_counter()
        outputs = run(self.session, np.concatenate([p.views for p in items]))
        scored = score(
            outputs,
            [len(p.views) for p in items],
            temperature=self._temperature,
            check=self.check,
        )
        latency = (time.perf_counter() - began) * 1000 / len(items)
        labels = self.bundle.labels
        out = []
        for item, s in zip(items, scored, strict=True):
            k = int(s.probabilities.argmax())
            quality = item.quality
            if s.views > 1:
                quality = {**quality, "views": float(s.views), "view": float(s.view)}
            out.append(
                Prediction(
                    id=uuid.uuid4().hex,
                    label=labels[k],
                    confidence=float(s.probabilities[k]),
                    probabilities={c: float(s.probabilities[j]) for j, c in enumerate(labels)},
                    model=self.name,
                    version=self.version,
                    latency_ms=latency,
                    quality=quality,
                    embedding=s.embedding,
                    pet=s.pet,
                    pet_score=s.pet_score,
                )
            )
        return out

    def predict(self, images: Sequence[bytes]) -> list[Prediction]:
        """Predict many encoded images; raises ImageRejected on the first bad one."""
        return self.predict_prepared([self.prepare(data) for data in images])

    def predict_one(self, data: bytes) -> Prediction:
        return self.predict([data])[0]


__all__ = ["Bundle", "ImageRejected", "Prediction", "Predictor", "Prepared"]
