"""The MLflow side of ``benchmarks/peers.py``: a custom pyfunc, as an expert would write it,
serving kennel's ONNX file with kennel's preprocessing. It runs inside MLflow's scratch venv
(models from code: MLflow executes this file when it loads the model), never in kennel's.

Input: a DataFrame with one column ``image`` of base64 JPEGs. Output per row: label and
confidence. Preprocessing is kennel's contract: RGB, shorter side resized to the model's size
(bilinear), centre crop, [0, 1], ImageNet mean/std, then ONNX Runtime with intra-op threads =
cores (the same session options kennel uses, so the runtimes match and the serving stacks
differ).
"""

from __future__ import annotations

import base64
import io
import json
import os
from typing import Any

import mlflow
import numpy as np
import onnxruntime as ort
import pandas as pd
from PIL import Image


class OnnxJpegClassifier(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    def load_context(self, context: Any) -> None:
        with open(context.artifacts["meta"]) as f:
            meta = json.load(f)
        self.size = int(meta["size"])
        self.labels = list(meta["labels"])
        self.temperature = float(meta.get("temperature") or 1.0)
        self.mean = np.array(meta["mean"], dtype=np.float32).reshape(3, 1, 1)
        self.std = np.array(meta["std"], dtype=np.float32).reshape(3, 1, 1)
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            context.artifacts["onnx"], options, providers=["CPUExecutionProvider"]
        )

    def _tensor(self, encoded: str) -> np.ndarray:
        image = Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")
        width, height = image.size
        scale = self.size / min(width, height)
        new_w = max(self.size, round(width * scale))
        new_h = max(self.size, round(height * scale))
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        left, top = (new_w - self.size) // 2, (new_h - self.size) // 2
        image = image.crop((left, top, left + self.size, top + self.size))
        pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return np.ascontiguousarray((pixels - self.mean) / self.std, dtype=np.float32)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        batch = np.stack([self._tensor(s) for s in model_input["image"]])
        logits = self.session.run(None, {"input": batch})[0] / self.temperature
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = exp / exp.sum(axis=1, keepdims=True)
        best = probs.argmax(axis=1)
        return pd.DataFrame(
            {
                "label": [self.labels[k] for k in best],
                "confidence": probs[np.arange(len(best)), best].astype(float),
            }
        )


mlflow.models.set_model(OnnxJpegClassifier())
