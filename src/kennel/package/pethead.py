"""The ``pet`` output: how much the frozen ImageNet classifier thinks a picture shows a cat or
a dog, exported beside the trained model's logits so every prediction can say "no pet".

The ImageNet weights kennel fine-tunes from ship their 1000-class head. Those classes include
118 dog breeds and 5 domestic cats, and 875 other things (lawns, fences, insects, text), so
the head's probability mass on the pet classes is a judgement the trained two-class head
cannot make. It must come from the original network: the branch reuses the trained model's
stem and the leading blocks that still hold the ImageNet weights (found by comparing tensors,
so a warm start or a partial fine-tune is handled), then runs frozen ImageNet copies of the
remaining blocks, the head convolution and the classifier. With every block frozen this adds
one 1x1 convolution and one linear layer; with a full fine-tune it costs a second backbone.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from kennel.train.models import EfficientNetLite
from kennel.train.pretrained import weights_path

# ImageNet-1k class indices 151-299: the 118 dog breeds, wolves, foxes and wild dogs, the 5
# domestic cats, the big cats, bears, mongoose and meerkat. A park dog seen small and from the
# side is as often "black bear" or "coyote" as a breed (measured on the shared dog clip), and
# none of these classes took much mass from lawns, trees, text or noise.
PET_CLASSES = tuple(range(151, 300))
PET_CLASSES_TEXT = "ImageNet 151-299 (dogs, wild dogs, cats, big cats, bears, mongoose)"


def shared_blocks(model: nn.Module, imagenet: dict[str, torch.Tensor]) -> int:
    """How many leading blocks of ``model`` (after its stem) still equal the ImageNet
    weights; -1 when even the stem differs, one more than the blocks when the head
    convolution does too (then the embedding itself is ImageNet's)."""
    state = model.state_dict()

    def same(prefix: str) -> bool:
        keys = [k for k in state if k.startswith(prefix)]
        return bool(keys) and all(
            k in imagenet and torch.equal(state[k], imagenet[k].to(state[k].dtype)) for k in keys
        )

    if not (same("_conv_stem.") and same("_bn0.")):
        return -1
    count = 0
    while count < len(model._blocks) and same(f"_blocks.{count}."):  # type: ignore[arg-type]
        count += 1
    if count == len(model._blocks) and same("_conv_head.") and same("_bn1."):  # type: ignore[arg-type]
        count += 1
    return count


class WithPet(nn.Module):
    """``model`` returning ``(logits, embedding, pet)``: ``pet`` is the ImageNet head's
    probability mass on ``classes``, from the first ``shared`` blocks of ``model`` (-1: not
    even its stem) and ``imagenet``'s frozen copies of the rest."""

    def __init__(
        self,
        model: nn.Module,
        imagenet: nn.Module,
        shared: int,
        classes: tuple[int, ...] = PET_CLASSES,
    ) -> None:
        super().__init__()
        self.model = model
        self.imagenet = imagenet.eval().requires_grad_(False)
        self.shared = shared
        self.mask: torch.Tensor
        self.register_buffer("mask", torch.zeros(1000).index_fill_(0, torch.tensor(classes), 1.0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m: Any = self.model
        ref: Any = self.imagenet
        flip = bool(getattr(m, "flip_average", False))
        if flip:  # as the model alone does: each image averaged with its mirror image
            x = torch.cat([x, torch.flip(x, dims=[3])])
        if self.shared < 0:
            embedding = m.embed(x)
            reference = ref._fc(ref.embed(x))
        else:
            h = m.stem(x)
            for block in m._blocks[: self.shared]:
                h = block(h)
            embedding = torch.flatten(m._avg_pooling(m.features(h, start=self.shared)), 1)
            if self.shared > len(m._blocks):  # the embedding is ImageNet's own
                features = embedding
            else:
                features = torch.flatten(ref._avg_pooling(ref.features(h, start=self.shared)), 1)
            reference = ref._fc(features)
        pet = (torch.softmax(reference, dim=1) * self.mask).sum(dim=1)
        if flip:
            plain, mirrored = embedding.chunk(2)
            embedding = (plain + mirrored) / 2
            pet_plain, pet_mirrored = pet.chunk(2)
            pet = (pet_plain + pet_mirrored) / 2
        logits = m._fc(m._dropout(embedding))
        return logits, embedding, pet


def with_pet(model: nn.Module) -> WithPet | None:
    """``model`` with the ``pet`` output, or None when it has no ImageNet classifier to ask
    (a model trained from scratch)."""
    if not isinstance(model, EfficientNetLite):
        return None
    state = torch.load(weights_path(model.variant), map_location="cpu", weights_only=True)
    reference = copy.deepcopy(model)
    reference._fc = nn.Linear(reference._fc.in_features, 1000)
    reference.load_state_dict(state)
    return WithPet(model, reference, shared_blocks(model, state))
