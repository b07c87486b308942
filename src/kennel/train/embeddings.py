"""Forward passes of a trained or frozen network at the serving runtime's speed.

On a CPU, ONNX Runtime runs EfficientNet-Lite several times faster than eager PyTorch (README:
175 against 20 images/s for Lite0 at 224 px on 2 cores), so the passes that do not train go
through it: the frozen backbone's embeddings of every training image (a linear probe then
trains on those) and the predictions the evaluation scores. The graph is exported the way the
bundle's is (opset 17, dynamic batch); packaging still checks the bundle's own export against
PyTorch.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from kennel import onnxrt
from kennel.train.augment import to_input

_BATCH = 64
OPSET = 17
Step = Callable[[int], None]  # told how many images each finished batch held


class _Embedding(nn.Module):
    """Images -> the model's pooled embedding (no classifier, no flip averaging)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model.embed(x)  # type: ignore[operator]
        return out


def session(module: nn.Module, image_size: int, outputs: list[str]) -> Any:
    """An ONNX Runtime session for ``module`` in eval mode (input ``input``, NCHW float)."""
    module = module.eval()
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            module,
            (torch.zeros(1, 3, image_size, image_size),),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects
            dynamo=False,
            input_names=["input"],
            output_names=outputs,
            dynamic_axes={"input": {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    return onnxrt.session(buffer.getvalue())


def _batches(images: np.ndarray, indices: np.ndarray) -> Any:
    for lo in range(0, len(indices), _BATCH):
        part = indices[lo : lo + _BATCH]
        yield part, to_input(torch.from_numpy(np.ascontiguousarray(images[part]))).contiguous()


def embeddings(
    model: nn.Module,
    images: np.ndarray,
    indices: np.ndarray,
    *,
    mirrored: bool = False,
    step: Step | None = None,
) -> np.ndarray:
    """float32 [len(indices), D]: ``model.embed`` of ``images[indices]`` (uint8 NHWC), each
    image mirrored left to right when ``mirrored``; ``step(n)`` after each batch of n.

    Kept in memory for the process (the last few): the trials of a search and the final run
    train on the same frozen embeddings, which then cost one pass in all."""
    key = _memo_key(model, images, indices, mirrored)
    if key is not None and key in _MEMO:
        _MEMO.move_to_end(key)
        if step is not None:
            step(len(indices))
        return _MEMO[key]
    sess = session(_Embedding(model), images.shape[1], ["embedding"])
    parts = [np.zeros((0, int(getattr(model, "embedding_dim", 0))), np.float32)]
    for part, x in _batches(images, indices):
        if mirrored:
            x = torch.flip(x, dims=[3])
        parts.append(sess.run(None, {"input": x.numpy()})[0])
        if step is not None:
            step(len(part))
    out = np.concatenate(parts)
    out.setflags(write=False)
    if key is not None:
        _MEMO[key] = out
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    return out


_MEMO: OrderedDict[tuple[object, ...], np.ndarray] = OrderedDict()
_MEMO_SIZE = 8


def _memo_key(
    model: nn.Module, images: np.ndarray, indices: np.ndarray, mirrored: bool
) -> tuple[object, ...] | None:
    """The images (a cache file: its path names the dataset version and size, its inode and
    mtime tell a rebuilt one), which of them, the view, and the exact weights of the frozen
    part; None for images only in memory."""
    filename = getattr(images, "filename", None)
    if not filename:
        return None
    stat = os.stat(filename)
    weights = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if not name.startswith("_fc."):
            weights.update(name.encode())
            weights.update(tensor.detach().contiguous().numpy().tobytes())
    chosen = hashlib.sha256(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()
    file = (str(filename), stat.st_ino, stat.st_mtime_ns, images.shape)
    return (*file, chosen, mirrored, weights.hexdigest())


def predict(model: nn.Module, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits and embeddings of ``model`` (returning both) for uint8 NHWC ``images``."""
    sess = session(model, images.shape[1], ["logits", "embedding"])
    logits, embeds = [], []
    for _part, x in _batches(images, np.arange(len(images))):
        out = sess.run(None, {"input": x.numpy()})
        logits.append(out[0])
        embeds.append(out[1])
    if not logits:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(logits), np.concatenate(embeds)
