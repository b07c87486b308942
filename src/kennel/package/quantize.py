"""Static int8 quantization with ONNX Runtime's own tooling, kept only when it pays off."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from kennel import onnxrt as runtime

MAX_ACCURACY_DROP = 0.005
_BATCH = 64


class _Reader(CalibrationDataReader):  # type: ignore[misc]
    def __init__(self, x: np.ndarray, batch: int = 16) -> None:
        self.batches = iter([x[i : i + batch] for i in range(0, len(x), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {"input": batch}


@dataclass(frozen=True)
class Quantized:
    model: bytes | None  # None when not kept
    kept: bool
    accuracy_fp32: float
    accuracy_int8: float
    latency_fp32_ms: float
    latency_int8_ms: float
    reason: str

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("model")
        return data


def _latency_ms(model: bytes, x: np.ndarray, repeats: int = 5) -> float:
    sess = runtime.session(model)
    runtime.run(sess, x[:8])
    began = time.perf_counter()
    for _ in range(repeats):
        runtime.run(sess, x, batch=32)
    return (time.perf_counter() - began) / repeats / len(x) * 1000


def to_int8(fp32: bytes, calibration: np.ndarray) -> bytes:
    """Static int8 (QDQ, per-channel weights) calibrated on ``calibration`` inputs."""
    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(fp32)
        quant_pre_process(str(src), str(pre))
        quantize_static(
            str(pre),
            str(dst),
            _Reader(calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
        return dst.read_bytes()


def quantize(
    fp32: bytes,
    calibration: np.ndarray,
    test_images: np.ndarray,
    test_y: np.ndarray,
    prepare: Callable[[np.ndarray], np.ndarray],
) -> Quantized:
    """``calibration``: model inputs; ``test_images``: what ``prepare`` turns into model inputs
    a batch at a time (the whole test split as float32 inputs was 2.5 GB at 320 px)."""
    int8 = to_int8(fp32, calibration)

    def accuracy(model: bytes) -> float:
        sess, right = runtime.session(model), 0
        for lo in range(0, len(test_images), _BATCH):
            logits = runtime.run(sess, prepare(test_images[lo : lo + _BATCH]))[0]
            right += int((logits.argmax(1) == test_y[lo : lo + _BATCH]).sum())
        return right / max(1, len(test_images))

    acc32, acc8 = accuracy(fp32), accuracy(int8)
    timed = prepare(test_images[:64])
    lat32, lat8 = _latency_ms(fp32, timed), _latency_ms(int8, timed)
    reason = verdict(acc32, acc8, lat32, lat8)
    kept = reason.startswith("kept")
    return Quantized(int8 if kept else None, kept, acc32, acc8, lat32, lat8, reason)


def verdict(acc32: float, acc8: float, lat32: float, lat8: float) -> str:
    """Keep int8 when it is faster and loses at most 0.5 points (a drop of exactly 0.5 is
    within: the difference is compared in rounded points, not in raw floats)."""
    drop = round(100 * (acc32 - acc8), 6)
    if drop > 100 * MAX_ACCURACY_DROP:
        return f"dropped: accuracy fell {drop:.2f} points (> 0.5)"
    if lat8 >= lat32:
        return f"dropped: not faster ({lat8:.2f} ms vs {lat32:.2f} ms per image)"
    return "kept: within 0.5 points and faster"
