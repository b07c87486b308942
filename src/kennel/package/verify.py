"""Parity: ONNX Runtime must reproduce PyTorch on real test images, or packaging fails."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from kennel import onnxrt as runtime
from kennel.train.augment import to_input

TOLERANCE = 1e-4  # absolute, on logits (beyond the relative part below) and probabilities
# float32 kernels that add in another order differ by a few units in the last place of the
# larger numbers: a model with logits in the tens (a fine-tune on a few images, a retrain)
# differed by 1.5e-4 with every label the same, and failed each retrain on an absolute bound
RELATIVE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Parity:
    images: int
    max_abs_logit_diff: float
    max_abs_prob_diff: float
    max_abs_embedding_diff: float
    label_mismatches: int
    tolerance: float
    # the largest |logit diff| less RELATIVE_TOLERANCE x |PyTorch's logit|: within
    # ``tolerance`` where every logit agrees as numpy.allclose(rtol, atol=tolerance) has it
    max_logit_excess: float = 0.0
    relative_tolerance: float = RELATIVE_TOLERANCE

    @property
    def passed(self) -> bool:
        return (
            self.images > 0
            and self.max_logit_excess <= self.tolerance
            and self.max_abs_prob_diff <= self.tolerance
            and self.label_mismatches == 0
        )

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "passed": self.passed}


def normalised(images_uint8: np.ndarray) -> np.ndarray:
    """Model input from uint8 NHWC, exactly as training feeds it (contiguous NCHW float32)."""
    return to_input(torch.from_numpy(np.ascontiguousarray(images_uint8))).contiguous().numpy()


CHECK_BATCH = 16  # eager PyTorch keeps a whole batch's activations: Lite2 at 320 px with
# flip averaging needed gigabytes per hundred images in one forward pass


@torch.no_grad()
def check(model: nn.Module, onnx_model: bytes, images_uint8: np.ndarray) -> Parity:
    model.eval()
    sess = runtime.session(onnx_model)
    parts: list[tuple[np.ndarray, ...]] = []
    for lo in range(0, len(images_uint8), CHECK_BATCH):
        x = normalised(images_uint8[lo : lo + CHECK_BATCH])
        torch_logits, torch_emb = (t.numpy() for t in model(torch.from_numpy(x)))
        parts.append((torch_logits, torch_emb, *runtime.run(sess, x)))
    if not parts:
        empty = np.zeros((0, 1), np.float32)
        parts.append((empty, empty, empty, empty))
    joined = (np.concatenate(p) for p in zip(*parts, strict=True))
    torch_logits, torch_emb, ort_logits, ort_emb = joined

    def probs(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    return Parity(
        images=len(images_uint8),
        max_abs_logit_diff=float(np.abs(torch_logits - ort_logits).max(initial=0.0)),
        max_abs_prob_diff=float(np.abs(probs(torch_logits) - probs(ort_logits)).max(initial=0.0)),
        max_abs_embedding_diff=float(np.abs(torch_emb - ort_emb).max(initial=0.0)),
        label_mismatches=int((torch_logits.argmax(1) != ort_logits.argmax(1)).sum()),
        tolerance=TOLERANCE,
        max_logit_excess=logit_excess(torch_logits, ort_logits),
    )


def logit_excess(reference: np.ndarray, other: np.ndarray) -> float:
    """The largest ``|other - reference|`` beyond ``RELATIVE_TOLERANCE x |reference|``."""
    excess = np.abs(other - reference) - RELATIVE_TOLERANCE * np.abs(reference)
    return float(excess.max(initial=0.0))


def pet_scores(onnx_model: bytes, images_uint8: np.ndarray, batch: int = 64) -> np.ndarray:
    """The ``pet`` output of ``onnx_model`` for uint8 NHWC images."""
    sess = runtime.session(onnx_model)
    parts = [
        sess.run(["pet"], {"input": normalised(images_uint8[lo : lo + batch])})[0]
        for lo in range(0, len(images_uint8), batch)
    ]
    return np.concatenate(parts) if parts else np.zeros(0)
