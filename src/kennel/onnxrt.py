"""ONNX Runtime sessions configured once for kennel: intra-op threads = cores, no spinning
(idle threads sleep instead of burning the CPU other work needs), full graph optimisation.
Shared by packaging checks and the serving Predictor; imports no PyTorch."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort


def session(model: bytes, threads: int | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def run(
    sess: ort.InferenceSession, x: np.ndarray, batch: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    logits, embeddings = [], []
    for lo in range(0, len(x), batch):
        out = sess.run(None, {"input": np.ascontiguousarray(x[lo : lo + batch], dtype=np.float32)})
        logits.append(out[0])
        embeddings.append(out[1])
    return np.concatenate(logits), np.concatenate(embeddings)
