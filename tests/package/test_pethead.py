"""The ``pet`` output: the frozen ImageNet classifier's mass on the cat and dog classes,
exported beside the trained model, whatever part of the backbone was fine-tuned."""

from __future__ import annotations

import numpy as np
import torch

from kennel.package.export import to_onnx
from kennel.package.pethead import PET_CLASSES, shared_blocks, with_pet
from kennel.portable import run, session
from kennel.train.models import EfficientNetLite, SmallCNN
from kennel.train.pretrained import load_imagenet, weights_path


def _imagenet_pet_mass(x: torch.Tensor) -> torch.Tensor:
    reference = load_imagenet(EfficientNetLite(1000), keep_classifier=True).eval()
    with torch.no_grad():
        logits, _ = reference(x)
    return torch.softmax(logits, 1)[:, list(PET_CLASSES)].sum(1)


def test_the_pet_output_is_the_imagenet_heads_pet_mass_for_any_fine_tune() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 3, 64, 64)
    expected = _imagenet_pet_mass(x)
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    for trained_blocks in (-1, 0, 4, 16):  # classifier, + head conv, + last blocks, everything
        model = load_imagenet(EfficientNetLite(2)).eval()
        trained = [*list(model._blocks)[16 - max(trained_blocks, 0) :]]
        if trained_blocks >= 0:
            trained.append(model._conv_head)
        with torch.no_grad():  # what fine-tuning does to the unfrozen part
            for module in trained:
                for p in module.parameters():
                    p.add_(0.05 * torch.randn_like(p))
        wrapped = with_pet(model)
        assert wrapped is not None
        assert wrapped.shared == shared_blocks(model, state) == 16 - trained_blocks
        with torch.no_grad():
            logits, embedding, pet = wrapped.eval()(x)
            own_logits, own_embedding = model(x)
        assert torch.allclose(logits, own_logits, atol=1e-5)
        assert torch.allclose(embedding, own_embedding, atol=1e-5)
        assert torch.allclose(pet, expected, atol=1e-5)


def test_the_onnx_model_carries_the_pet_output() -> None:
    model = load_imagenet(EfficientNetLite(2)).eval()
    model.freeze(16)
    wrapped = with_pet(model)
    assert wrapped is not None
    outputs = run(session(to_onnx(wrapped, 64)), np.zeros((2, 3, 64, 64), np.float32))
    assert set(outputs) == {"logits", "embedding", "pet"}
    assert outputs["pet"].shape == (2,)
    assert ((outputs["pet"] >= 0) & (outputs["pet"] <= 1)).all()


def test_a_model_trained_from_scratch_has_no_imagenet_head_to_ask() -> None:
    assert with_pet(SmallCNN(2)) is None
