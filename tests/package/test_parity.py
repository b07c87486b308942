"""The parity check compares PyTorch with ONNX Runtime in small batches (a whole pool in one
eager forward pass needed gigabytes at the best preset's size) and still over every image."""

from __future__ import annotations

import numpy as np
import torch

from kennel.package import verify
from kennel.package.export import to_onnx
from kennel.train.models import SmallCNN


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_parity_covers_every_image_across_batches() -> None:
    torch.manual_seed(0)
    model = SmallCNN(2).eval()
    images = _images(verify.CHECK_BATCH * 2 + 5)  # a last batch smaller than the others
    parity = verify.check(model, to_onnx(model, 32), images)
    assert parity.images == len(images) and parity.passed
    assert parity.max_abs_logit_diff < 1e-3 and parity.label_mismatches == 0


def test_parity_fails_for_a_graph_of_other_weights() -> None:
    torch.manual_seed(0)
    model = SmallCNN(2).eval()
    torch.manual_seed(1)
    other = SmallCNN(2).eval()
    with torch.no_grad():
        other.fc.weight.mul_(50)
    parity = verify.check(model, to_onnx(other, 32), _images(40))
    assert not parity.passed and parity.max_abs_logit_diff > verify.TOLERANCE


def test_no_images_is_no_parity() -> None:
    model = SmallCNN(2).eval()
    parity = verify.check(model, to_onnx(model, 32), _images(0))
    assert parity.images == 0 and not parity.passed


def test_logits_agree_within_an_absolute_and_a_relative_part() -> None:
    """A retrain's logits in the tens differed by 1.5e-4 with every label the same, and failed
    parity on an absolute bound of 1e-4 each time: the bound grows with the logit."""
    big = np.array([[40.0, -40.0], [25.0, -3.0]], np.float32)
    assert verify.logit_excess(big, big + 1.5e-4) <= verify.TOLERANCE
    small = np.array([[0.5, -0.5]], np.float32)
    assert verify.logit_excess(small, small + 3e-4) > verify.TOLERANCE
    assert verify.logit_excess(big, big + np.float32(2e-2)) > verify.TOLERANCE


def test_a_model_with_large_logits_passes_parity() -> None:
    torch.manual_seed(0)
    model = SmallCNN(2).eval()
    with torch.no_grad():
        model.fc.weight.mul_(200)  # logits in the hundreds, float32 rounding to match
    parity = verify.check(model, to_onnx(model, 32), _images(40))
    assert parity.passed and parity.label_mismatches == 0
    assert parity.max_logit_excess <= verify.TOLERANCE
