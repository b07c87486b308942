"""The preprocessing contract and a minimal model runtime, in one kennel-free module.

Training, the Predictor and the embedded wheel built by ``kennel export package`` all use these
functions; the wheel ships this very file, so an embedded model sees exactly the pixels and
the ONNX Runtime settings the service uses. It needs only numpy, Pillow and onnxruntime: keep
it free of kennel imports.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

MAX_PIXELS = 50_000_000


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB: 16-bit scaled (not clipped), alpha over white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        grey = np.clip(arr * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min(initial=0)), float(arr.max(initial=1))
        grey = ((arr - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def square(image: Image.Image, size: int) -> np.ndarray:
    """Shorter side resized to ``size`` (bilinear), centre crop to size x size, uint8 HWC."""
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    resized = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    cropped = resized.crop((left, top, left + size, top + size))
    return np.asarray(cropped, dtype=np.uint8)


def normalise(pixels: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 HWC -> float32 CHW scaled to [0, 1] and standardised per channel."""
    tensor = (pixels.astype(np.float32).transpose(2, 0, 1) / 255.0 - mean) / std
    return np.ascontiguousarray(tensor, dtype=np.float32)


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


class Model:
    """A bundle folder (``model.onnx`` + ``kennel-model.json``) as a callable classifier.

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
        self.size = int(self.meta["input"]["shape"][2])
        self.labels = list(self.meta["labels"])
        self.temperature = float(self.meta.get("temperature", 1.0) or 1.0)
        self.session = session((bundle / "model.onnx").read_bytes(), threads)

    @staticmethod
    def rgb(image: bytes | str | Path | Image.Image) -> Image.Image:
        """Open bytes, a path or a Pillow image as RGB with its EXIF orientation applied."""
        if isinstance(image, Image.Image):
            return to_rgb(ImageOps.exif_transpose(image))
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        with Image.open(io.BytesIO(data)) as opened:
            if opened.width * opened.height > MAX_PIXELS:
                raise ValueError(f"image too large: {opened.width}x{opened.height} pixels")
            opened.seek(0)
            opened.load()
            return to_rgb(ImageOps.exif_transpose(opened))

    def predict_many(self, images: list[bytes | str | Path | Image.Image]) -> list[dict[str, Any]]:
        batch = np.stack(
            [normalise(square(self.rgb(i), self.size), self.mean, self.std) for i in images]
        )
        logits = self.session.run(None, {"input": batch})[0]
        probs = softmax(logits, self.temperature)
        out = []
        for row in probs:
            k = int(row.argmax())
            out.append(
                {
                    "label": self.labels[k],
                    "confidence": float(row[k]),
                    "probabilities": {c: float(row[j]) for j, c in enumerate(self.labels)},
                    "model": {"name": self.meta["name"], "version": int(self.meta["version"])},
                }
            )
        return out

    def predict(self, image: bytes | str | Path | Image.Image) -> dict[str, Any]:
        """Label, confidence and per-class probabilities for one image."""
        return self.predict_many([image])[0]
