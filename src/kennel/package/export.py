"""PyTorch -> ONNX. Outputs: logits, embedding and, for a model wrapped by
:mod:`kennel.package.pethead`, ``pet``."""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

OPSET = 17
INPUT, LOGITS, EMBEDDING, PET = "input", "logits", "embedding", "pet"


def to_onnx(model: nn.Module, image_size: int) -> bytes:
    """Serialise ``model`` (returning ``(logits, embedding)`` or ``(logits, embedding, pet)``)
    with a dynamic batch axis."""
    model = model.eval().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    dummy = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad():
        outputs = [LOGITS, EMBEDDING, PET][: len(model(dummy))]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            model,
            (dummy,),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects
            dynamo=False,
            input_names=[INPUT],
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in [INPUT, *outputs]},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    return buffer.getvalue()
