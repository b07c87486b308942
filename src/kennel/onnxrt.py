"""ONNX Runtime sessions configured once for kennel: intra-op threads = cores, no spinning
(idle threads sleep instead of burning the CPU other work needs), full graph optimisation.
Shared by packaging checks and the serving Predictor; imports no PyTorch."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from kennel.portable import session

__all__ = ["run", "session"]


def run(
    sess: ort.InferenceSession, x: np.ndarray, batch: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    logits, embeddings = [], []
    for lo in range(0, len(x), batch):
        out = sess.run(None, {"input": np.ascontiguousarray(x[lo : lo + batch], dtype=np.float32)})
        logits.append(out[0])
        embeddings.append(out[1])
    return np.concatenate(logits), np.concatenate(embeddings)
