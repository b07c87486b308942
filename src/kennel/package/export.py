"""PyTorch -> ONNX (the only torch import in packaging). Two outputs: logits and embedding."""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

OPSET = 17
INPUT, LOGITS, EMBEDDING = "input", "logits", "embedding"


def to_onnx(model: nn.Module, image_size: int) -> bytes:
    """Serialise ``model`` (returning ``(logits, embedding)``) with a dynamic batch axis."""
    model = model.eval().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    dummy = torch.zeros(1, 3, image_size, image_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            model,
            (dummy,),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects
            dynamo=False,
            input_names=[INPUT],
            output_names=[LOGITS, EMBEDDING],
            dynamic_axes={INPUT: {0: "batch"}, LOGITS: {0: "batch"}, EMBEDDING: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    return buffer.getvalue()
